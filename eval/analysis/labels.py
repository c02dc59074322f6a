"""Attribute labels for the linear probes: what a probe should be able to read off a feature.

- **synthetic world** — images are labelled from their scene, regenerated from the dataset's
  build settings (`build_report.json`: seed, image size, captions per image) and the index in
  the `image_id`; the regeneration is checked by realising the image's English captions again
  and comparing them with the dataset's (any mismatch: the source is refused with the reason).
  Captions are labelled by parsing their English text (`data_prep.synthetic.parse`); a caption
  names a subset of its scene, so its labels are what *it* says. Tasks: `count` (objects in the
  scene / mentioned; multiclass), `shape:<s>` and `colour:<c>` (present / mentioned; binary).
- **datasets with tags** — COCO-CN's `imageid.tags.txt` is kept by its builder in
  `build_report.json` (notes → tags, keyed by image id): `tag:<t>` (binary) for the most frequent
  tags; tags describe the image, so a caption carries its image's tags.
- anything else: no source, and the reason.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from data_prep.build_report import REPORT_FILE
from data_prep.synthetic import english
from data_prep.synthetic.build import make_sample
from data_prep.synthetic.parse import parse
from data_prep.synthetic.scene import COLORS, SHAPES

SYNTHETIC_ID = re.compile(r"^syn(?P<seed>-?\d+)-(?P<index>\d+)$")


class SyntheticLabels:
    """Scene labels of images, parsed labels of English captions (see the module docstring)."""

    kind = "synthetic scenes / parsed captions"

    def __init__(self, settings: dict):
        self.settings = settings

    @staticmethod
    def _presence(shapes: set[str], colours: set[str]) -> dict:
        return {**{f"shape:{s}": s in shapes for s in SHAPES}, **{f"colour:{c}": c in colours for c in COLORS}}

    def image(self, image_id: str, english_captions: list[str]) -> dict:
        m = SYNTHETIC_ID.match(image_id)
        if m is None or int(m["seed"]) != self.settings["seed"]:
            raise ValueError(f"image id {image_id!r} is not an image of synthetic world seed {self.settings['seed']}")
        sample = make_sample(int(m["index"]), seed=self.settings["seed"],
                             captions_per_image=self.settings["captions_per_image"],
                             parallel_fraction=0.0, image_size=self.settings["image_size"])
        if [english.realise(d) for d in sample.english] != list(english_captions):
            raise ValueError(f"regenerating image {image_id} gives other English captions than the dataset "
                             "(built by another version of the generator?)")
        objects = sample.scene.objects
        return {"count": len(objects), **self._presence({o.shape for o in objects}, {o.color for o in objects})}

    def caption(self, text: str, image_labels: dict) -> dict:
        mentions = parse(text).mentions
        return {"count": sum(m.count for m in mentions),
                **self._presence({m.shape for m in mentions}, {m.color for m in mentions if m.color})}


class TagLabels:
    """Image tags (COCO-CN) as binary tasks; captions carry their image's tags."""

    kind = "image tags"

    def __init__(self, tags: dict[str, str], top: int):
        self.tags = {str(k): set(v.split()) for k, v in tags.items()}
        self.top = top
        self.vocabulary: list[str] = []

    def choose(self, image_ids: list[str]) -> None:
        """The tasks: the `top` most frequent tags over `image_ids` (the fit split)."""
        counts = Counter(t for i in image_ids for t in self.tags.get(str(i), ()))
        self.vocabulary = [t for t, _ in counts.most_common(self.top)]

    def image(self, image_id: str, english_captions: list[str]) -> dict:
        if str(image_id) not in self.tags:
            raise KeyError(image_id)
        own = self.tags[str(image_id)]
        return {f"tag:{t}": t in own for t in self.vocabulary}

    def caption(self, text: str, image_labels: dict) -> dict:
        return dict(image_labels)


def label_source(data_dir: Path, top_tags: int = 10) -> tuple[SyntheticLabels | TagLabels | None, str | None]:
    """(source, None), or (None, why no attribute labels exist for this dataset)."""
    path = Path(data_dir) / REPORT_FILE
    if not path.is_file():
        return None, f"{path} is missing: no record of how the dataset was built, so no attribute labels"
    report = json.loads(path.read_text())
    if report.get("builder") == "synthetic":
        return SyntheticLabels(report["settings"]), None
    tags = (report.get("notes") or {}).get("tags")
    if tags:
        return TagLabels(tags, top_tags), None
    return None, (f"dataset {data_dir} (builder {report.get('builder')!r}) keeps no attribute labels: only the "
                  "synthetic world (scenes) and COCO-CN (imageid.tags.txt, kept in build_report.json) have them")
