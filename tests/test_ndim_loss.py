"""NDimContrastiveLoss against brute force on the whole cube, open_clip's losses, and invariants."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from open_clip.loss import ClipLoss, SigLipLoss

from models.english_anchor import anchor_loss
from models.axes import Axes
from models.cube import CubeMemoryError
from models.ndim_loss import LABELS, NDimContrastiveLoss
from models.objective import ContrastiveObjective
from models.regions import partition_name, tuple_partition
from models.similarities import NAMES, SIMILARITIES, get_similarity

f64 = torch.float64


def features(n, B, dim=6, seed=0, dtype=f64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, dim, generator=g, dtype=dtype).requires_grad_() for _ in range(n)]


def grads(tensors):
    return [t.grad.clone() for t in tensors]


# --- brute force: the whole cube, line by line --------------------------------------------------

def cube_of(name, feats, scale):
    """exp(logit_scale)·s on every tuple of the B^n cube, from the similarity's definition."""
    X = torch.stack([F.normalize(f, dim=-1) for f in feats])
    n, B = X.shape[:2]
    idx = torch.tensor(list(itertools.product(range(B), repeat=n)))
    return scale * get_similarity(name).tuples(X[torch.arange(n), idx]).view([B] * n)


def lines(cube, k):
    """Every line along axis k: [B^(n-1), B] (the other indices in row-major order)."""
    return torch.movedim(cube, k, -1).reshape(-1, cube.shape[k])


def brute_diagonal(cube):
    n, B = cube.dim(), cube.shape[0]
    per_axis = []
    for k in range(n):
        rows = []
        for i in range(B):
            index = [i] * n
            index[k] = slice(None)
            rows.append(F.cross_entropy(cube[tuple(index)][None], torch.tensor([i])))
        per_axis.append(torch.stack(rows).mean())
    return torch.stack(per_axis).mean()


def partitions_cube(n, B):
    return [tuple_partition(t) for t in itertools.product(range(B), repeat=n)]


def brute_dense(cube, target_fn, masked=frozenset(), weights=None):
    """Σ_k (1/n) Σ_lines Σ_j T_j (−log p_j), per line; with `weights`, per-region normalised."""
    n, B = cube.dim(), cube.shape[0]
    parts = partitions_cube(n, B)
    part_lines = [lines(torch.arange(B**n).view([B] * n), k) for k in range(n)]
    num, mass = {}, {}
    for k in range(n):
        for line_logits, line_ids in zip(lines(cube, k), part_lines[k]):
            keep = torch.tensor([parts[t] not in masked for t in line_ids.tolist()])
            if not keep.any():
                continue
            logp = torch.full_like(line_logits, float("-inf"))
            logp[keep] = line_logits[keep].log_softmax(0)
            T = target_fn(k, line_ids, keep)
            for j, t in enumerate(line_ids.tolist()):
                if keep[j] and T[j] > 0:
                    num[parts[t]] = num.get(parts[t], 0) + T[j] * -logp[j] / n
                    mass[parts[t]] = mass.get(parts[t], 0) + T[j] / n
    if weights is None:
        return sum(num.values())
    used = {r: weights.get(r, 0.0) for r in num}
    return sum(used[r] * num[r] / mass[r] for r in num) / sum(used.values())


def exact_target(feats, name, scale, B, n):
    """Per-line softmax of the perfect-case cube (every axis = normalised mean direction)."""
    Y = F.normalize(torch.stack([F.normalize(f, dim=-1) for f in feats]).mean(0), dim=-1).detach()
    perfect = cube_of(name, [Y] * n, scale.detach()).flatten()

    def target(k, line_ids, keep):
        line = perfect[line_ids].masked_fill(~keep, float("-inf"))
        return line.softmax(0) / B ** (n - 1)
    return target


