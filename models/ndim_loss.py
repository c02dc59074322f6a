"""The n-dimensional contrastive loss of docs/design.md §4.3 (thesis chapter 5).

n feature tensors X_k [B, F] (image, English caption, student translation, …) and an n-way
similarity s define a logit cube L[i_1, …, i_n] = exp(logit_scale)·s(X_1[i_1], …, X_n[i_n]).
Every scheme is a cross-entropy along each axis k — a softmax over each *line* of the cube
(all indices fixed but the k-th) — averaged over axes, or a per-tuple sigmoid loss:

- `diagonal`: target = the diagonal. Only the B lines through the diagonal hold a positive, so
  loss = mean_k mean_i CE(row_k,i, i) with row_k,i[j] = L[i, …, j (axis k), …, i]. Computed from
  these n·B² fibre values only (`Similarity.fibres`), never from the cube.
- dense schemes, on the cube (chunked, `models.cube`): a target distribution T^k over the cube
  for each axis k (Σ_t T^k_t = 1) and loss = Σ_k a_k Σ_t T^k_t·(−log softmax_k(L)_t), a_k the
  normalised axis weights. One-hot diagonal targets T = [t on diagonal]/B give exactly the
  `diagonal` loss; the schemes differ in T:
  * `exact`: the perfect case — every axis holding the same vectors Y — gives a cube L*; T^k is
    L* softmaxed along each line (every line carries target mass 1/B^(n-1)). Y is the mean
    direction of the batch's axes (`exact_reference="batch"`, detached) or fixed random unit
    vectors (`"random"`, the thesis; not invariant to permuting the batch).
  * `regions`: per-region CE L_r = Σ_k a_k Σ_{t∈r} T^k_t ℓ^k_t / M^k_r (M^k_r = Σ_{t∈r} T^k_t),
    loss = Σ_r w_r L_r over regions carrying target mass, weights fixed or learnable
    (softmax-normalised). T is `exact` or `diagonal` (`region_targets`). Masked regions are
    taken out of every softmax (logits −inf) and get no target; a line with nothing left is
    ignored. Weights ∝ M_r reproduce `exact`.
  * `smoothed`: T = (1 − ε)·diagonal/B + ε/B^n; for n = 2 this is CLIP with
    `label_smoothing=ε`.
- `sigmoid`: SigLIP over every tuple: Σ_t −log σ(z_t (L_t + logit_bias)) / B, z = +1 on the
  diagonal, −1 elsewhere; n = 2 is open_clip's SigLipLoss.

Distributed (models.distributed): features are gathered with gradient; a rank's loss covers the
lines (fibres, tuples) it owns and averages over ranks to the single-process loss.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.cube import DEFAULT_CHUNK_BYTES, evaluate_grid, format_bytes, require_fits
from models.distributed import all_reduce_sum, gather_with_grad, world
from models.regions import DEFAULT_EXPONENT, Partition, partition_name, partitions, region_grid, region_table
from models.similarities import get_similarity

LABELS = ("diagonal", "exact", "regions", "smoothed", "sigmoid")
DEFAULT_MAX_CUBE_BYTES = 4 * 2**30


@dataclass
class NDimLossOutput:
    """loss: the scalar to minimise; terms: its parts (scalar tensors); stats: floats for logs."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


def _partition(spec: Partition | str | Sequence[int]) -> Partition:
    parts = tuple(int(p) for p in spec.split("+")) if isinstance(spec, str) else tuple(int(p) for p in spec)
    return tuple(sorted(parts, reverse=True))


