"""Shared pieces of the fuzz suite (tests/test_fuzz_*.py): hypothesis strategies for JSON values,
damaged copies of a JSON document and numbers as a user may type them, and `outcome`, which runs a
CLI's `main` in-process and returns its exit code and stderr; any exception other than argparse's
SystemExit propagates, so the test fails on every traceback."""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

# Examples are few and the deadline off: every example runs real code (files, a model, a dataset).
# GROUNDMT_FUZZ_SCALE=N multiplies every budget by N, to search harder than the suite does.
SCALE = int(os.environ.get("GROUNDMT_FUZZ_SCALE", "1"))
FAST = settings(max_examples=120 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=12 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
# Numbers as typed on a command line: small ones that most flags accept (drawn as often as the
# rest, so that examples also run through), huge, negative, not finite, not numbers at all.
usual_numbers = st.integers(0, 6).map(str) | st.sampled_from(["0.5", "1", "2", "16", "0.0"])
odd_numbers = (st.integers(10**12, 10**20).map(str) | st.integers(-(10**9), -1).map(str)
               | st.sampled_from(["nan", "inf", "-inf", "1e12", "1.5", "-0.0", "", " ", "abc", "0x10", "٣", "1_000",
                                  "+2"])
               | st.floats(allow_nan=True, allow_infinity=True).map(repr))
number_texts = st.one_of(usual_numbers, usual_numbers, odd_numbers)


def _nodes(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every path (keys and indices) into a JSON value, the root included."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nodes(item, (*path, index))


@st.composite
def damaged(draw, document: Any) -> bytes:
    """`document` as JSON bytes with one damage: a value replaced by any JSON value, a key or item
    removed, the text cut short, or bytes that are not JSON at all."""
    kind = draw(st.sampled_from(["replace", "replace", "remove", "truncate", "bytes"]))
    text = json.dumps(document)
    if kind == "truncate":
        return text[:draw(st.integers(0, len(text) - 1))].encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    changed = copy.deepcopy(document)
    path = draw(st.sampled_from([p for p in _nodes(document) if p or kind == "replace"]))
    if not path:
        return json.dumps(draw(json_values)).encode()
    parent = changed
    for part in path[:-1]:
        parent = parent[part]
    if kind == "remove":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return json.dumps(changed).encode()


def scratch() -> tempfile.TemporaryDirectory:
    """A fresh folder per example, in memory where the machine has /dev/shm (the corpus writer
    fsyncs every write, which a disk makes slow)."""
    return tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def exit_code(read: Callable[[], Any]) -> int:
    """The exit code `run_command` gives `read()`: 0, or 2 for a one-line error."""
    from data_prep.errors import run_command

    return run_command(lambda: (read(), 0)[1])


def outcome(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    """`(exit code, stderr)` of `main(argv)` run in-process (stdout discarded)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, err.getvalue()


def assert_clean(code: int, err: str) -> None:
    """Exit 0 or 1 (a result), or 2 with exactly one `error:` line; never a traceback. The exit
    code is recorded as a hypothesis event (`--hypothesis-show-statistics` shows how many examples
    ran through and how many were refused)."""
    event(f"exit {code}")
    assert "Traceback" not in err, err
    assert code in (0, 1, 2), (code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder` (to show that no input changed)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
