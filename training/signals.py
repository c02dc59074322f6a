"""Stopping a run cleanly: SIGTERM / SIGINT end it at the next step boundary, after a checkpoint."""
from __future__ import annotations

import signal

import torch


class StopSignal:
    """While active, SIGTERM / SIGINT set a flag; the loop checkpoints and exits at the next step
    boundary. A second signal stops at once. The previous handlers come back on exit."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


def stop_requested(stop: StopSignal, accelerator) -> bool:
    """True on every process once any process got a signal (they must checkpoint together)."""
    if accelerator.num_processes == 1:
        return stop.signum is not None
    flag = torch.tensor([float(stop.signum is not None)], device=accelerator.device)
    return bool(accelerator.reduce(flag, "max").item())