class NDimContrastiveLoss(nn.Module):
    """n-way contrastive loss; `forward(features)` with one [B, F] tensor per axis.

    Args:
        similarity: a name from `models.similarities.NAMES` (v0..v16, gram, pairwise).
        labels: one of LABELS (see module docstring).
        n_axes: number of axes; required for `regions` (its weights are per partition of n).
        normalize: L2-normalise every feature row first (the similarities' identities assume
            unit vectors).
        logit_scale_init, logit_scale_max, learn_logit_scale: L = exp(min(logit_scale, max))·s.
        logit_bias_init: initial SigLIP bias (`sigmoid` only; learnable).
        axis_weights: optional positive weight per axis for the CE schemes (normalised).
        smoothing: ε of `smoothed`.
        exact_reference, exact_seed: the perfect case of `exact` targets ("batch" | "random").
        region_targets: "exact" | "diagonal" targets for `regions`.
        region_weights: None (uniform) or {partition: weight ≥ 0}, partitions as tuples or "3+1+1";
            unlisted regions get weight 0 (still negatives, no loss).
        learn_region_weights: learn log-weights, softmax-normalised over regions with targets.
        mask_regions: partitions removed from every softmax (−inf) and from the targets.
        region_exponent: m of the region id Σ count^m (6; must be injective at this n).
        chunk_bytes: working memory per chunk of cube evaluation.
        max_cube_bytes: refuse dense schemes whose cube would need more (error names the figure).
        compute_stats: fill `out.stats` (one host sync per call).
    """

    def __init__(
        self,
        similarity: str = "v4",
        labels: str = "diagonal",
        *,
        n_axes: int | None = None,
        normalize: bool = True,
        logit_scale_init: float = math.log(1 / 0.07),
        logit_scale_max: float = math.log(100),
        learn_logit_scale: bool = True,
        logit_bias_init: float = -10.0,
        axis_weights: Sequence[float] | None = None,
        smoothing: float = 0.1,
        exact_reference: str = "batch",
        exact_seed: int = 0,
        region_targets: str = "exact",
        region_weights: Mapping[Partition | str, float] | None = None,
        learn_region_weights: bool = False,
        mask_regions: Sequence[Partition | str] = (),
        region_exponent: int = DEFAULT_EXPONENT,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_cube_bytes: int = DEFAULT_MAX_CUBE_BYTES,
        compute_stats: bool = True,
    ):
        super().__init__()
        self.similarity = get_similarity(similarity)
        if labels not in LABELS:
            raise ValueError(f"unknown labels {labels!r}; choose one of {LABELS}")
        self.labels = labels
        self.pairwise_baseline = self.similarity.name == "pairwise" and labels == "diagonal"
        if n_axes is not None and n_axes < 2:
            raise ValueError(f"n_axes must be >= 2, got {n_axes}")
        self.n_axes = n_axes
        self.normalize = normalize
        self.logit_scale_max = float(logit_scale_max)
        scale = torch.tensor(float(logit_scale_init))
        self.logit_scale = nn.Parameter(scale) if learn_logit_scale else nn.Buffer(scale)
        self.logit_bias = nn.Parameter(torch.tensor(float(logit_bias_init))) if labels == "sigmoid" else None

        if axis_weights is not None:
            if labels == "sigmoid" or self.pairwise_baseline:
                raise ValueError("axis_weights apply to the per-axis cross-entropy schemes, not to "
                                 f"labels={labels!r} with similarity={similarity!r}")
            weights = torch.as_tensor(axis_weights, dtype=torch.float32)
            if weights.dim() != 1 or len(weights) < 2 or not bool((weights >= 0).all()) or weights.sum() <= 0:
                raise ValueError(f"axis_weights must be >= 0 per axis with a positive sum, got {axis_weights}")
            if n_axes is not None and len(weights) != n_axes:
                raise ValueError(f"axis_weights has {len(weights)} entries for n_axes={n_axes}")
            self.register_buffer("axis_weights", weights / weights.sum())
        else:
            self.axis_weights = None

        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)
        if exact_reference not in ("batch", "random"):
            raise ValueError(f"exact_reference must be 'batch' or 'random', got {exact_reference!r}")
        self.exact_reference, self.exact_seed = exact_reference, int(exact_seed)

        self._init_regions(region_targets, region_weights, learn_region_weights, mask_regions, region_exponent)

        self.chunk_bytes, self.max_cube_bytes = int(chunk_bytes), int(max_cube_bytes)
        self.compute_stats = compute_stats
        self._region_cache: dict[tuple, torch.Tensor] = {}

    def _init_regions(self, targets, weights, learn, mask, exponent) -> None:
        self.region_exponent = exponent
        if self.labels != "regions":
            if weights is not None or learn or mask:
                raise ValueError("region_weights / learn_region_weights / mask_regions need labels='regions'")
            return
        if self.n_axes is None:
            raise ValueError("labels='regions' needs n_axes (region weights are per partition of n)")
        if targets not in ("exact", "diagonal"):
            raise ValueError(f"region_targets must be 'exact' or 'diagonal', got {targets!r}")
        self.region_targets = targets
        all_parts = partitions(self.n_axes)
        region_table(self.n_axes, self.n_axes, exponent)  # refuses a colliding exponent now

        def checked(spec) -> Partition:
            p = _partition(spec)
            if p not in all_parts:
                raise ValueError(f"{spec!r} is not a partition of n={self.n_axes}")
            return p

        masked = {checked(p) for p in mask}
        if (self.n_axes,) in masked:
            raise ValueError("the diagonal region cannot be masked: it holds the positives")
        if weights is None:
            init = torch.ones(len(all_parts))
        else:
            init = torch.zeros(len(all_parts))
            for spec, w in weights.items():
                if w < 0:
                    raise ValueError(f"region weight for {spec!r} must be >= 0, got {w}")
                init[all_parts.index(checked(spec))] = float(w)
            if init.sum() <= 0:
                raise ValueError("region_weights must give some region a positive weight")
        self.register_buffer("region_masked", torch.tensor([p in masked for p in all_parts]))
        self.register_buffer("region_zero", init == 0)            # weight 0: negatives, no loss
        if learn:
            self.region_logits = nn.Parameter(init.clamp_min(1e-30).log().masked_fill(init == 0, 0.0))
        else:
            self.register_buffer("region_fixed", init)
            self.region_logits = None

    # ------------------------------------------------------------------------------------------
    def forward(self, features: Sequence[torch.Tensor]) -> NDimLossOutput:
        """The loss of one batch; always computed with autocast off: under bf16 autocast its
        matmuls would run in bf16, too coarse for the loss (docs/scaling.md), and the gram
        similarity has no bf16 determinant."""
        if not isinstance(features, torch.Tensor) and features:
            with torch.autocast(features[0].device.type, enabled=False):
                return self._forward(features)
        return self._forward(features)

    def _forward(self, features: Sequence[torch.Tensor]) -> NDimLossOutput:
        X_local = self._stack(features)
        if self.normalize:
            X_local = F.normalize(X_local, dim=-1)
        X, offset = gather_with_grad(X_local)
        rows = torch.arange(offset, offset + X_local.shape[1], device=X.device)
        scale = self.logit_scale.clamp(max=self.logit_scale_max).exp()
        stats: dict[str, torch.Tensor] = {"logit_scale": scale.detach()}

        if self.pairwise_baseline:
            loss = self._pairwise(X, rows, scale, stats)
        elif self.labels == "diagonal":
            loss = self._diagonal(X, rows, scale, stats)
        else:
            loss = self._dense(X, rows, scale, stats)
        terms = {"contrastive": loss}
        out_stats: dict[str, float] = {}
        if self.compute_stats:
            keys = list(stats)
            values = torch.stack([stats[k].float().reshape(()) for k in keys]).tolist()
            out_stats = dict(zip(keys, values))
        return NDimLossOutput(loss, terms, out_stats)

    def _stack(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(features, torch.Tensor) or len(features) < 2:
            raise ValueError("NDimContrastiveLoss expects a list of n >= 2 tensors [B, F], one per axis")
        shapes = {tuple(f.shape) for f in features}
        if len(shapes) != 1 or features[0].dim() != 2:
            raise ValueError(f"every axis needs the same [B, F] features, got shapes {[tuple(f.shape) for f in features]}")
        if not all(f.dtype.is_floating_point for f in features):
            raise ValueError(f"features must be floating point, got {[f.dtype for f in features]}")
        if self.n_axes is not None and len(features) != self.n_axes:
            raise ValueError(f"this loss was built for n_axes={self.n_axes}, got {len(features)} axes")
        dtype = functools.reduce(torch.promote_types, [f.dtype for f in features], torch.float32)  # bf16 -> fp32
        return torch.stack([f.to(dtype) for f in features])

    def _axis_weights(self, n: int, device) -> torch.Tensor | float:
        """Normalised weight per axis (a plain 1/n when unweighted)."""
        if self.axis_weights is None:
            return 1 / n
        if len(self.axis_weights) != n:
            raise ValueError(f"axis_weights has {len(self.axis_weights)} entries for {n} axes")
        return self.axis_weights.to(device)

    # --- diagonal: fibres only ----------------------------------------------------------------
    def _diagonal(self, X, rows, scale, stats) -> torch.Tensor:
        n, B = X.shape[:2]
        every_row = len(rows) == B                                                # one process
        logits = scale * self.similarity.fibres(X, None if every_row else rows, self.chunk_bytes)  # [n, b, B]
        if every_row:
            positive = logits.diagonal(dim1=1, dim2=2)
        else:
            positive = logits.gather(2, rows.view(1, -1, 1).expand(n, -1, 1)).squeeze(2)
        per_axis = (logits.logsumexp(-1) - positive).mean(1)                     # CE, target = diagonal
        loss = (self._axis_weights(n, X.device) * per_axis).sum()
        if self.compute_stats:
            with torch.no_grad():
                for k in range(n):
                    stats[f"loss/axis{k}"] = per_axis[k]
                is_positive = F.one_hot(rows, B).bool().expand_as(logits)
                err = (logits.softmax(-1) - is_positive.to(logits.dtype)).square()
                names = (partition_name((n,)), partition_name((n - 1, 1)))
                for name, where in zip(names, (is_positive, ~is_positive)):
                    stats[f"region/{name}/mean_logit"] = logits[where].mean()
                    stats[f"region/{name}/mse"] = err[where].mean()
                    stats[f"region/{name}/loss_share"] = torch.tensor(float(name == names[0]))
                self._good_bad(stats, positive, logits[~is_positive])
        return loss

    def _pairwise(self, X, rows, scale, stats) -> torch.Tensor:
        """Baseline: Σ_{k<l} CLIP(X_k, X_l), each the mean of its two directions (local rows)."""
        n, B = X.shape[:2]
        logits = scale * torch.einsum("kaf,ljf->klaj", X[:, rows], X)            # [n, n, b, B]
        off = ~torch.eye(n, dtype=torch.bool, device=X.device)
        pairs = logits[off]                                                       # [n(n-1), b, B]
        ce = F.cross_entropy(pairs.reshape(-1, B), rows.repeat(len(pairs)))
        loss = ce * len(pairs) / 2
        if self.compute_stats:
            with torch.no_grad():
                positive = F.one_hot(rows, B).bool().expand_as(pairs)
                self._good_bad(stats, pairs[positive], pairs[~positive])
        return loss

    @staticmethod
    def _good_bad(stats, good, bad) -> None:
        stats["logit/good"], stats["logit/bad"] = good.mean(), bad.mean()
        stats["logit/gap"] = stats["logit/good"] - stats["logit/bad"]

    # --- dense schemes: the cube ---------------------------------------------------------------
    def _dense(self, X, rows, scale, stats) -> torch.Tensor:
        n, B = X.shape[:2]
        _, size = world()
        table = region_table(n, B, self.region_exponent)
        full = torch.arange(B, device=X.device)
        # The slabs of the cube this rank owns. Lines along axis k must stay whole, so ranks split
        # them by the index on another axis (axis 0 for k >= 1, axis 1 for k = 0); the sigmoid
        # loss has no lines and splits tuples by axis 0. One process: the whole cube.
        if size == 1:
            slabs = [(None, tuple(range(n)))]
        elif self.labels == "sigmoid":
            slabs = [(0, ())]
        else:
            slabs = [(0, tuple(range(1, n))), (1, (0,))]
        reference = self._reference(X) if self._needs_exact() else None

        pieces = []
        for restricted, axes in slabs:
            index_sets = [rows if axis == restricted else full for axis in range(n)]
            self.check_budget(tuple(len(s) for s in index_sets), X.element_size())
            s = evaluate_grid(self.similarity, X, index_sets, self.chunk_bytes)
            region = self._region_index(table, index_sets, restricted)
            if self.labels == "sigmoid":
                return self._sigmoid(scale * s + self.logit_bias, region, table, B, size, stats)
            perfect = None
            if reference is not None:
                with torch.no_grad():
                    perfect = scale.detach() * evaluate_grid(self.similarity, reference, index_sets, self.chunk_bytes)
            pieces.append((axes, scale * s, region, self._masked_cube(table, region), perfect))

        def targets(piece, k: int) -> torch.Tensor:
            _, _, region, mask, perfect = piece
            return self._targets(k, region, mask, perfect, B, n, X.dtype)

        coef = self._region_coefficients(table, pieces, targets, stats) if self.labels == "regions" else None
        a = self._axis_weights(n, X.device)
        loss = X.new_zeros(())
        # Σ_t w_t·(lse_line(t) − L_t) = Σ_lines lse·(Σ_line w) − Σ_t w_t L_t: per axis only line-sized
        # tensors are kept for backward, plus one cube W = Σ_k w^k.
        for number, piece in enumerate(pieces):
            axes, L, region, mask, _ = piece
            keep_stats = self.compute_stats and number == 0
            sq_err = contrib = torch.zeros_like(L) if keep_stats else None
            W = None
            for k in axes:
                T = targets(piece, k)
                w = (a[k] if torch.is_tensor(a) else a) * (T * coef[k][region] if coef is not None else T)
                logits = L if mask is None else L.masked_fill(mask & (~mask).any(k, keepdim=True), float("-inf"))
                lse = torch.logsumexp(logits, dim=k, keepdim=True)
                loss = loss + (w.sum(k, keepdim=True) * lse).sum()
                W = w if W is None else W + w
                if keep_stats:
                    with torch.no_grad():
                        # label = T normalised per line (lines without targets: 0 everywhere)
                        q = T / T.sum(k, keepdim=True).clamp_min(torch.finfo(T.dtype).tiny)
                        sq_err.add_((logits - lse).exp_().sub_(q).square_(), alpha=1 / len(axes))
                        contrib.addcmul_(w, lse - L)     # T·(−log softmax_k); 0 wherever T = 0
            loss = loss - (W * L).sum()
            if keep_stats:
                self._cube_stats(stats, table, L, region, sq_err, contrib)
        return loss * size

    def _sigmoid(self, L, region, table, B, size, stats) -> torch.Tensor:
        """SigLIP over every tuple of this rank's slab: Σ −log σ(z·L) / B, z = ±1."""
        positive = region == 0
        per_tuple = F.softplus(torch.where(positive, -L, L))
        if self.compute_stats:
            with torch.no_grad():
                err = (torch.sigmoid(L) - positive.to(L.dtype)).square()
                self._cube_stats(stats, table, L, region, err, per_tuple.detach())
                stats["logit_bias"] = self.logit_bias.detach()
        return per_tuple.sum() * size / B

    def _needs_exact(self) -> bool:
        return self.labels == "exact" or (self.labels == "regions" and self.region_targets == "exact")

    def _reference(self, X: torch.Tensor) -> torch.Tensor:
        """The perfect case of `exact`: one set of B unit vectors given to every axis."""
        if self.exact_reference == "batch":
            Y = F.normalize(X.detach().mean(0), dim=-1)
        else:
            gen = torch.Generator().manual_seed(self.exact_seed)
            Y = F.normalize(torch.randn(X.shape[1:], generator=gen, dtype=torch.float64), dim=-1)
        return Y.to(device=X.device, dtype=X.dtype).expand_as(X)

    def _targets(self, k, region, mask, perfect, B, n, dtype) -> torch.Tensor:
        """T^k on one slab: a distribution over the whole cube (summed over ranks, 1)."""
        diagonal = (region == 0).to(dtype)
        if self.labels == "smoothed":
            return (1 - self.smoothing) * diagonal / B + self.smoothing / B**n
        if perfect is None:                                   # regions with diagonal targets
            return diagonal / B
        if mask is not None:
            perfect = perfect.masked_fill(mask & (~mask).any(k, keepdim=True), float("-inf"))
        T = perfect.softmax(k) / B ** (n - 1)
        return T if mask is None else T.masked_fill(mask, 0)

    def _masked_cube(self, table, region) -> torch.Tensor | None:
        """Boolean cube of tuples in masked regions (None when nothing is masked)."""
        if self.labels != "regions" or not bool(self.region_masked.any()):
            return None
        return self.region_masked[table.positions][region]

    def _region_coefficients(self, table, pieces, targets, stats) -> dict[int, torch.Tensor]:
        """w_r / M^k_r per axis k and region r (0 where a region has no target mass)."""
        R = len(table.partitions)
        axes, masses = [], []
        for piece in pieces:
            for k in piece[0]:
                T = targets(piece, k)
                axes.append(k)
                masses.append(torch.zeros(R, dtype=T.dtype, device=T.device).index_add_(0, piece[2].flatten(), T.flatten()))
        mass = all_reduce_sum(torch.stack(masses))                    # [n, R], global target mass
        present = table.positions
        used = (mass.sum(0) > 0) & ~self.region_zero[present]
        if not bool(used.any()):
            raise ValueError("every region that carries targets has weight 0 in region_weights")
        if self.region_logits is not None:
            w = self.region_logits[present].masked_fill(~used, float("-inf")).softmax(0)
        else:
            raw = self.region_fixed[present] * used
            w = raw / raw.sum()
        if self.compute_stats:
            for name, value in zip(table.names, w.detach()):
                stats[f"region/{name}/weight"] = value
        tiny = torch.finfo(mass.dtype).tiny
        return {k: torch.where(m > 0, w / m.clamp_min(tiny), 0.0) for k, m in zip(axes, mass)}

    def _region_index(self, table, index_sets, restricted) -> torch.Tensor:
        key = (table.n, table.batch_size, table.exponent, restricted,
               None if restricted is None else tuple(index_sets[restricted].tolist()), str(index_sets[0].device))
        if key not in self._region_cache:
            self._region_cache.clear()
            self._region_cache[key] = region_grid(table, index_sets)
        return self._region_cache[key]

    def check_budget(self, shape: tuple[int, ...], element_size: int = 4) -> None:
        """`CubeMemoryError` when a dense scheme's cube of `shape` would need more than `max_cube_bytes`."""
        tuples = math.prod(shape)
        n = len(shape)
        # cube-sized tensors alive at once; measured peak / (4·B^n) at n=6: 8-13 (stats on),
        # 2n more for regions with learnable weights and masks (docs/ndim_loss.md)
        cubes = 16 + (2 * n if self.labels == "regions" else 0)
        nbytes = tuples * cubes * element_size
        require_fits(
            nbytes, self.max_cube_bytes,
            f"labels={self.labels!r} on a {'×'.join(map(str, shape))} cube ({tuples:.3g} tuples, "
            f"{format_bytes(tuples * element_size)} per cube-sized tensor, ~{cubes} alive)",
            "use labels='diagonal' (n·B² fibre values), a smaller batch or n, or raise max_cube_bytes")

    @torch.no_grad()
    def _cube_stats(self, stats, table, L, region, sq_err, contrib) -> None:
        """Per-region mean logit, MSE to the label, and share of the loss (this rank's slab)."""
        R = len(table.partitions)
        flat = region.flatten()

        def per_region(values: torch.Tensor) -> torch.Tensor:
            return torch.zeros(R, dtype=values.dtype, device=values.device).index_add_(0, flat, values.flatten())

        count = torch.bincount(flat, minlength=R).to(L.dtype)
        logit_sum = per_region(L)
        mean_logit = logit_sum / count.clamp_min(1)
        mse = per_region(sq_err) / count.clamp_min(1)
        share = per_region(contrib)
        share = share / share.sum().clamp_min(torch.finfo(share.dtype).tiny)
        for r, name in enumerate(table.names):
            stats[f"region/{name}/mean_logit"] = mean_logit[r]
            stats[f"region/{name}/mse"] = mse[r]
            stats[f"region/{name}/loss_share"] = share[r]
        bad = logit_sum[1:].sum() / count[1:].sum().clamp_min(1)          # region 0 is the diagonal
        stats["logit/good"], stats["logit/bad"], stats["logit/gap"] = mean_logit[0], bad, mean_logit[0] - bad
