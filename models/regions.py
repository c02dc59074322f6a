"""Regions of the n-dimensional logit cube (docs/design.md §4.3, thesis §5.4).

A tuple (i_1, …, i_n) of batch indices belongs to the region given by its *coincidence
pattern*: how many positions share each index value. (3, 7, 3) has counts {3: 2, 7: 1}, i.e.
the integer partition (2, 1) of n = 3. The thesis names a region by the scalar

    region id = Σ_c count_c^m          (thesis eq. 5.1, m = 6 in its text, 4 in its code)

which is cheap on tensors: Σ_c count_c^m = Σ_k count(i_k)^(m-1), a sum over positions. The
id must be injective on partitions; m = 2 is not from n = 6 on ((3,3) and (4,1,1) both give
18; (2,2,2) and (3,1,1,1) both give 12), m = 4 first collides at n = 13, m = 6 holds far
beyond any n we use. `region_table` refuses an exponent that collides.

With B ≥ n every partition of n occurs, so there are p(n) regions (1, 2, 3, 5, 7, 11, 15, 22,
… — thesis Table 5.1); with B < n only partitions with at most B parts do.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache, cache

import torch

from models.cube import chunk_ranges, grid_tuples

DEFAULT_EXPONENT = 6

Partition = tuple[int, ...]


@cache
def partitions(n: int) -> tuple[Partition, ...]:
    """All integer partitions of n, parts descending, from (n,) down to (1, …, 1)."""
    if n < 0:
        raise ValueError(f"partitions need n >= 0, got {n}")

    def build(rest: int, largest: int) -> list[Partition]:
        if rest == 0:
            return [()]
        return [(p, *tail) for p in range(min(rest, largest), 0, -1) for tail in build(rest - p, p)]

    return tuple(build(n, n))


def partition_name(partition: Partition) -> str:
    """Readable name for logs: (3, 2, 1) -> '3+2+1'."""
    return "+".join(map(str, partition))


def region_id(partition: Partition, exponent: int = DEFAULT_EXPONENT) -> int:
    """Thesis eq. 5.1 for one coincidence pattern: Σ_c count_c^m."""
    return sum(c**exponent for c in partition)


def tuple_partition(indices) -> Partition:
    """Coincidence pattern of one index tuple: (3, 7, 3) -> (2, 1)."""
    return tuple(sorted(Counter(int(i) for i in indices).values(), reverse=True))


def _check_exponent(n: int, exponent: int) -> None:
    if exponent < 2:
        raise ValueError(f"region exponent must be >= 2, got {exponent}")
    if n**exponent >= 2**62:
        raise ValueError(f"region ids n^m = {n}^{exponent} overflow int64; use a smaller exponent")


def region_ids(indices: torch.Tensor, exponent: int = DEFAULT_EXPONENT) -> torch.Tensor:
    """Region id of each index tuple: indices [..., n] (integer) -> int64 [...].

    Σ_c count_c^m is computed as Σ_k count(i_k)^(m-1): each value c is counted once per
    position holding it. Cost O(n^2) per tuple, no sorting.
    """
    if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.dim() < 1:
        raise ValueError(f"region_ids expects integer index tuples [..., n], got {indices.dtype} {tuple(indices.shape)}")
    _check_exponent(indices.shape[-1], exponent)
    counts = (indices.unsqueeze(-1) == indices.unsqueeze(-2)).sum(-1, dtype=torch.int64)
    return counts.pow(exponent - 1).sum(-1)


def colliding_partitions(n: int, exponent: int) -> list[tuple[Partition, ...]]:
    """Groups of distinct partitions of n that share a region id under this exponent."""
    _check_exponent(n, exponent)
    by_id: dict[int, list[Partition]] = defaultdict(list)
    for p in partitions(n):
        by_id[region_id(p, exponent)].append(p)
    return [tuple(group) for group in by_id.values() if len(group) > 1]


def region_size(partition: Partition, batch_size: int) -> int:
    """Number of tuples of the B^n cube with this coincidence pattern.

    (ways to split the n positions into blocks of these sizes) × (ways to give the blocks
    distinct batch indices) = n! / (Π λ_i! · Π_s mult_s!) · B (B-1) … (B-r+1).
    """
    n, r = sum(partition), len(partition)
    if r > batch_size:
        return 0
    splits = math.factorial(n)
    for part in partition:
        splits //= math.factorial(part)
    for mult in Counter(partition).values():
        splits //= math.factorial(mult)
    return splits * math.perm(batch_size, r)


def canonical_patterns(n: int) -> torch.Tensor:
    """One representative tuple per coincidence pattern of n positions: the restricted
    growth strings (first occurrences numbered 0, 1, 2, …), Bell(n) rows of [n] int64.

    Every tuple of a B^n cube with B >= n has the pattern (and hence the region id) of exactly
    one of these rows, so region questions about the cube can be answered on Bell(n) rows.
    """
    rows: list[list[int]] = [[]]
    for _ in range(n):
        rows = [row + [v] for row in rows for v in range((max(row) + 2) if row else 1)]
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, n)


@dataclass(frozen=True)
class RegionTable:
    """The regions present in a B^n cube, in `partitions(n)` order (diagonal region first)."""

    n: int
    batch_size: int
    exponent: int
    partitions: tuple[Partition, ...]
    ids: tuple[int, ...]
    sizes: tuple[int, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(partition_name(p) for p in self.partitions)

    @property
    def positions(self) -> list[int]:
        """Where each present region sits in `partitions(n)` (all regions of n, any B)."""
        every = partitions(self.n)
        return [every.index(p) for p in self.partitions]

    def index(self, ids: torch.Tensor) -> torch.Tensor:
        """Map region ids (any shape) to region numbers 0..R-1 (int64)."""
        table = torch.tensor(self.ids, dtype=torch.int64, device=ids.device)
        order = torch.argsort(table)
        pos = torch.searchsorted(table[order], ids).clamp_max(len(self.ids) - 1)
        if not torch.equal(table[order][pos], ids):
            raise ValueError("region_table.index got ids that are not regions of this cube")
        return order[pos]

    def number(self, partition: Partition) -> int:
        """Region number of a partition, with a clear error if it is not present."""
        partition = tuple(sorted(partition, reverse=True))
        if partition not in self.partitions:
            raise ValueError(
                f"{partition_name(partition)} is not a region of a B={self.batch_size}, n={self.n} cube; "
                f"regions: {', '.join(self.names)}")
        return self.partitions.index(partition)


@lru_cache(maxsize=128)
def region_table(n: int, batch_size: int, exponent: int = DEFAULT_EXPONENT) -> RegionTable:
    """Regions present in a batch_size^n cube; raises if the exponent lets two collide."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"region_table needs n >= 1 and batch_size >= 1, got n={n}, B={batch_size}")
    clashes = colliding_partitions(n, exponent)
    if clashes:
        shown = "; ".join(" vs ".join(map(str, group)) for group in clashes)
        raise ValueError(f"region exponent m={exponent} is not injective at n={n}: {shown}; use m=6")
    present = tuple(p for p in partitions(n) if len(p) <= batch_size)
    return RegionTable(
        n=n, batch_size=batch_size, exponent=exponent, partitions=present,
        ids=tuple(region_id(p, exponent) for p in present),
        sizes=tuple(region_size(p, batch_size) for p in present),
    )


def region_grid(table: RegionTable, index_sets: list[torch.Tensor], chunk: int = 2**20) -> torch.Tensor:
    """Region number (0..R-1, int64) of every tuple of index_sets[0] × … × index_sets[n-1]."""
    shape = tuple(len(s) for s in index_sets)
    out = torch.empty(math.prod(shape), dtype=torch.int64, device=index_sets[0].device)
    for start, stop in chunk_ranges(out.numel(), chunk):
        out[start:stop] = table.index(region_ids(grid_tuples(index_sets, start, stop), table.exponent))
    return out.view(shape)
