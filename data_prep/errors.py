"""How bad input and interruptions reach the user of every GroundMT command line tool.

`InputError` is the one exception for input the user can fix (files, folders, options) in all
four CLIs; `python -m data_prep`, `python -m translate` and `python -m eval` run their command
through `run_command`, which turns it into one line `error: ...` on stderr and exit code 2. An
`OSError` on a path (permissions, a folder where a file is expected, a full disk) is input too and
reads `error: PATH: reason`. Ctrl-C ends with one line and exit code 130 (after whatever progress
marker the command keeps). Anything else is a bug and keeps its traceback. Argument errors go
through `Parser`, which prints one line instead of argparse's usage block, and the argparse types
below refuse bad values at parsing. Output locations are checked with `output_file` /
`output_dir` before any work starts, under one policy for every CLI: an output is never one of
the command's inputs; an existing file is replaced only when it is the command's own kind of
`Artefact` or with `--overwrite`; a non-empty folder is written into only when it holds the
command's own artefact, and then only as its flag says (`--overwrite`, a resume). A file that
does not hold what its schema declares (`models.typed_json.ReadBackError`) and a folder another
process holds (`data_prep.locks.FolderBusy`) are input errors too. `models/` never imports this
module: the CLI layers convert.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from models.typed_json import ReadBackError

from .locks import LOCK_FILE, FolderBusy

INPUT_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # 128 + SIGINT, the shell's code for a Ctrl-C


class InputError(ValueError):
    """The user's input files or options cannot be used; the message says what was expected.
    Every CLI prints it as one line `error: ...` and exits with code 2."""


def os_error_message(exc: OSError) -> str:
    """`PATH: reason` for an OSError on a path (the reason without errno noise); else its text."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if not paths or not exc.strerror:
        return str(exc)
    return f"{' -> '.join(paths)}: {exc.strerror}"