# --- the diagonal scheme ------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in SIMILARITIES if n != "pairwise"])  # aliases are the same objects
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_fibre_path_equals_brute_force_cube(name, n):
    B = 4 if n <= 4 else 3
    feats = features(n, B, seed=n)
    loss_fn = NDimContrastiveLoss(name).double()
    out = loss_fn(feats)
    out.loss.backward()
    got, got_grads, got_scale = out.loss.detach(), grads(feats), loss_fn.logit_scale.grad.clone()
    for f in feats:
        f.grad = None
    loss_fn.logit_scale.grad = None
    ref = brute_diagonal(cube_of(name, feats, loss_fn.logit_scale.exp()))
    ref.backward()
    torch.testing.assert_close(got, ref.detach())
    for g, r in zip(got_grads, grads(feats)):
        torch.testing.assert_close(g, r)
    torch.testing.assert_close(got_scale, loss_fn.logit_scale.grad)


def test_n2_v0_is_open_clip_clip_loss():
    raw = features(2, 8, dim=16, dtype=torch.float32)
    for normalize in (True, False):
        loss_fn = NDimContrastiveLoss("v0", normalize=normalize)
        ours = loss_fn(raw if normalize else [F.normalize(f, dim=-1) for f in raw]).loss
        theirs = ClipLoss()(F.normalize(raw[0], dim=-1), F.normalize(raw[1], dim=-1), loss_fn.logit_scale.exp())
        torch.testing.assert_close(ours, theirs)
        for a, b in zip(torch.autograd.grad(ours, raw), torch.autograd.grad(theirs, raw)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_pairwise_is_the_sum_of_two_tower_clip_losses(n):
    feats = [F.normalize(f, dim=-1) for f in features(n, 6, dim=8, dtype=torch.float32)]
    loss_fn = NDimContrastiveLoss("pairwise")
    scale = loss_fn.logit_scale.exp()
    expected = sum(ClipLoss()(feats[k], feats[l], scale) for k in range(n) for l in range(k + 1, n))
    torch.testing.assert_close(loss_fn(feats).loss, expected)


def test_n2_sigmoid_is_open_clip_siglip_and_smoothed_is_label_smoothing():
    feats = [F.normalize(f, dim=-1) for f in features(2, 8, dim=16, dtype=torch.float32)]
    sig = NDimContrastiveLoss("v0", "sigmoid")
    expected = SigLipLoss()(feats[0], feats[1], sig.logit_scale.exp(), sig.logit_bias)
    torch.testing.assert_close(sig(feats).loss, expected)
    smooth = NDimContrastiveLoss("v0", "smoothed", smoothing=0.2)
    logits = smooth.logit_scale.exp() * feats[0] @ feats[1].T
    target = torch.arange(8)
    expected = (F.cross_entropy(logits, target, label_smoothing=0.2)
                + F.cross_entropy(logits.T, target, label_smoothing=0.2)) / 2
    torch.testing.assert_close(smooth(feats).loss, expected)


# --- dense schemes on the cube -----------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_one_hot_diagonal_targets_through_the_cube_reproduce_diagonal(n):
    feats = features(n, 3, seed=10 + n)
    diagonal = NDimContrastiveLoss("v7").double()(feats).loss
    cube_regions = NDimContrastiveLoss("v7", "regions", n_axes=n, region_targets="diagonal").double()(feats).loss
    cube_smoothed = NDimContrastiveLoss("v7", "smoothed", smoothing=0.0).double()(feats).loss
    torch.testing.assert_close(cube_regions, diagonal)
    torch.testing.assert_close(cube_smoothed, diagonal)


@pytest.mark.parametrize(("name", "n", "B"), [("v4", 3, 4), ("v1", 3, 3), ("gram", 4, 3), ("v0", 2, 5)])
def test_dense_schemes_equal_brute_force(name, n, B):
    feats = features(n, B, seed=20 + n)
    on_diagonal = torch.tensor([float(len(set(t)) == 1) for t in itertools.product(range(B), repeat=n)], dtype=f64)
    diag_target = lambda k, ids, keep: on_diagonal[ids]  # noqa: E731

    smooth = NDimContrastiveLoss(name, "smoothed", smoothing=0.3).double()
    cube = cube_of(name, feats, smooth.logit_scale.exp())
    expected = brute_dense(cube, lambda k, ids, keep: 0.7 * diag_target(k, ids, keep) / B + 0.3 / B**n)
    torch.testing.assert_close(smooth(feats).loss, expected)

    exact = NDimContrastiveLoss(name, "exact").double()
    scale = exact.logit_scale.exp()
    expected = brute_dense(cube, exact_target(feats, name, scale, B, n))
    torch.testing.assert_close(exact(feats).loss, expected)

    sig = NDimContrastiveLoss(name, "sigmoid", logit_bias_init=-2.0).double()
    z = torch.full_like(cube, -1.0)
    z[tuple([torch.arange(B)] * n)] = 1
    torch.testing.assert_close(sig(feats).loss, -F.logsigmoid(z * (cube - 2.0)).sum() / B)


def test_regions_with_mask_and_weights_equal_brute_force():
    n, B = 4, 3
    feats = features(n, B, seed=30)
    masked = frozenset({(2, 1, 1)})
    weights = {(4,): 2.0, (3, 1): 1.0, (2, 2): 0.5, (1, 1, 1, 1): 0.0}      # B=3: no (1,1,1,1)
    loss_fn = NDimContrastiveLoss("v4", "regions", n_axes=n, mask_regions=["2+1+1"],
                                  region_weights={partition_name(p): w for p, w in weights.items()}).double()
    out = loss_fn(feats)
    scale = loss_fn.logit_scale.exp()
    expected = brute_dense(cube_of("v4", feats, scale), exact_target(feats, "v4", scale, B, n),
                           masked=masked, weights=weights)
    torch.testing.assert_close(out.loss, expected)
    assert out.stats["region/2+1+1/weight"] == 0.0
    assert math.isclose(sum(v for k, v in out.stats.items() if k.endswith("/weight")), 1.0, rel_tol=1e-6)


def test_learnable_region_weights_start_at_the_fixed_ones():
    feats = features(4, 3, seed=35)
    weights = {"4": 2.0, "3+1": 1.0, "2+2": 0.0}
    fixed = NDimContrastiveLoss("v4", "regions", n_axes=4, region_weights=weights).double()
    learned = NDimContrastiveLoss("v4", "regions", n_axes=4, region_weights=weights, learn_region_weights=True).double()
    out = learned(feats)
    torch.testing.assert_close(out.loss, fixed(feats).loss)
    out.loss.backward()
    assert torch.isfinite(learned.region_logits).all() and torch.isfinite(learned.region_logits.grad).all()
    assert learned.region_logits.grad[2] == 0 and out.stats["region/2+2/weight"] == 0.0


def test_regions_weighted_by_target_mass_is_exact():
    n, B = 3, 4
    feats = features(n, B, seed=40)
    exact = NDimContrastiveLoss("v5", "exact").double()(feats)
    scale = math.exp(math.log(1 / 0.07))
    Y = F.normalize(torch.stack([F.normalize(f, dim=-1) for f in feats]).mean(0), dim=-1).detach()
    perfect = cube_of("v5", [Y] * n, scale)
    parts = partitions_cube(n, B)
    mass = {}
    for k in range(n):
        T = (perfect.softmax(k) / B ** (n - 1)).flatten()
        for t, p in enumerate(parts):
            mass[p] = mass.get(p, 0.0) + T[t].item() / n
    regions = NDimContrastiveLoss("v5", "regions", n_axes=n,
                                  region_weights={partition_name(p): m for p, m in mass.items()}).double()
    torch.testing.assert_close(regions(feats).loss, exact.loss)


@pytest.mark.parametrize("name", ["v0", "v1", "v15", "gram"])
def test_chunked_cube_equals_unchunked(name):
    n, B = 3, 5
    results = []
    for chunk_bytes in (2048, 2**30):
        feats = features(n, B, seed=50)
        loss_fn = NDimContrastiveLoss(name, "regions", n_axes=n, chunk_bytes=chunk_bytes,
                                      learn_region_weights=True).double()
        out = loss_fn(feats)
        out.loss.backward()
        results.append((out.loss.detach(), grads(feats), loss_fn.region_logits.grad.clone()))
    (a, ga, ra), (b, gb, rb) = results
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ra, rb)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)
    assert ra.abs().sum() > 0       # learnable region weights receive a gradient


