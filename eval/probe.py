"""Test-time linear LM head (thesis §3.2.3): how much of the reference is linearly readable
from frozen student decoder states.

One `nn.Linear(d, V)` maps decoder states [N, S, d] to target-vocabulary logits and is
trained with cross-entropy against the reference token ids [N, S] (positions with -100 or
`pad_id` ignored). The head starts at zero, so its first prediction is uniform (CE = log V).

- `online` (the thesis' protocol): the head trains during one pass over the test set, one
  optimiser step per batch. Each batch is predicted *before* the head is updated on it
  (prequential), so its loss and predictions never saw its own labels. Reported: min / mean /
  max batch loss (the thesis' curve) and the token-weighted prequential CE.
- `heldout` (the honest one): fit on validation states for `epochs`, then score test.

Predictions are the argmax token at every scored position, decoded by `decode` (rows of ids →
text without special tokens, e.g. the student's `TargetVocab.decode`), ready for
BLEU / BERTScore against the references. Logits are computed in chunks of `token_chunk`
tokens (V can be CLIP's 49,408), gradients accumulated across chunks.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.generation import Decode

PROTOCOLS = ("online", "heldout")


def _check(states: torch.Tensor, labels: torch.Tensor, vocab_size: int, name: str) -> None:
    if states.ndim != 3 or labels.shape != states.shape[:2]:
        raise ValueError(f"{name}: expected states [N, S, d] and labels [N, S], got "
                         f"{tuple(states.shape)} and {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: labels must be integer token ids, got {labels.dtype}")
    valid = labels[labels >= 0]
    if valid.numel() and int(valid.max()) >= vocab_size:
        raise ValueError(f"{name}: label id {int(valid.max())} >= vocab_size {vocab_size}")


def _valid(labels: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    keep = labels >= 0  # -100 and any other negative id are ignored
    return keep & (labels != pad_id) if pad_id is not None else keep


class _Head:
    """The linear head with its optimiser; chunked loss, step and prediction."""

    def __init__(self, dim: int, vocab_size: int, *, lr: float, weight_decay: float,
                 token_chunk: int, device: torch.device):
        self.linear = nn.Linear(dim, vocab_size, device=device)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.opt = torch.optim.AdamW(self.linear.parameters(), lr=lr, weight_decay=weight_decay)
        self.chunk = token_chunk

    def loss_and_predict(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(summed CE, argmax ids) of tokens x [T, d], y [T], without updating the head."""
        total, preds = 0.0, []
        with torch.no_grad():
            for s in range(0, len(y), self.chunk):
                logits = self.linear(x[s:s + self.chunk].float())
                total += float(F.cross_entropy(logits, y[s:s + self.chunk], reduction="sum"))
                preds.append(logits.argmax(-1))
        return total, torch.cat(preds) if preds else y.new_empty(0)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimiser step on the mean CE of tokens x [T, d], y [T]."""
        if len(y) == 0:
            return
        self.opt.zero_grad(set_to_none=True)
        for s in range(0, len(y), self.chunk):
            loss = F.cross_entropy(self.linear(x[s:s + self.chunk].float()), y[s:s + self.chunk],
                                   reduction="sum") / len(y)
            loss.backward()
        self.opt.step()


def _tokens(states, labels, rows, pad_id, device):
    """Scored tokens of sequences `rows`: x [T, d], y [T], and the [len(rows), S] mask."""
    s, l = states[rows].to(device), labels[rows].to(device).long()
    keep = _valid(l, pad_id)
    return s[keep], l[keep], keep


def probe(test_states: torch.Tensor, test_labels: torch.Tensor, *, vocab_size: int,
          protocol: str = "heldout", fit_states: torch.Tensor | None = None,
          fit_labels: torch.Tensor | None = None, epochs: int = 5, lr: float = 1e-3,
          weight_decay: float = 0.0, batch_size: int = 32, token_chunk: int = 2048,
          pad_id: int | None = None, seed: int = 0, decode: Decode | None = None,
          device: str | None = None) -> dict:
    """Fit and score a test-time linear LM head (see the module docstring).

    Returns {"protocol", "ce" (token-mean CE on test, nats; prequential for online),
    "token_accuracy", "uniform_ce" (log V), "tokens", and for `online` "batch_losses",
    "min_loss", "mean_loss", "max_loss"; for `heldout` "fit_ce"; "predictions" (decoded
    strings, one per test sequence) when `decode` is given}. `seed` fixes the heldout
    protocol's shuffling of the fit split (the head itself starts at zero)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    _check(test_states, test_labels, vocab_size, "test")
    if protocol == "heldout":
        if fit_states is None or fit_labels is None:
            raise ValueError("the heldout protocol needs fit_states and fit_labels (validation split)")
        _check(fit_states, fit_labels, vocab_size, "fit")
        if fit_states.shape[-1] != test_states.shape[-1]:
            raise ValueError(f"fit and test states differ in width: {fit_states.shape[-1]} vs "
                             f"{test_states.shape[-1]}")
    elif fit_states is not None or fit_labels is not None:
        raise ValueError("the online protocol trains on the test pass; do not pass fit data")
    device = torch.device(device or test_states.device)
    head = _Head(test_states.shape[-1], vocab_size, lr=lr, weight_decay=weight_decay,
                 token_chunk=token_chunk, device=device)
    out = {"protocol": protocol, "uniform_ce": math.log(vocab_size)}

    if protocol == "heldout":
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(len(fit_states), generator=gen)
            for s in range(0, len(order), batch_size):
                x, y, _ = _tokens(fit_states, fit_labels, order[s:s + batch_size], pad_id, device)
                head.step(x, y)
        fit_total, fit_count = 0.0, 0
        for s in range(0, len(fit_states), batch_size):
            rows = torch.arange(s, min(s + batch_size, len(fit_states)))
            x, y, _ = _tokens(fit_states, fit_labels, rows, pad_id, device)
            fit_total += head.loss_and_predict(x, y)[0]
            fit_count += len(y)
        out["fit_ce"] = fit_total / max(fit_count, 1)

    total, count, correct, batch_losses, texts = 0.0, 0, 0, [], []
    for s in range(0, len(test_states), batch_size):
        rows = torch.arange(s, min(s + batch_size, len(test_states)))
        x, y, keep = _tokens(test_states, test_labels, rows, pad_id, device)
        loss, pred = head.loss_and_predict(x, y)  # before any update on this batch
        if protocol == "online":
            head.step(x, y)
            if len(y):
                batch_losses.append(loss / len(y))
        total, count, correct = total + loss, count + len(y), correct + int((pred == y).sum())
        if decode is not None:
            per_row = keep.sum(1).tolist()
            texts += decode([p.tolist() for p in pred.split(per_row)])
    if count == 0:
        raise ValueError("no test position has a label (all -100 or pad)")
    out.update(ce=total / count, token_accuracy=correct / count, tokens=count)
    if protocol == "online":
        out.update(batch_losses=batch_losses, min_loss=min(batch_losses), max_loss=max(batch_losses),
                   mean_loss=sum(batch_losses) / len(batch_losses))
    if decode is not None:
        out["predictions"] = texts
    return out
