"""The student's training task: what one batch costs, every weight of it in one place.

`StudentTask.forward(batch, step)` runs the grounded system on the batch (the student's token
cross-entropy on captions with a target; the student read by CLIP, with the images and English
captions, as the axes of the n-dim loss) and adds the terms up:

    total = w_contrastive · (contrastive + w_anchor · english_anchor + w_bank · anchor_bank + w_lsa · lsa)
            + w_token_ce · token_ce

where a term the configuration leaves out (or the batch does not feed) is absent. What changes
from step to step is a function of the step the loop passes in: the splice's temperature
(`--tau-start` → `--tau-end`) and, with `--pseudo-anneal`, the weight of pseudo targets.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor

from models.axes import Axes
from models.inputs import TargetInputs
from models.splice import TemperatureSchedule
from training.batches import StepBatch
from training.options import TrainConfig

GROUNDING_TERMS = ("english_anchor", "anchor_bank", "lsa")  # added to the contrastive loss, each with its weight


@dataclass(frozen=True)
class Losses:
    """`total`: what the step minimises (None when the batch holds nothing to learn from);
    `terms`: each term unweighted, by name (`token_ce`, `contrastive`, and the GROUNDING_TERMS)."""
    total: Tensor | None
    terms: dict[str, Tensor]


@dataclass(frozen=True)
class StepReport:
    """What the log shows of a step besides its losses: the objective's statistics (logit scale,
    logits, regions, cosines), the splice temperature and the axes (detached) when the n-dim loss ran."""
    stats: dict[str, float]
    tau: float | None
    axes: Axes | None


@dataclass(frozen=True)
class LossWeights:
    token_ce: float
    contrastive: float
    english_anchor: float
    anchor_bank: float
    lsa: float

    @classmethod
    def of(cls, cfg: TrainConfig) -> LossWeights:
        o = cfg.objective
        return cls(o.token_ce_weight, o.contrastive_weight, o.english_anchor_weight, o.anchor_bank_weight, o.lsa_weight)


class StudentTask:
    """The prepared `system` (`models.grounded.GroundedSystem`) and `objective`
    (`models.objective.ContrastiveObjective`), with every weight and schedule of `cfg`."""

    def __init__(self, system, objective, cfg: TrainConfig) -> None:
        self.system, self.objective = system, objective
        self.weights = LossWeights.of(cfg)
        self.temperature = TemperatureSchedule(cfg.student.tau_start, cfg.student.tau_end, steps=max(1, cfg.optim.steps))
        self.steps, self.anneal = cfg.optim.steps, cfg.pseudo.pseudo_anneal

    def forward(self, batch: StepBatch, step: int) -> tuple[Losses, StepReport]:
        """The losses of `batch` at optimizer step `step`, and the report of it."""
        tau = self.temperature(step)
        targets = None if batch.targets is None else self.annealed(batch.targets, step)
        out = self.system(batch.grounding, targets, tau=tau)
        terms, stats = {}, {}
        if out.token_ce is not None:
            terms["token_ce"] = out.token_ce
        if out.axes is not None:
            grounding = self.objective(out.axes)  # in fp32: the n-dim loss turns autocast off itself
            terms.update(grounding.terms)
            stats = grounding.stats
        w = self.weights
        total = None
        if "contrastive" in terms:
            contrastive = terms["contrastive"]
            for name in GROUNDING_TERMS:
                if name in terms:
                    contrastive = contrastive + getattr(w, name) * terms[name]
            total = w.contrastive * contrastive
        if "token_ce" in terms:
            token_ce = w.token_ce * terms["token_ce"]
            total = token_ce if total is None else total + token_ce
        axes = None if out.axes is None else out.axes.detach()
        return Losses(total, terms), StepReport(stats, None if axes is None else tau, axes)

    __call__ = forward

    def annealed(self, targets: TargetInputs, step: int) -> TargetInputs:
        return annealed(targets, step, self.steps) if self.anneal else targets


def annealed(targets: TargetInputs, step: int, steps: int) -> TargetInputs:
    """`--pseudo-anneal`: the pseudo targets' weights × (1 − step/steps), the human ones unchanged,
    so the human translations alone teach the last steps; a batch without a human target (P = 0)
    keeps its weights — nothing else would teach."""
    if not targets.human.any():
        return targets
    factor = 1 - step / max(1, steps)
    return dataclasses.replace(targets, weight=targets.weight.where(targets.human, targets.weight * factor))
