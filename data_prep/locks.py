"""One process at a time writes into a folder: an advisory lock on a file inside it.

`FolderLock(folder, command)` takes `fcntl.flock` on `folder/.groundmt.lock` (creating the folder
and the file), writes the owner's pid and command into it, and holds it until `release()`, the end
of a `with` block, or the process's end (the kernel drops a dead process's lock, so a killed
command never leaves a stale lock behind). A second process asking for the same folder gets
`FolderBusy`, whose message names the owner's pid; every CLI prints it as one `error:` line with
exit code 2 (`data_prep.errors.run_command`). The descriptor is not inherited by child processes.
Standard library only, so that any package can use it.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

LOCK_FILE = ".groundmt.lock"


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock; the message names it."""


class FolderLock:
    """The advisory lock on `folder` for `command` (a description shown to a second process)."""

    def __init__(self, folder: str | Path, command: str) -> None:
        self.folder, self.command = Path(folder), command
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> FolderLock:
        """Take the lock (non-blocking); `FolderBusy` naming the owner when another process has it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise FolderBusy(f"{self.folder} is in use by {owner}; wait until it ends (or stop it), or choose "
                             "another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": self.command}).encode("utf-8") + b"\n", 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class WaitingLock:
    """A lock that waits: `fcntl.flock` on the file `path`, blocking until no other process holds
    it — for a cache entry that several runs may want to build at once (the first builds it, the
    others wait and then find it built). `waiting(owner)` is called once if the lock is busy."""

    def __init__(self, path: str | Path, waiting=lambda owner: None) -> None:
        self.path, self.waiting = Path(path), waiting
        self._fd: int | None = None

    def __enter__(self) -> WaitingLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.waiting(_owner(fd))
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": "building a cache entry"}).encode() + b"\n", 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _owner(fd: int) -> str:
    """`process PID (COMMAND)` from the lock file, as far as the owner has written it yet."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"process {int(owner['pid'])} ({owner['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
