"""Limits before allocation: options whose memory grows with their value (an image side, a
number of images, bootstrap resamples, beams × batch) are checked against the machine's available
memory before anything is allocated, and refused with the estimate, instead of ending in the
out-of-memory killer or a failed allocation of hundreds of terabytes."""
from __future__ import annotations

import psutil

from .errors import InputError


def available_memory() -> int:
    """Bytes of memory the system can give a process now without swapping (psutil's `available`)."""
    return int(psutil.virtual_memory().available)


def size_text(n: float) -> str:
    """`1.5 GiB`, `364 TiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def require_memory(estimate: float, what: str, advice: str, available: int | None = None,
                   where: str = "on this machine") -> None:
    """`InputError` when `estimate` bytes (for `what`, e.g. "--bootstrap 10000 on 5000 sentences")
    exceed the available memory (default: the system's; `available` and `where` name another, e.g.
    a GPU's); `advice` says what to change."""
    available = available_memory() if available is None else available
    if estimate > available:
        raise InputError(f"{what} needs about {size_text(estimate)} of memory, more than the "
                         f"{size_text(available)} available {where}; {advice}")
