"""Regions of the n-dimensional logit cube (models.regions) against sympy and brute force."""
import itertools
from collections import Counter

import pytest
import torch
from sympy.functions.combinatorial.numbers import bell, partition
from sympy.utilities.iterables import partitions as sympy_partitions

from models.cube import grid_tuples
from models.regions import (
    canonical_patterns, colliding_partitions, partitions, region_grid, region_id, region_ids,
    region_size, region_table, tuple_partition,
)


def _sympy_partitions(n):
    return sorted(tuple(sorted(Counter(p).elements(), reverse=True)) for p in sympy_partitions(n))


@pytest.mark.parametrize("n", range(1, 13))
def test_partitions_match_sympy(n):
    assert sorted(partitions(n)) == _sympy_partitions(n)
    assert len(partitions(n)) == partition(n)
    assert partitions(n)[0] == (n,)          # the diagonal region comes first


@pytest.mark.parametrize("n", range(1, 7))
def test_region_count_on_the_whole_cube_is_the_partition_number(n):
    """Every tuple of the B^n cube (B = n, and B = n + 1) — thesis Table 5.1."""
    for B in (n, n + 1):
        ids = region_ids(grid_tuples([torch.arange(B)] * n, 0, B**n))
        assert len(torch.unique(ids)) == partition(n)


@pytest.mark.parametrize("n", range(1, 9))
def test_region_count_from_canonical_patterns(n):
    """For B >= n each tuple shares its pattern with one restricted growth string, so the
    Bell(n) canonical rows carry every region id of the cube (checked on random tuples)."""
    patterns = canonical_patterns(n)
    assert len(patterns) == bell(n)
    ids = region_ids(patterns)
    assert len(torch.unique(ids)) == partition(n) == len(region_table(n, n).partitions)
    random = torch.randint(0, n, (500, n), generator=torch.Generator().manual_seed(n))
    assert set(region_ids(random).tolist()) <= set(ids.tolist())


def test_region_ids_match_the_counting_formula():
    tuples = torch.randint(0, 5, (2000, 6), generator=torch.Generator().manual_seed(0))
    for m in (2, 4, 6):
        expected = [sum(c**m for c in Counter(t.tolist()).values()) for t in tuples]
        assert region_ids(tuples, m).tolist() == expected
    assert tuple_partition((3, 7, 3)) == (2, 1)
    assert region_id((2, 1), 6) == 65


def test_no_collisions_at_m6_and_m4_up_to_12():
    for n in range(1, 13):
        assert colliding_partitions(n, 6) == []
        assert colliding_partitions(n, 4) == []
    assert ((6, 2, 2, 1, 1, 1), (5, 5, 3)) in colliding_partitions(13, 4)


def test_m2_collides_at_n6():
    clashes = {frozenset(group) for group in colliding_partitions(6, 2)}
    assert frozenset({(3, 3), (4, 1, 1)}) in clashes        # DESIGN §4.3
    assert frozenset({(2, 2, 2), (3, 1, 1, 1)}) in clashes  # thesis: MaskValue 12
    assert all(colliding_partitions(n, 2) == [] for n in range(1, 6))
    cube = grid_tuples([torch.arange(6)] * 6, 0, 6**6)
    assert len(torch.unique(region_ids(cube, 2))) < partition(6)     # seen on the real cube too
    with pytest.raises(ValueError, match=r"m=2 is not injective at n=6"):
        region_table(6, 8, exponent=2)


@pytest.mark.parametrize(("n", "B"), [(3, 2), (4, 3), (4, 5), (5, 3), (6, 2), (3, 7)])
def test_region_sizes_match_brute_force(n, B):
    counts = Counter(tuple_partition(t) for t in itertools.product(range(B), repeat=n))
    table = region_table(n, B)
    assert dict(zip(table.partitions, table.sizes)) == dict(counts)
    assert sum(table.sizes) == B**n
    assert all(len(p) <= B for p in table.partitions)
    assert region_size((1,) * n, B) == (0 if B < n else sum(1 for t in itertools.product(range(B), repeat=n)
                                                          if len(set(t)) == n))


def test_region_grid_on_a_slab():
    n, B = 4, 5
    table = region_table(n, B)
    index_sets = [torch.arange(B), torch.tensor([1, 3]), torch.arange(B), torch.arange(B)]
    grid = region_grid(table, index_sets, chunk=7)
    assert grid.shape == (5, 2, 5, 5)
    for t in itertools.product(*[s.tolist() for s in index_sets]):
        position = tuple(s.tolist().index(v) for s, v in zip(index_sets, t))
        assert table.partitions[grid[position]] == tuple_partition(t)


def test_table_lookup_errors():
    table = region_table(3, 4)
    with pytest.raises(ValueError, match="not a region"):
        table.number((4,))
    with pytest.raises(ValueError, match="not regions of this cube"):
        table.index(torch.tensor([5]))
    with pytest.raises(ValueError, match="integer index tuples"):
        region_ids(torch.zeros(3, 2))