def test_cube_that_cannot_fit_is_refused_with_its_size():
    loss_fn = NDimContrastiveLoss("v4", "exact", max_cube_bytes=2**29)
    with pytest.raises(CubeMemoryError, match=r"16×16×16×16×16×16 cube.*needs about [\d.]+ GiB.*labels='diagonal'"):
        loss_fn(features(6, 16, dtype=torch.float32))


# --- invariants and numerics ----------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 4), B=st.integers(2, 4), name=st.sampled_from(NAMES),
       labels=st.sampled_from(LABELS), seed=st.integers(0, 2**16), data=st.data())
def test_loss_is_invariant_to_permuting_the_batch_on_all_axes(n, B, name, labels, seed, data):
    perm = torch.tensor(data.draw(st.permutations(range(B))))
    kwargs = {"n_axes": n} if labels == "regions" else {}
    loss_fn = NDimContrastiveLoss(name, labels, **kwargs).double()
    feats = features(n, B, seed=seed)
    torch.testing.assert_close(loss_fn([f[perm] for f in feats]).loss, loss_fn(feats).loss)


def degenerate_batch(n, B, dim, dtype, seed=0):
    """Rows mixing random, identical-across-axes, zero, antipodal, one-hot and extreme vectors."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(B, dim, generator=g)
    kind = torch.arange(B) % 6
    out = []
    for k in range(n):
        x = torch.randn(B, dim, generator=g)
        x = torch.where((kind == 1)[:, None], base, x)
        x = torch.where((kind == 2)[:, None], 0.0, x)
        x = torch.where((kind == 3)[:, None], base * (-1) ** k, x)
        x = torch.where((kind == 4)[:, None], F.one_hot(torch.arange(B) % dim, dim).float(), x)
        x = torch.where((kind == 5)[:, None], base * (1e-20 if k % 2 else 1e4), x)
        out.append(x.to(dtype).requires_grad_())
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("labels", LABELS)
def test_no_nan_on_degenerate_batches(labels, dtype):
    for name in SIMILARITIES:
        for n, B in ((3, 12), (6, 12)) if labels == "diagonal" else ((3, 6),):
            feats = degenerate_batch(n, B, 8, dtype, seed=n)
            kwargs = {"n_axes": n} if labels == "regions" else {}
            out = NDimContrastiveLoss(name, labels, **kwargs)(feats)
            out.loss.backward()
            assert torch.isfinite(out.loss), (name, n)
            assert all(torch.isfinite(f.grad).all() for f in feats), (name, n)
            assert all(math.isfinite(v) for v in out.stats.values()), (name, n)


def test_logit_scale_init_and_clamp():
    loss_fn = NDimContrastiveLoss("v4")
    assert math.isclose(loss_fn.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    assert loss_fn.logit_bias is None
    with torch.no_grad():
        loss_fn.logit_scale.fill_(10.0)
    out = loss_fn(features(3, 4, dtype=torch.float32))
    out.loss.backward()
    assert math.isclose(out.stats["logit_scale"], 100.0, rel_tol=1e-5)
    assert loss_fn.logit_scale.grad.item() == 0.0
    fixed = NDimContrastiveLoss("v4", learn_logit_scale=False)
    assert not any(p is fixed.logit_scale for p in fixed.parameters())


def test_axis_weights_weight_the_per_axis_losses():
    feats = features(3, 5, seed=60)
    out = NDimContrastiveLoss("v7", axis_weights=[3.0, 1.0, 0.0]).double()(feats)
    expected = (3 * out.stats["loss/axis0"] + out.stats["loss/axis1"]) / 4
    assert math.isclose(out.loss.item(), expected, rel_tol=1e-6)


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_english_anchor_term_and_logged_cosines(kind):
    feats = features(3, 5, seed=70, dtype=torch.float32)
    objective = ContrastiveObjective(NDimContrastiveLoss("v4"), english_anchor=kind)
    out = objective(Axes(image=feats[0], english=(feats[1],), experts=(), student=(feats[2],)))
    student, english = feats[2], feats[1]
    expected = (1 - F.cosine_similarity(student, english)).mean() if kind == "cosine" else (student - english).square().mean()
    torch.testing.assert_close(out.terms["english_anchor"], expected)
    torch.testing.assert_close(out.terms["contrastive"], NDimContrastiveLoss("v4")(feats).loss)
    assert math.isclose(out.stats["cos/student_english"], F.cosine_similarity(student, english).mean().item(), rel_tol=1e-5)
    assert "cos/student_image" in out.stats
    anchor_loss(student, english, kind).backward()
    assert english.grad is None and student.grad is not None   # the English side is the target


def test_stats_report_regions_and_logits():
    out = NDimContrastiveLoss("v4").double()(features(3, 4))
    for key in ("logit/good", "logit/bad", "logit/gap", "region/3/mean_logit", "region/2+1/mse", "region/3/loss_share"):
        assert key in out.stats
    out = NDimContrastiveLoss("v4", "sigmoid").double()(features(3, 4))
    for region in ("3", "2+1", "1+1+1"):
        assert f"region/{region}/loss_share" in out.stats
    assert math.isclose(sum(out.stats[f"region/{r}/loss_share"] for r in ("3", "2+1", "1+1+1")), 1.0, rel_tol=1e-6)


def test_v15_pushes_the_wrong_way():
    """On aligned views the v4 loss is far below log B, v15's above it (documented failure)."""
    g = torch.Generator().manual_seed(80)
    base = torch.randn(8, 32, generator=g)
    feats = [base + 0.05 * torch.randn(8, 32, generator=g) for _ in range(3)]
    assert NDimContrastiveLoss("v4")(feats).loss < 0.5 * math.log(8) < math.log(8) < NDimContrastiveLoss("v15")(feats).loss


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="list of n >= 2 tensors"):
        NDimContrastiveLoss()([torch.randn(4, 3)])
    with pytest.raises(ValueError, match="same \\[B, F\\]"):
        NDimContrastiveLoss()([torch.randn(4, 3), torch.randn(5, 3)])
    with pytest.raises(ValueError, match="floating point"):
        NDimContrastiveLoss()([torch.ones(4, 3, dtype=torch.long)] * 2)
    with pytest.raises(ValueError, match="unknown labels"):
        NDimContrastiveLoss(labels="softmax")
    with pytest.raises(ValueError, match="needs n_axes"):
        NDimContrastiveLoss(labels="regions")
    with pytest.raises(ValueError, match="diagonal region cannot be masked"):
        NDimContrastiveLoss(labels="regions", n_axes=3, mask_regions=["3"])
    with pytest.raises(ValueError, match="not a partition of n=3"):
        NDimContrastiveLoss(labels="regions", n_axes=3, mask_regions=["2+2"])
    with pytest.raises(ValueError, match="need labels='regions'"):
        NDimContrastiveLoss(mask_regions=["2+1"])
    with pytest.raises(ValueError, match="built for n_axes=3"):
        NDimContrastiveLoss(labels="regions", n_axes=3)([torch.randn(4, 3)] * 2)
