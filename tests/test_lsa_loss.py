"""Cycle lengths and the LSA loss (thesis §6.7), against hand-built permutations and brute force."""
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.assignment import assignment_permutation, cycle_lengths, lsa_loss


def test_cycle_lengths_of_the_identity_are_all_one():
    assert cycle_lengths(torch.arange(7)).tolist() == [1] * 7


def test_cycle_lengths_of_one_n_cycle():
    perm = torch.tensor([1, 2, 3, 4, 0])  # 0 -> 1 -> 2 -> 3 -> 4 -> 0
    assert cycle_lengths(perm).tolist() == [5] * 5


def test_cycle_lengths_of_mixed_cycles_and_batches():
    # (0)(1 2)(3 5 4)(6 7 8 9)
    perm = torch.tensor([0, 2, 1, 5, 3, 4, 7, 8, 9, 6])
    assert cycle_lengths(perm).tolist() == [1, 2, 2, 3, 3, 3, 4, 4, 4, 4]
    batch = torch.stack([perm, torch.arange(10), torch.roll(torch.arange(10), 1)])
    assert cycle_lengths(batch).tolist() == [[1, 2, 2, 3, 3, 3, 4, 4, 4, 4], [1] * 10, [10] * 10]


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(9))))
def test_cycle_lengths_match_following_the_links(perm):
    expected = []
    for start in range(len(perm)):
        length, at = 1, perm[start]
        while at != start:
            length, at = length + 1, perm[at]
        expected.append(length)
    assert cycle_lengths(torch.tensor(perm)).tolist() == expected


def test_cycle_lengths_reject_non_permutations():
    with pytest.raises(ValueError, match="permutation"):
        cycle_lengths(torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError, match="integer"):
        cycle_lengths(torch.tensor([0.0, 1.0]))


def test_loss_is_zero_when_the_identity_is_optimal():
    logits = torch.randn(6, 6) + 10 * torch.eye(6)
    assert assignment_permutation(logits).tolist() == list(range(6))
    assert lsa_loss(logits).item() == 0.0


def test_loss_on_a_hand_built_three_cycle():
    # rows 0, 1, 2 prefer the next column: the optimal assignment is the 3-cycle 0->1->2->0
    logits = torch.tensor([[0.0, 2.0, 0.0, 0.0],
                           [0.0, 0.0, 2.0, 0.0],
                           [2.0, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, 1.0]], requires_grad=True)
    loss = lsa_loss(logits)
    assert loss.item() == pytest.approx(3 * 3 * 2.0 / 4)  # three rows, cycle length 3, margin 2, / B
    loss.backward()
    expected = torch.zeros(4, 4)
    for i, j in [(0, 1), (1, 2), (2, 0)]:
        expected[i, j], expected[i, i] = 3 / 4, -3 / 4
    torch.testing.assert_close(logits.grad, expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_loss_matches_brute_force_definition(b, seed):
    """loss >= 0, computed from the brute-force best permutation; 0 iff the identity is optimal."""
    logits = torch.randn(b, b, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    best = max(itertools.permutations(range(b)), key=lambda p: sum(logits[i, p[i]].item() for i in range(b)))
    best = torch.tensor(best)
    weights = cycle_lengths(best).double()
    expected = (weights * (logits[torch.arange(b), best] - logits.diagonal())).mean()
    loss = lsa_loss(logits)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-9)
    assert loss.item() >= -1e-12
    identity_optimal = logits.diagonal().sum() >= logits[torch.arange(b), best].sum() - 1e-12
    assert (loss.item() <= 1e-12) == bool(identity_optimal)


def test_batched_loss_and_reductions():
    logits = torch.randn(3, 5, 5)
    per_item = lsa_loss(logits, reduction="none")
    assert per_item.shape == (3,)
    torch.testing.assert_close(lsa_loss(logits), per_item.mean())
    torch.testing.assert_close(lsa_loss(logits, reduction="sum"), per_item.sum())
    torch.testing.assert_close(per_item[1], lsa_loss(logits[1]))
    with pytest.raises(ValueError, match="reduction"):
        lsa_loss(logits, reduction="max")
    with pytest.raises(ValueError, match="square"):
        lsa_loss(torch.randn(4, 5))


def test_approximate_methods_give_permutations():
    logits = torch.randn(2, 8, 8)
    for method in ["greedy_regret", "stepped_argmax", "sinkhorn", "auction"]:
        perm = assignment_permutation(logits, method=method)
        assert torch.equal(perm.sort(-1).values, torch.arange(8).expand(2, 8))
        assert torch.isfinite(lsa_loss(logits, method=method))


def test_loss_as_a_training_term_makes_the_identity_optimal():
    """Gradient descent on the loss alone drives a confused batch to the identity assignment."""
    torch.manual_seed(0)
    logits = torch.randn(10, 10, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=0.5)
    start = lsa_loss(logits).item()
    for _ in range(100):
        optimizer.zero_grad()
        loss = lsa_loss(logits)
        if loss.item() == 0:
            break
        loss.backward()
        optimizer.step()
    assert start > 0 and lsa_loss(logits).item() == 0.0
    assert assignment_permutation(logits).tolist() == list(range(10))
