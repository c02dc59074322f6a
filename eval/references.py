"""Checking and reshaping hypothesis/reference inputs, shared by every metric.

Convention (the `bert-score` one): `refs[i]` belongs to `hyps[i]` and is either one string or a
list of strings (a variable number of references per hypothesis is allowed). sacreBLEU wants
the transpose — reference *streams* — which `to_streams` builds, padding with None where a
hypothesis has fewer references (sacreBLEU's own way of expressing a variable count).
"""
from __future__ import annotations

from collections.abc import Sequence

References = Sequence[str] | Sequence[Sequence[str]]


def reference_lists(hyps: Sequence[str], refs: References, *,
                    drop_empty: bool = False) -> list[list[str]]:
    """Validate inputs and return one non-empty list of reference strings per hypothesis.
    `drop_empty` removes blank references first (embedding metrics have nothing to match in
    them; sacreBLEU scores them as given)."""
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be sequences of sentences, not a single string")
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} hypotheses but {len(refs)} reference entries; "
                         "refs[i] must hold the reference(s) of hyps[i]")
    if len(hyps) == 0:
        raise ValueError("no hypotheses to score")
    for i, h in enumerate(hyps):
        if not isinstance(h, str):
            raise TypeError(f"hyps[{i}] is {type(h).__name__}, expected str")
    out = []
    for i, r in enumerate(refs):
        group = [r] if isinstance(r, str) else [x for x in r if x is not None]
        if drop_empty:
            group = [x for x in group if not isinstance(x, str) or x.strip()]
        if not group:
            raise ValueError(f"hypothesis {i} has no {'non-blank ' if drop_empty else ''}"
                             "reference")
        if not all(isinstance(x, str) for x in group):
            raise TypeError(f"refs[{i}] must be a string or a list of strings")
        out.append(group)
    return out


def to_streams(ref_lists: list[list[str]]) -> list[list[str | None]]:
    """Per-hypothesis reference lists → sacreBLEU reference streams (None = no reference)."""
    width = max(len(g) for g in ref_lists)
    return [[g[k] if k < len(g) else None for g in ref_lists] for k in range(width)]


def streams_to_lists(streams: Sequence[Sequence[str]]) -> list[list[str]]:
    """sacreBLEU-style reference streams (one list per reference file) → per-hypothesis lists."""
    lengths = {len(s) for s in streams}
    if len(lengths) != 1:
        raise ValueError(f"reference streams differ in length: {sorted(lengths)}")
    return [list(group) for group in zip(*streams)]
