"""LiSAScore: BERTScore with a one-to-one (linear-sum-assignment) token matching.

Mander & Phillips, NLDB 2024; thesis §6.6.2. BERTScore matches every candidate token to its
most similar reference token and vice versa, so one reference token can "explain" many
candidate tokens (repeated words score well). LiSAScore keeps BERTScore's token embeddings,
layer, idf weights and special-token handling — the tokenisation, idf dictionary and encoder
calls are the `bert-score` library's own functions — and replaces the two max-reductions by
one one-to-one assignment.

Definitions, per candidate–reference pair with cosine similarities `s_ij` (i: candidate
token, j: reference token) and idf weights normalised to sum to 1 on each side (`a_i`, `b_j`):

- `greedy`: P = Σ_i a_i max_j s_ij (over candidate tokens), R = Σ_j b_j max_i s_ij (over
  reference tokens) — BERTScore itself; [CLS]/[SEP] weigh 0 but stay match targets, as in
  the library.
- `lsa` (exact) or an approximation (any other method of `models.assignment.solve`, e.g.
  `greedy_regret`, `stepped_argmax`, `sinkhorn`, `hybrid`): an assignment σ of candidate to
  reference tokens, each used at most once, maximising `Σ_(i,j)∈σ s_ij (a_i + b_j)` =
  P + R. P = Σ_{i assigned} a_i s_iσ(i), R = Σ_{j assigned} b_j s_σ⁻¹(j)j. A token left
  unassigned (the longer side of a rectangular pair, or whatever an approximation leaves
  out) contributes 0. [CLS]/[SEP] (weight 0) and padding are excluded from the assignment,
  so they cannot serve as spare slots for repeated tokens.

Because each assigned similarity is at most its row/column maximum, LiSAScore P ≤ BERTScore P
and R ≤ BERTScore R; when BERTScore's argmaxes already form one consistent one-to-one
matching of content tokens, the two are equal. F = 2PR/(P+R) (0 when P+R = 0).

Several references: every candidate–reference pair is scored and the reference with the
highest F is kept; P and R are reported from that same reference (the library's BERTScore
maximises P, R and F independently, so its P and R may come from different references; F
agrees). Corpus values are means over all hypotheses. Exact assignments for a whole chunk of
pairs are solved in one batched `solve` call.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.nn.utils.rnn import pad_sequence

from eval.bertscore import default_device, idf_dict, load_encoder, model_name, resolve_model
from eval.references import References, reference_lists


def matchings() -> tuple[str, ...]:
    """"greedy" (BERTScore), "lsa" (exact) and every approximate method of `models.assignment`."""
    from models.assignment import METHODS

    return ("greedy", "lsa", *(m for m in METHODS if m != "exact"))


class Tokens(NamedTuple):
    """One encoded sentence: what greedy mode needs (raw embeddings and idf of all tokens, as
    the library pads them) and what assignments need (unit vectors and per-sentence
    normalised weights of content tokens: no [CLS]/[SEP])."""

    emb: torch.Tensor  # [L, d]
    idf: torch.Tensor  # [L]
    unit: torch.Tensor  # [Lc, d]
    weight: torch.Tensor  # [Lc], sums to 1 (or all 0 when nothing carries weight)


@dataclass
class PairBatch:
    """A chunk of candidate–reference pairs in two forms.

    `library_args` is what `bert_score.utils.greedy_cos_idf` takes (raw embeddings padded
    with 2.0, padding masks and idf weights for references then candidates), so greedy mode
    is the library's own computation (None when not built). `content_*` hold cosine
    similarities and normalised idf weights of content tokens only (no [CLS]/[SEP], no
    padding), left-aligned so that lengths describe them."""

    library_args: tuple[torch.Tensor, ...] | None
    content_sim: torch.Tensor  # [B, h, w]
    content_hyp_w: torch.Tensor  # [B, h]
    content_ref_w: torch.Tensor  # [B, w]
    content_hyp_len: torch.Tensor  # [B] long
    content_ref_len: torch.Tensor  # [B] long

    def reward(self) -> torch.Tensor:
        """The assignment objective per token pair: s_ij (a_i + b_j); its optimum is max P + R."""
        return self.content_sim * (self.content_hyp_w[:, :, None] + self.content_ref_w[:, None, :])


def f_score(P: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Harmonic mean, 0 where P + R = 0 (no NaN by construction)."""
    denom = P + R
    return torch.where(denom != 0, 2 * P * R / torch.where(denom != 0, denom, 1), 0)


