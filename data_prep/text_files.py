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
- Text that did not come from a UTF-8 file can still hold what UTF-8 cannot carry: a lone
  surrogate (a JSON escape such as "\\ud800", or a byte that is not UTF-8 on the command line,
  which Python keeps as U+DC80–U+DCFF); `surrogate_problem` finds it before a tokenizer fails on it.
- Tables (CSV/TSV) are read with `read_table`: a quote that is never closed would swallow every
  later row into one field, so a record that spans several lines and does not fit the header (or
  meets the end of the file inside its quote) is reported as `unterminated quote` on its first
  line, and reading resumes on the next line.
"""
from __future__ import annotations

import bz2
import csv
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


def surrogate_problem(text: str) -> str | None:
    """Why `text` cannot be UTF-8 (`not valid UTF-8 (byte 0xf3 at column 5)` for a byte that the
    command line could not decode, `a lone surrogate U+D800 at column 3` otherwise), or None."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        at = exc.start
    code = ord(text[at])
    if 0xDC80 <= code <= 0xDCFF:  # Python's surrogateescape: an undecodable byte of argv or a file name
        return f"not valid UTF-8 (byte {code - 0xDC00:#04x} at column {at + 1})"
    return f"a lone surrogate U+{code:04X} at column {at + 1}"


TableRow = tuple[int, list[str] | None, str | None]  # (first line, values, problem)


def read_table(path: str | Path, delimiter: str = ",", *, undecodable: str = "error"
               ) -> tuple[list[str] | None, list[TableRow]]:
    """The header (None for an empty file) and records of a CSV/TSV file, in line order, each as
    `(line where it starts, values, None)` or `(line, None, problem)`: `not valid UTF-8` (with
    `undecodable="none"`; "error" raises `InputError`), `unterminated quote`, or `bad quoting (...)`
    (csv's strict mode). A line break inside a quoted field stays one record."""
    lines = list(numbered_lines(path, undecodable=undecodable))
    good = [(number, text) for number, text in lines if text is not None]
    rows: list[TableRow] = [(number, None, "not valid UTF-8") for number, text in lines if text is None]
    header, i = None, 0
    while i < len(good):
        used = 0

        def feed(start: int = i):
            nonlocal used
            for number in range(start, len(good)):
                used += 1
                yield good[number][1] + "\n"

        first = good[i][0]
        try:
            values = next(csv.reader(feed(), delimiter=delimiter, strict=True))
        except csv.Error as exc:
            rows.append((first, None, "unterminated quote" if "end of data" in str(exc) else f"bad quoting ({exc})"))
            i += 1
            continue
        if header is None:
            header = values
        elif used > 1 and len(values) != len(header):  # a quote left open swallowed the lines after it
            rows.append((first, None, "unterminated quote"))
            i += 1
            continue
        else:
            rows.append((first, values, None))
        i += used
    return header, sorted(rows, key=lambda row: row[0])
