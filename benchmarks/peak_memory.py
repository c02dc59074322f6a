"""Peak memory of a piece of code, the same way in every benchmark.

CPU: the resident-set high-water mark (`VmHWM`), reset to the current RSS through
`/proc/self/clear_refs` before the code runs, minus the RSS at that moment — meaningful in a fresh
process started with `MALLOC_ENV` (glibc then serves every block above the threshold from its
own mapping, returned to the OS when freed, so RSS follows live tensors rather than allocator
history). CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, minus the
memory allocated at that moment.
"""
from __future__ import annotations

import os

import torch

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def status_bytes(field: str) -> int:
    """A `/proc/self/status` figure (`VmRSS`, `VmHWM`, ...) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """`with PeakMemory(device) as m: ...` then `m.peak_bytes` (extra bytes over the start) and
    `m.total_peak_bytes` (the process's RSS high-water mark, or CUDA's allocated peak)."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.peak_bytes = self.total_peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # VmHWM := VmRSS
            self.before = status_bytes("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.total_peak_bytes = torch.cuda.max_memory_allocated()
        else:
            self.total_peak_bytes = status_bytes("VmHWM")
        self.peak_bytes = self.total_peak_bytes - self.before


def fresh_process_env(**extra: str) -> dict[str, str]:
    """The environment for a measuring child process (see the module docstring)."""
    return {**os.environ, **MALLOC_ENV, **extra}