def greedy_match(batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """BERTScore's P and R, computed by the library's `greedy_cos_idf` (on copies: it
    normalises its inputs in place)."""
    from bert_score.utils import greedy_cos_idf

    if batch.library_args is None:
        raise ValueError("this PairBatch was built without greedy-mode tensors (library=False)")
    P, R, _ = greedy_cos_idf(*(t.clone() for t in batch.library_args))
    # idf weights summing to 0 (blank sentence, or idf from a single reference) make the
    # library divide 0 by 0; such a side has nothing to score: 0, like LiSAScore's value
    has_hyp = batch.library_args[5].sum(1) > 0
    has_ref = batch.library_args[2].sum(1) > 0
    return torch.where(has_hyp, P, 0), torch.where(has_ref, R, 0)


def assignment_match(batch: PairBatch, method: str, **solve_kwargs
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, R, row_to_col) under a one-to-one assignment from `models.assignment.solve`."""
    from models.assignment import solve

    sim = batch.content_sim
    if sim.shape[1] == 0 or sim.shape[2] == 0:  # every candidate or every reference is blank
        z = sim.new_zeros(sim.shape[0])
        return z, z, torch.full(sim.shape[:2], -1, dtype=torch.long, device=sim.device)
    result = solve(batch.reward(), method=method, maximize=True,
                   row_lengths=batch.content_hyp_len, col_lengths=batch.content_ref_len,
                   **solve_kwargs)
    row_to_col = result.row_to_col.to(sim.device)
    assigned = row_to_col >= 0
    col = row_to_col.clamp_min(0)
    s = torch.gather(sim, 2, col[:, :, None]).squeeze(2) * assigned
    P = (s * batch.content_hyp_w).sum(1)
    R = (s * torch.gather(batch.content_ref_w, 1, col)).sum(1)
    return P, R, row_to_col


class LiSAScorer:
    """Holds the encoder; scores many corpora with one model load (like `bert_score.BERTScorer`)."""

    def __init__(self, model_type: str | None = None, num_layers: int | None = None, *,
                 idf: bool = False, batch_size: int = 64, device: str | None = None):
        self.model_type, self.num_layers = resolve_model(model_type, num_layers)
        self.device = default_device(device)
        self.idf, self.batch_size = idf, batch_size
        self.tokenizer, self.model = load_encoder(self.model_type, self.num_layers, self.device)
        self.special_ids = torch.tensor([self.tokenizer.cls_token_id, self.tokenizer.sep_token_id])

    # -- embeddings -------------------------------------------------------------------------
    def _token_ids(self, sentence: str) -> list[int]:
        from bert_score.utils import sent_encode

        if not sentence.strip():  # the library's intent ([CLS] [SEP]); its call fails in transformers 5
            return self.tokenizer.encode("", add_special_tokens=True)
        return sent_encode(self.tokenizer, sentence)

    @torch.no_grad()
    def embed(self, sentences: Sequence[str], weights: dict) -> dict[str, Tokens]:
        """sentence → `Tokens` for each distinct sentence, encoded longest-first in batches as
        `bert_score.score` does, through the library's `padding` and `bert_encode`. Everything
        that depends on one sentence only (unit vectors, normalised weights) is done here,
        once per sentence, not once per pair."""
        from bert_score.utils import bert_encode, padding

        unique = sorted(set(sentences), key=lambda s: len(s.split(" ")), reverse=True)
        out = {}
        for start in range(0, len(unique), self.batch_size):
            chunk = unique[start:start + self.batch_size]
            ids = [self._token_ids(s) for s in chunk]
            padded, lens, mask = padding(ids, self.tokenizer.pad_token_id, dtype=torch.long)
            idf, _, _ = padding([[weights[i] for i in a] for a in ids], 0, dtype=torch.float)
            idf = idf.to(self.device)
            emb = bert_encode(self.model, padded.to(self.device), mask.to(self.device))
            content = (~torch.isin(padded, self.special_ids) & mask.bool()).to(self.device)
            # content tokens moved to the front of each row by one gather per batch (stable
            # sort keeps their order), so that per-sentence work below is only slicing
            front = torch.sort((~content).to(torch.uint8), dim=1, stable=True).indices
            unit = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            unit = unit.gather(1, front[:, :, None].expand_as(unit))
            w = (idf * content).gather(1, front)
            total = w.sum(1, keepdim=True)
            w = w / torch.where(total > 0, total, 1)
            for k, (s, n, c) in enumerate(zip(chunk, lens.tolist(), content.sum(1).tolist())):
                out[s] = Tokens(emb[k, :n], idf[k, :n], unit[k, :c], w[k, :c])
        return out

    def pair_batches(self, cands: Sequence[str], refs: Sequence[str], *, library: bool = True
                     ) -> Iterator[tuple[slice, PairBatch]]:
        """(pair slice, PairBatch) for consecutive chunks of `batch_size` (cands[k], refs[k])
        pairs — the library's chunking, so greedy mode pads exactly as it does. Each distinct
        sentence is encoded once. `library=False` skips the greedy-mode tensors."""
        if len(cands) != len(refs):
            raise ValueError(f"{len(cands)} candidates vs {len(refs)} references")
        table = self.embed(list(cands) + list(refs), idf_dict(self.tokenizer, refs, self.idf))
        for start in range(0, len(cands), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            yield chunk, _pair_batch([table[c] for c in cands[chunk]], [table[r] for r in refs[chunk]],
                                     library)

    # -- scores -----------------------------------------------------------------------------
    def pair_scores(self, cands: Sequence[str], refs: Sequence[str],
                    requested: Sequence[str] = ("lsa",), **solve_kwargs) -> dict[str, dict]:
        """Per-pair {"P","R","F"} tensors [len(cands)] for each matching, from one encoding pass."""
        known = matchings()
        for m in requested:
            if m not in known:
                raise ValueError(f"unknown matching {m!r}; expected one of {known}")
        out = {m: torch.zeros(3, len(cands)) for m in requested}
        for chunk, batch in self.pair_batches(cands, refs, library="greedy" in requested):
            for m in requested:
                if m == "greedy":
                    P, R = greedy_match(batch)
                else:
                    P, R, _ = assignment_match(batch, "exact" if m == "lsa" else m, **solve_kwargs)
                out[m][:, chunk] = torch.stack([P, R, f_score(P, R)]).float().cpu()
        return {m: dict(zip("PRF", v)) for m, v in out.items()}

    def score(self, hyps: Sequence[str], refs: References,
              requested: Sequence[str] = ("lsa",), **solve_kwargs) -> dict[str, dict]:
        """Per-hypothesis and corpus scores for each matching (see the module docstring)."""
        ref_lists = reference_lists(hyps, refs, drop_empty=True)
        owner = torch.tensor([i for i, g in enumerate(ref_lists) for _ in g])
        flat_refs = [r for g in ref_lists for r in g]
        pairs = self.pair_scores([hyps[i] for i in owner], flat_refs, requested, **solve_kwargs)
        first = torch.tensor([0] + [len(g) for g in ref_lists]).cumsum(0)[:-1]
        results = {}
        for m, prf in pairs.items():
            # best reference per hypothesis by F (ties: the first one)
            best_f = torch.full((len(hyps),), -float("inf")).scatter_reduce(0, owner, prf["F"], "amax")
            is_best = prf["F"] == best_f[owner]
            pos = torch.arange(len(owner))
            best = torch.full((len(hyps),), len(owner)).scatter_reduce(
                0, owner, torch.where(is_best, pos, len(owner)), "amin")
            per = {k: prf[k][best].tolist() for k in "PRF"}
            results[m] = {**per, "best_ref": (best - first).tolist(),
                          "corpus": {k: sum(v) / len(v) for k, v in per.items()},
                          "signature": self.signature(m)}
        return results

    def signature(self, matching: str) -> str:
        import bert_score
        import transformers

        return (f"lisascore|model:{model_name(self.model_type)}|layer:{self.num_layers}|"
                f"idf:{'yes' if self.idf else 'no'}|matching:{matching}|"
                f"bert_score:{bert_score.__version__}|transformers:{transformers.__version__}")


def _pair_batch(hyp: list[Tokens], ref: list[Tokens], library: bool) -> PairBatch:
    """Pad one chunk of candidate and reference `Tokens` into a PairBatch."""

    def library_side(items):  # as bert_score.utils.bert_cos_score_idf's pad_batch_stats
        lens = torch.tensor([len(t.emb) for t in items], device=items[0].emb.device)
        mask = torch.arange(int(lens.max()), device=lens.device)[None, :] < lens[:, None]
        return (pad_sequence([t.emb for t in items], batch_first=True, padding_value=2.0), mask,
                pad_sequence([t.idf for t in items], batch_first=True))

    def content_side(items):
        return (pad_sequence([t.unit for t in items], batch_first=True),
                pad_sequence([t.weight for t in items], batch_first=True),
                torch.tensor([len(t.unit) for t in items], device=items[0].unit.device))

    (he, hw, hl), (re, rw, rl) = content_side(hyp), content_side(ref)
    return PairBatch((*library_side(ref), *library_side(hyp)) if library else None,
                     torch.bmm(he, re.transpose(1, 2)), hw, rw, hl, rl)


def lisascore(hyps: Sequence[str], refs: References, *, matching: str = "lsa",
              model_type: str | None = None, num_layers: int | None = None, idf: bool = False,
              batch_size: int = 64, device: str | None = None, **solve_kwargs) -> dict:
    """LiSAScore of `hyps` against `refs`: {"P","R","F": per hypothesis, "best_ref",
    "corpus": {"P","R","F"}, "signature"}. `matching="greedy"` is BERTScore."""
    scorer = LiSAScorer(model_type, num_layers, idf=idf, batch_size=batch_size, device=device)
    return scorer.score(hyps, refs, (matching,), **solve_kwargs)[matching]
