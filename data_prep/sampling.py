"""Which rows each training step reads: a pure function of (seed, step), so a resumed run reads
exactly the batches the uninterrupted run would have read, with no sampler state to save."""
from __future__ import annotations

import torch


class StepSampler:
    """Epochs are seeded permutations of the usable rows; step s takes the s-th global batch of
    `batch_size` rows (the incomplete tail of an epoch is skipped so every batch is full), and
    process `rank` of `world` reads its contiguous slice of that batch."""

    def __init__(self, usable: list[int], batch_size: int, *, seed: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"--batch-size {batch_size} must be a multiple of the number of processes ({world})")
        if len(usable) < batch_size:
            raise ValueError(f"only {len(usable)} usable training rows for a batch of {batch_size}: lower --batch-size "
                             "or use more data")
        self.usable, self.batch_size, self.seed, self.rank, self.world = usable, batch_size, seed, rank, world
        self.batches_per_epoch = len(usable) // batch_size
        self._epoch, self._order = -1, None

    def epoch_of(self, step: int) -> int:
        return step // self.batches_per_epoch

    def indices(self, step: int) -> list[int]:
        """Dataset row indices this process reads at `step`."""
        epoch = self.epoch_of(step)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order, self._epoch = torch.randperm(len(self.usable), generator=generator).tolist(), epoch
        start = (step % self.batches_per_epoch) * self.batch_size
        per_rank = self.batch_size // self.world
        chosen = self._order[start + self.rank * per_rank: start + (self.rank + 1) * per_rank]
        return [self.usable[i] for i in chosen]
