"""Chunked evaluation of similarities over index tuples, recomputed in backward.

The n-way logit cube has B^n entries, and evaluating a per-feature similarity on it naively
builds (B, …, B, F) intermediates (B^n·F floats: 34 GB at n=6, B=16, F=512). Here a function
is evaluated chunk by chunk under `no_grad`, keeping only its [T]-sized outputs; backward
re-runs each chunk with gradients on and pulls the incoming gradient back through it
(`torch.autograd.grad`), so peak memory is O(chunk) on top of the outputs, never O(B^n·F).

`chunked_map` is the mechanism; `evaluate_tuples` (an explicit list of tuples) and
`evaluate_grid` (every tuple of index_sets[0] × … × index_sets[n-1], generated chunk by chunk)
apply it to a similarity. `require_fits` turns an impossible request into an error that names
the memory it would need.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

DEFAULT_CHUNK_BYTES = 64 * 2**20


class CubeMemoryError(MemoryError):
    """A cube request that cannot fit in the configured memory budget."""


def require_fits(nbytes: int, budget: int, what: str, hint: str) -> None:
    """Raise CubeMemoryError naming the memory `what` needs when it exceeds `budget`."""
    if nbytes > budget:
        raise CubeMemoryError(
            f"{what} needs about {format_bytes(nbytes)}, over the budget of {format_bytes(budget)}; {hint}")


def format_bytes(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(nbytes) < 1024 or unit == "PiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    raise AssertionError("unreachable")


ChunkFn = Callable[[Sequence[torch.Tensor], object], torch.Tensor]


class _ChunkedMap(torch.autograd.Function):
    """cat([fn(inputs, spec) for spec in specs]) without keeping any chunk's graph."""

    @staticmethod
    def forward(ctx, fn: ChunkFn, specs: Sequence[object], *inputs: torch.Tensor) -> torch.Tensor:
        ctx.fn, ctx.specs = fn, specs
        ctx.save_for_backward(*inputs)
        return torch.cat([fn(inputs, spec) for spec in specs])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inputs = ctx.saved_tensors
        needs = ctx.needs_input_grad[2:]
        grads = [torch.zeros_like(x) if need else None for x, need in zip(inputs, needs)]
        offset = 0
        for spec in ctx.specs:
            with torch.enable_grad():
                leaves = [x.detach().requires_grad_(need) for x, need in zip(inputs, needs)]
                out = ctx.fn(leaves, spec)
                wanted = [leaf for leaf in leaves if leaf.requires_grad]
                pulled = torch.autograd.grad(out, wanted, grad[offset:offset + out.shape[0]], allow_unused=True)
            offset += out.shape[0]
            pulled_iter = iter(pulled)
            for i, need in enumerate(needs):
                if need:
                    g = next(pulled_iter)
                    if g is not None:
                        grads[i] += g
        return (None, None, *grads)


def chunked_map(fn: ChunkFn, specs: Sequence[object], *inputs: torch.Tensor) -> torch.Tensor:
    """Concatenate fn(inputs, spec) over specs along dim 0, recomputing chunks in backward.

    With a single chunk, or when no input needs a gradient, this is plain evaluation (the
    chunk's graph is then either the whole cost anyway or not kept at all).
    """
    if not specs:
        raise ValueError("chunked_map needs at least one chunk")
    if len(specs) == 1 or not torch.is_grad_enabled() or not any(x.requires_grad for x in inputs):
        return torch.cat([fn(inputs, spec) for spec in specs])
    return _ChunkedMap.apply(fn, tuple(specs), *inputs)


def chunk_ranges(total: int, chunk: int) -> list[tuple[int, int]]:
    """[(start, stop), …] covering range(total) in pieces of at most `chunk`."""
    chunk = max(1, int(chunk))
    return [(start, min(start + chunk, total)) for start in range(0, total, chunk)]


def chunk_length(bytes_per_item: int, chunk_bytes: int) -> int:
    """How many items fit in one chunk of `chunk_bytes`."""
    return max(1, chunk_bytes // max(1, bytes_per_item))


def grid_tuples(index_sets: Sequence[torch.Tensor], start: int, stop: int) -> torch.Tensor:
    """Tuples number start..stop-1 (row-major) of index_sets[0] × … × index_sets[n-1]: [T, n]."""
    device = index_sets[0].device
    flat = torch.arange(start, stop, device=device)
    columns = []
    for values in reversed(index_sets):
        columns.append(values[flat % len(values)])
        flat = flat // len(values)
    return torch.stack(columns[::-1], dim=1)


def evaluate_tuples(similarity, X: torch.Tensor, tuples: torch.Tensor,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """s at explicit index tuples: X [n, B, F], tuples [T, n] -> [T], chunked with recompute."""
    context = similarity.context(X)
    per_tuple = similarity.bytes_per_tuple(X.shape[0], X.shape[-1], X.element_size())
    specs = chunk_ranges(tuples.shape[0], chunk_length(per_tuple, chunk_bytes))

    def run(ctx: Sequence[torch.Tensor], span: tuple[int, int]) -> torch.Tensor:
        return similarity.cube(ctx, tuples[span[0]:span[1]])

    return chunked_map(run, specs, *context)


def evaluate_grid(similarity, X: torch.Tensor, index_sets: Sequence[torch.Tensor] | None = None,
                  chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """s on every tuple of index_sets[0] × … × index_sets[n-1] (default: the whole B^n cube).

    Returns the cube [len_0, …, len_{n-1}], differentiable with respect to X. Similarities with
    a cheaper exact route for whole grids (`similarity.grid`) take it; the rest are evaluated
    chunk by chunk from gathered vectors and recomputed in backward.
    """
    n, B = X.shape[0], X.shape[1]
    if index_sets is None:
        index_sets = [torch.arange(B, device=X.device)] * n
    if len(index_sets) != n:
        raise ValueError(f"evaluate_grid needs one index set per axis ({n}), got {len(index_sets)}")
    shape = tuple(len(s) for s in index_sets)
    direct = getattr(similarity, "grid", None)
    if direct is not None:
        return direct(X, index_sets)
    context = similarity.context(X)
    per_tuple = similarity.bytes_per_tuple(n, X.shape[-1], X.element_size())
    specs = chunk_ranges(math.prod(shape), chunk_length(per_tuple, chunk_bytes))

    def run(ctx: Sequence[torch.Tensor], span: tuple[int, int]) -> torch.Tensor:
        return similarity.cube(ctx, grid_tuples(index_sets, *span))

    return chunked_map(run, specs, *context).view(shape)
