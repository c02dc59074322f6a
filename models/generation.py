"""Translations from a student whose own LM head is trained: greedy or beam search through
`transformers`' `generate()` (never sampling), decoded to text.

`decode` turns rows of target ids into text with the special tokens left out: a
`models.target_vocab.TargetVocab`'s `decode`, or e.g.
`lambda rows: tokenizer.batch_decode(rows, skip_special_tokens=True)`. Lengths, beam settings and
token suppression come from the model's generation config unless given as `generate` keywords.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Decode = Callable[[list[list[int]]], list[str]]


def _generate(model, source_tokenizer, sources: Sequence[str], *, batch_size: int, device, **generate_kwargs):
    """`model.generate` over `sources` in batches, in eval mode (the mode is restored after)."""
    if isinstance(sources, str):
        raise TypeError("sources must be a list of sentences, not a single string")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(sources), batch_size):
            enc = source_tokenizer(list(sources[s:s + batch_size]), return_tensors="pt",
                                   padding=True, truncation=True).to(device)
            yield model.generate(**enc, do_sample=False, **generate_kwargs)
    finally:
        model.train(was_training)


@torch.no_grad()
def generate_texts(model, source_tokenizer, sources: Sequence[str], decode: Decode, *, num_beams: int = 1,
                   batch_size: int = 32, device: str | None = None, **generate_kwargs) -> list[str]:
    """`sources` as text through `model.generate` (greedy when num_beams=1, else beam search)."""
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    out: list[str] = []
    for ids in _generate(model, source_tokenizer, sources, batch_size=batch_size, device=device,
                         num_beams=num_beams, **generate_kwargs):
        out += decode(ids.tolist())
    return out


@torch.no_grad()
def nbest(model, source_tokenizer, sources: Sequence[str], decode: Decode, *, size: int,
          batch_size: int = 32, device: str | None = None, **generate_kwargs) -> tuple[list[list[str]], torch.Tensor]:
    """The `size` best beam-search translations of each source, best first, and their scores
    `[N, size]` (length-normalised log-probabilities, as `generate` ranks them)."""
    if size < 1:
        raise ValueError(f"the n-best size must be >= 1, got {size}")
    texts: list[list[str]] = []
    scores = []
    for out in _generate(model, source_tokenizer, sources, batch_size=batch_size, device=device, num_beams=size,
                         num_return_sequences=size, output_scores=True, return_dict_in_generate=True,
                         **generate_kwargs):
        flat = decode(out.sequences.tolist())
        texts += [flat[i:i + size] for i in range(0, len(flat), size)]
        if getattr(out, "sequences_scores", None) is None:  # greedy: the mean log-probability of the generated tokens
            # (by hand: compute_transition_scores assumes one vocabulary for encoder and decoder)
            generated = out.sequences[:, -len(out.scores):]
            steps = torch.stack(out.scores, 1).float().log_softmax(-1).gather(2, generated[..., None])[..., 0]
            is_end = (generated == model.generation_config.eos_token_id).long()
            counted = (torch.cumsum(is_end, 1) - is_end) == 0  # every token up to and including the end token
            # (after the end the forced pad may be a suppressed token, log-probability -inf: masked, not multiplied)
            sequence_scores = torch.where(counted, steps, 0.0).sum(1) / counted.sum(1).clamp_min(1)
        else:
            sequence_scores = out.sequences_scores.float()
        scores.append(sequence_scores.view(-1, size).cpu())
    return texts, torch.cat(scores) if scores else torch.zeros(0, size)


@torch.no_grad()
def continue_greedily(model, source_tokenizer, sources: Sequence[str], prefixes: Sequence[Sequence[int]], *,
                      batch_size: int = 32, device: str | None = None) -> list[list[int]]:
    """Per (source, prefix) pair, the prefix's target ids (after the decoder's start token) continued
    greedily by `model.generate`: the whole sequence of ids, start token first. A prefix that leaves
    no room to generate under the generation config's `max_length` is cut to fit and ended. Prefixes of one length
    are decoded together, so a batch holds no padding on the decoder side."""
    if len(sources) != len(prefixes):
        raise ValueError(f"{len(sources)} sources for {len(prefixes)} prefixes")
    config = model.generation_config
    start, end = model.config.decoder_start_token_id, config.eos_token_id
    device = device or next(model.parameters()).device
    out: list[list[int]] = [[] for _ in sources]
    by_length: dict[int, list[int]] = {}
    for i, prefix in enumerate(prefixes):
        if len(prefix) + 2 > config.max_length:  # start + prefix + end fill the whole length: nothing to generate
            out[i] = [start, *prefix[:config.max_length - 2], end]
        else:
            by_length.setdefault(len(prefix), []).append(i)
    for items in by_length.values():
        for s in range(0, len(items), batch_size):
            chunk = items[s:s + batch_size]
            decoder = torch.tensor([[start, *prefixes[i]] for i in chunk], device=device)
            (ids,) = _generate(model, source_tokenizer, [sources[i] for i in chunk], batch_size=len(chunk),
                               device=device, num_beams=1, decoder_input_ids=decoder)
            for i, row in zip(chunk, ids.tolist()):
                out[i] = row
    return out


@torch.no_grad()
def sequence_scores(model, source_tokenizer, sources: Sequence[str], labels: torch.Tensor, *,
                    batch_size: int = 32, device: str | None = None) -> torch.Tensor:
    """`[N]` length-normalised log-probabilities of target rows `labels` (`[N, L]`, ids after the
    start token through the end token, then negative ids) given `sources`, as greedy `nbest`
    scores a translation: the mean over those tokens of the log-softmax of the logits, with the
    generation config's suppressed tokens at -inf. The mode is restored after."""
    device = device or next(model.parameters()).device
    start = model.config.decoder_start_token_id
    suppressed = list(model.generation_config.suppress_tokens or [])
    was_training = model.training
    model.eval()
    scores = []
    try:
        for s in range(0, len(sources), batch_size):
            enc = source_tokenizer(list(sources[s:s + batch_size]), return_tensors="pt", padding=True,
                                   truncation=True).to(device)
            rows = labels[s:s + batch_size].to(device)
            kept = rows >= 0
            ids = rows.clamp_min(0)
            decoder = torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], 1)
            logits = model(**enc, decoder_input_ids=decoder).logits.float()
            logits[..., suppressed] = float("-inf")
            steps = logits.log_softmax(-1).gather(2, ids[..., None])[..., 0]
            scores.append((torch.where(kept, steps, 0.0).sum(1) / kept.sum(1).clamp_min(1)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(scores) if scores else torch.zeros(0)
