"""Training-curve series from metrics.jsonl, grouped by key prefix (docs/architecture.md).

A key with one or two path components belongs to the group of its first component ("loss"
and "loss/ndim" plot together; "logit/good", "logit/bad" too; "logit_scale" alone); a key
with more components groups by first and last component ("health/image/effective_rank" and
"health/text/effective_rank" share "health/*/effective_rank"), so one plot never mixes
incommensurable statistics. Non-numeric values are skipped; keys absent from a run are
simply not drawn for it.
"""
from __future__ import annotations

from numbers import Real

from eval.report.collect import Run

BOOKKEEPING = {"step", "split", "epoch", "time", "wall_time", "timestamp"}


def group_of(key: str) -> str:
    parts = key.split("/")
    return parts[0] if len(parts) <= 2 else f"{parts[0]}/*/{parts[-1]}"


def curve_groups(runs: list[Run]) -> dict[str, dict[str, dict[str, dict[str, list]]]]:
    """{group: {run: {series label: {"step": [...], "value": [...]}}}}; the series label is the
    key, with " (<split>)" for evaluation records (e.g. "validation")."""
    groups: dict = {}
    for run in runs:
        for record in run.metrics:
            step = record.get("step")
            if not isinstance(step, Real):
                continue
            split = record.get("split")
            suffix = f" ({split})" if split not in (None, "train") else ""
            for key, value in record.items():
                if key in BOOKKEEPING or isinstance(value, bool) or not isinstance(value, Real):
                    continue
                series = (groups.setdefault(group_of(key), {}).setdefault(run.name, {})
                          .setdefault(key + suffix, {"step": [], "value": []}))
                series["step"].append(float(step))
                series["value"].append(float(value))
    return {g: groups[g] for g in sorted(groups, key=_group_order)}


def _group_order(group: str) -> tuple:
    """Loss first, then the families of the run-directory contract, then the rest by name."""
    order = ["loss", "logit_scale", "logit", "cos", "r1", "health", "region", "tau", "lr"]
    head = group.split("/")[0]
    return (order.index(head) if head in order else len(order), group)
