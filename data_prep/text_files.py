"""Reading text files line by line: the one set of rules for every file of one item per line
(sentences for `eval score` and `translate text`, captions files, builders' raw files, lists).

The rules are those of sacreBLEU's command line (`sacrebleu.utils.smart_open`, which opens text
with `newline="\\n"`, then `line.rstrip()` on each line), so `eval score` reads exactly the lines
`sacrebleu` scores:
- UTF-8; `.gz` and `.bz2` files are decompressed.
- A line ends at "\\n" and nowhere else. U+2028/U+2029, NEL (U+0085), form feed, vertical tab,
  the separators U+001C–U+001E and a lone "\\r" are characters inside a line (`str.splitlines`
  would break there, so two files that `wc -l` calls aligned would no longer be).
- A blank line is a line (an empty sentence keeps files aligned); a last line without "\\n" is
  read like any other; the final "\\n" does not add an empty line; an empty file has no lines.
- `read_lines` removes each line's trailing whitespace (`str.rstrip()`, so a CRLF file reads
  like an LF one); `numbered_lines` removes only the line ending ("\\n" or "\\r\\n") and keeps
  the text as it is (captions and tables, where a trailing tab is an empty column).
- A UTF-8 byte-order mark at the start of the file: sacreBLEU keeps it as a character (U+FEFF)
  at the start of line 1, and `keep_bom=True` does the same (for scores equal to sacreBLEU's);
  `keep_bom=False` (the default) drops it, for text that is translated or parsed.
- A line that is not valid UTF-8 is an `InputError` naming `file:line`, or with
  `undecodable="none"` its text is None so the caller can report the line and go on.
"""
from __future__ import annotations

import bz2
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

BOM = b"\xef\xbb\xbf"


def _open_binary(path: Path) -> BinaryIO:
    """`path` opened for reading bytes, transparently decompressing `.gz` / `.bz2`."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def numbered_lines(path: str | Path | None, *, keep_bom: bool = False,
                   undecodable: str = "error") -> Iterator[tuple[int, str | None]]:
    """`(line number, text)` of each line of `path` (stdin when None), its line ending removed
    (rules in the module docstring). `undecodable`: "error" raises `InputError` for a line that is
    not UTF-8; "none" yields None as its text."""
    if undecodable not in ("error", "none"):
        raise ValueError(f"undecodable must be 'error' or 'none', got {undecodable!r}")
    name = "<stdin>" if path is None else str(path)
    stream = sys.stdin.buffer if path is None else _open_binary(Path(path))
    try:
        for number, raw in enumerate(stream, start=1):
            if number == 1 and not keep_bom:
                raw = raw.removeprefix(BOM)
            raw = raw.removesuffix(b"\n").removesuffix(b"\r")
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if undecodable == "error":
                    raise InputError(f"{name}:{number}: not valid UTF-8 (byte {raw[exc.start]:#04x} at "
                                     f"column {exc.start + 1})") from None
                yield number, None
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        if isinstance(exc, OSError) and exc.filename is not None:
            raise
        raise InputError(f"{name}: cannot be read ({exc})") from None
    finally:
        if path is not None:
            stream.close()


def read_lines(path: str | Path | None, *, keep_bom: bool = False) -> list[str]:
    """The lines of a one-sentence-per-line file (stdin when None) as sacreBLEU's CLI reads them:
    split at "\\n" only, trailing whitespace removed, blank lines kept (module docstring)."""
    return [text.rstrip() for _, text in numbered_lines(path, keep_bom=keep_bom)]


def read_list(path: str | Path) -> list[str]:
    """Non-empty lines of a one-item-per-line file (image lists, id lists), outer whitespace trimmed."""
    return [line.strip() for line in read_lines(path) if line.strip()]
