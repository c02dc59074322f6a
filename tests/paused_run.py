"""Stop a script at a known point, so that a test can signal it there whatever the machine's speed.

`start_paused(script_args, event, pattern, nth, ...)` starts `python tests/paused_run.py ...`, which
runs the script as `__main__` with an audit hook (`sys.addaudithook`): just before the script's
`nth` audit event `event` on a path matching the glob `pattern` — `open` counts files opened for
writing, `os.rename` (also raised by `os.replace`) matches the destination — it reports on a pipe
and blocks reading its stdin. `start_paused` returns once the report has come, with the process
held there: the test sends SIGKILL (then `wait()`), or SIGTERM and `release()`. No polling, no
sleeping: a process that ends before the point is an assertion naming its exit code.
"""
from __future__ import annotations

import fnmatch
import os
import runpy
import select
import subprocess
import sys

WRITING = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT


def _matches(event: str, args: tuple, target: str, pattern: str) -> bool:
    if event != target:
        return False
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITING)
        return writing and not isinstance(path, int) and fnmatch.fnmatch(os.fsdecode(path), pattern)
    return event == "os.rename" and fnmatch.fnmatch(os.fsdecode(args[1]), pattern)


def _pause_at(target: str, pattern: str, nth: int, report_fd: int) -> None:
    seen = 0

    def hook(event: str, args: tuple) -> None:
        nonlocal seen
        if _matches(event, args, target, pattern):
            seen += 1
            if seen == nth:
                os.write(report_fd, f"paused before {event} #{nth} on {pattern}\n".encode())
                os.read(0, 1)  # until the test releases it (or kills it)

    sys.addaudithook(hook)


class Paused:
    """A process held at its pause point."""

    def __init__(self, proc: subprocess.Popen, line: str):
        self.proc, self.line = proc, line

    def release(self) -> None:
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()


def start_paused(script_args: list[str], event: str, pattern: str, nth: int = 1, *, timeout: float = 900,
                 **popen_kw) -> Paused:
    """Start `python SCRIPT ARGS` (`script_args`) and return once it is paused (see the module docstring)."""
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, __file__, event, pattern, str(nth), str(write), *script_args],
                            stdin=subprocess.PIPE, pass_fds=(write,), **popen_kw)
    os.close(write)
    with os.fdopen(read, "r") as report:
        ready, _, _ = select.select([report], [], [], timeout)  # a liveness guard, not a timing
        line = report.readline() if ready else ""
    if not line:
        code = proc.poll()
        if code is None:
            proc.kill()
        raise AssertionError(f"{script_args[0]} never reached {event} #{nth} on {pattern} "
                             f"(exit code {proc.wait()})")
    return Paused(proc, line)


if __name__ == "__main__":
    event, pattern, nth, fd, script, *args = sys.argv[1:]
    _pause_at(event, pattern, int(nth), int(fd))
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
