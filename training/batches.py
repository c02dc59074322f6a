"""What each batch of stage 1 reads, as a pure function of its number — so that a resumed run
reads exactly the batches the uninterrupted run would have.

Batch number `b` is optimizer step × `--grad-accum` + micro-batch. Its grounded part is `--batch-size`
training images (`data_prep.sampling.StepSampler`) with their captions chosen by epoch; its token
cross-entropy part comes from a `TargetStream` over the current target table.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from data_prep.collate import TrainCollator
from data_prep.sampling import StepSampler
from data_prep.phrase_lexicon import WordPair
from data_prep.targets import Target, TargetTable
from models.inputs import GroundingInputs, TargetInputs
from training.build import FrozenFeatures
from training.data import TrainingData
from training.options import TrainConfig


class TargetStream:
    """Which captions with a target feed the token cross-entropy at each batch. Three streams, each
    epochs of a seeded permutation (global batches; each process reads its slice): up to
    `--ce-batch-size` captions with a human translation — the same stream, batch for batch, as a
    run without images — and, once pseudo-parallel targets exist, up to as many of those in
    addition, counted from step `since` (when the table took effect); with `--lexicon-pairs N`, N
    word pairs (`pairs`, `training.data.lexicon_pairs`) from the first step on. Inactive when the
    token CE is off or there is nothing to read."""

    def __init__(self, table: TargetTable, cfg: TrainConfig, *, rank: int, world: int, since: int,
                 pairs: Sequence[WordPair] = ()) -> None:
        self.table, self.since, self.grad_accum = table, since, cfg.optim.grad_accum
        human = sorted(k for k, t in table if t.origin == "human")
        pseudo = sorted(k for k, t in table if t.origin != "human")
        sizes = [min(cfg.optim.ce_batch_size, len(keys) // world * world) for keys in (human, pseudo)]
        sizes.append(min(cfg.pseudo.lexicon_pairs, len(pairs)) // world * world)
        self.active = cfg.objective.token_ce_weight > 0 and sum(sizes) > 0
        seed = cfg.run.seed * 7919
        self.human = StepSampler(human, sizes[0], seed=seed, rank=rank, world=world) \
            if self.active and sizes[0] else None
        self.pseudo = StepSampler(pseudo, sizes[1], seed=seed + since + 1, rank=rank, world=world) \
            if self.active and sizes[1] else None
        self.pairs = [(p.source, Target(p.english, cfg.pseudo.pivot_weight * p.dice, "pivot")) for p in pairs]
        self.pair_sampler = StepSampler(list(range(len(pairs))), sizes[2], seed=seed - 1, rank=rank, world=world) \
            if self.active and sizes[2] else None

    def keys(self, batch: int) -> list[tuple[int, int]]:
        """The captions of batch number `batch`."""
        return ((self.human.indices(batch) if self.human else [])
                + (self.pseudo.indices(batch - self.since * self.grad_accum) if self.pseudo else []))

    def word_pairs(self, batch: int) -> list[tuple[str, Target]]:
        """The word pairs (source word, target) of batch number `batch`."""
        return [self.pairs[i] for i in self.pair_sampler.indices(batch)] if self.pair_sampler else []


@dataclass(frozen=True)
class StepBatch:
    """One batch on the device: the grounded part (None when the n-dim loss is off) and the
    token cross-entropy part (None when no caption with a target is read)."""
    grounding: GroundingInputs | None
    targets: TargetInputs | None


class Batches:
    """Stage 1's batches: `batch(b, stream)` assembles batch number `b`, its targets from `stream`."""

    def __init__(self, cfg: TrainConfig, data: TrainingData, collate: TrainCollator, frozen: FrozenFeatures, *,
                 rank: int, world: int, device: torch.device) -> None:
        self.cfg, self.data, self.collate, self.frozen, self.device = cfg, data, collate, frozen, device
        self.grounded = cfg.objective.contrastive_weight > 0
        self.sampler = StepSampler(data.train_rows, cfg.optim.batch_size, seed=cfg.run.seed, rank=rank, world=world)

    def batch(self, number: int, stream: TargetStream) -> StepBatch:
        grounding = targets = None
        if self.grounded:
            grounding = self.grounding(number, stream.table)
        if stream.active:
            targets = self.collate.targets_batch(stream.keys(number), self.data.train, stream.table,
                                                 pairs=stream.word_pairs(number))
        return StepBatch(None if grounding is None else grounding.to(self.device),
                         None if targets is None else targets.to(self.device))

    def grounding(self, number: int, table: TargetTable) -> GroundingInputs:
        """The images of batch `number` and their captions, with the frozen towers' features."""
        rows = self.sampler.indices(number)
        collated = self.collate.sources(self.data.train.select(rows), rows,
                                        seed=self.cfg.run.seed * 1000 + self.sampler.epoch_of(number), targets=table)
        features = {}
        if self.frozen.images is not None:
            features["image_features"] = self.frozen.images[rows]
        if self.frozen.english is not None:
            captions = [e for caps in collated.english_text for e in caps]
            features["english_features"] = self.frozen.english[captions].view(len(rows), self.cfg.objective.k_english,
                                                                               -1)
            if self.frozen.experts:
                firsts = [caps[0] for caps in collated.english_text]  # each expert reads the first English caption
                features["expert_features"] = torch.stack([table[firsts] for table in self.frozen.experts], 1)
        return dataclasses.replace(collated.inputs, **features)