def run_command(command: Callable[[], int]) -> int:
    """Run a CLI command: `InputError` and `OSError` → one `error:` line and exit 2; Ctrl-C → one
    line and exit 130 (a `KeyboardInterrupt` raised with a message prints that message)."""
    try:
        return command()
    except (InputError, ReadBackError, FolderBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return INPUT_ERROR_EXIT
    except OSError as exc:
        print(f"error: {os_error_message(exc)}", file=sys.stderr)
        return INPUT_ERROR_EXIT
    except KeyboardInterrupt as exc:
        print(f"interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return INTERRUPTED_EXIT


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `error: ... (see PROG --help)`, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(INPUT_ERROR_EXIT, f"error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a size, a count of beams)."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (0 switches something off, e.g. `--bootstrap 0`)."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def _float_in(text: str, low: float, high: float, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    return _float_in(text, 0.0, 1.0, "a number in [0, 1]")


def fraction_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated numbers in [0, 1], at least one ("0.02,0.05,0.3")."""
    values = tuple(fraction(t.strip()) for t in text.split(",") if t.strip())
    if not values:
        raise argparse.ArgumentTypeError("needs at least one number in [0, 1]")
    return values


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (a weight; 0 switches its term off)."""
    return _float_in(text, 0.0, math.inf, "a finite number >= 0")


def cosine(text: str) -> float:
    """argparse type: a cosine threshold in [-1, 1]."""
    return _float_in(text, -1.0, 1.0, "a number in [-1, 1] (a cosine)")


def torch_device(text: str) -> str:
    """argparse type: a torch device string that exists on this machine (`cpu`, `cuda`, `cuda:1`, `mps`)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine; use --device cpu")
    return text


def input_file(path: str | Path, option: str) -> Path:
    """`path` as an existing file given with `option`; InputError naming it otherwise."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory, expected a file")
    if not path.is_file():
        raise InputError(f"{option} {path} does not exist")
    return path


PathLike = str | Path
Inputs = Mapping[str, PathLike | Sequence[PathLike] | None]


@dataclass(frozen=True)
class Artefact:
    """What a command writes, so that the output policy knows its own work when it finds it:
    `name` for messages (e.g. "a dataset built by python -m data_prep"), `recognise(path)` true
    when the file or folder at `path` holds it (marker files only that command writes, or content
    only it writes)."""

    name: str
    recognise: Callable[[Path], bool]


def marker_files(*names: str) -> Callable[[Path], bool]:
    """`recognise` for a folder: all of `names` are files in it."""
    return lambda folder: all((folder / name).is_file() for name in names)


def same_path(a: PathLike, b: PathLike) -> bool:
    """`a` and `b` name one file or folder (through symbolic links and hard links when both exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _inputs_of(inputs: Inputs | None) -> list[tuple[str, Path]]:
    pairs = []
    for option, given in (inputs or {}).items():
        for path in [given] if isinstance(given, str | Path) else (given or []):
            pairs.append((option, Path(path)))
    return pairs


def _refuse_inputs(path: Path, option: str, inputs: Inputs | None, folder: bool) -> None:
    """An output may not be one of the inputs (nor, for a folder, hold one); `inputs` maps the option
    that named each input (or "" where none did) to its path(s)."""
    for input_option, given in _inputs_of(inputs):
        named = f"{input_option} {given}".strip()
        if same_path(path, given):
            raise InputError(f"{option} {path} is the input {named}: writing it would destroy the input; "
                             f"choose another {option}")
        if folder and given.resolve().is_relative_to(path.resolve()):
            raise InputError(f"{option} {path} holds the input {named}; choose another {option}")


def output_file(path: str | Path, option: str, *, inputs: Inputs | None = None, artefact: Artefact | None = None,
                overwrite: bool = False) -> Path:
    """Check, before any work, that a file can be created at `path` (`option` names it in the
    message): not a directory, none of `inputs` (option -> path or paths), not an existing file
    unless it holds `artefact` (this command's own output) or `overwrite` says to replace it, and
    the nearest existing folder above it is writable. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory, expected a file name")
    _refuse_inputs(path, option, inputs, folder=False)
    if (path.exists() or path.is_symlink()) and not overwrite and not (artefact and artefact.recognise(path)):
        what = f"is not {artefact.name}" if artefact else "was not written by this command"
        raise InputError(f"{option} {path} already exists and {what}: pass --overwrite to replace it, or "
                         f"choose another {option}")
    _check_writable(path.parent, f"{option} {path}")
    return path


def output_dir(path: str | Path, option: str, *, inputs: Inputs | None = None, artefact: Artefact | None = None,
               replace: bool = False, replace_flag: str = "--overwrite") -> Path:
    """Check, before any work, that `path` is a writable folder or can be created as one, and that
    writing there destroys nothing: it is none of `inputs` and holds none of them; when it is not
    empty (a lock file aside) it must hold `artefact`, this command's own output, and `replace`
    (the command's `replace_flag`, or its resume) must say what to do with it. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file, expected a folder")
    _refuse_inputs(path, option, inputs, folder=True)
    if path.is_dir() and any(entry.name != LOCK_FILE for entry in path.iterdir()):
        if artefact is None or not artefact.recognise(path):
            raise InputError(f"{option} {path} is not empty" + (f" and does not hold {artefact.name}" if artefact else "")
                             + f": choose a new or empty folder (nothing in {path} was changed)")
        if not replace:
            raise InputError(f"{option} {path} already holds {artefact.name}: pass {replace_flag} to replace it, "
                             f"or choose another {option}")
    _check_writable(path, f"{option} {path}")
    return path


def _check_writable(folder: Path, what: str) -> None:
    """The nearest existing folder at or above `folder` accepts a new file (an unnamed temporary
    file is created there and removed, so nothing is left behind)."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{what}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise InputError(f"{what}: cannot write in {existing} ({exc.strerror or exc})") from None
