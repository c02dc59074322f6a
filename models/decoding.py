"""Decode a Marian student into CLIP input embeddings, in one of three modes (docs/design.md §4.2).

- `teacher-forced`: the decoder reads the target shifted right (`labels`, the student's ids of an
  English caption: for a scratch student `clip_ids[:, 1:]`, open_clip's tokens without SOT); one
  pass; logits are usable for token cross-entropy.
- `free-running`: autoregressive with a KV cache. The splice's token choice (straight-through
  Gumbel for `gumbel` and `linear`, soft for `soft`, argmax for `argmax`) is fed back as the next
  decoder *input embedding*, so gradients flow through earlier choices. A sequence stops at its end
  token; the last position is forced to the end token (like `forced_eos_token_id`, and like
  open_clip's truncation); decoding stops when every sequence has ended.
- `parallel-bos`: thesis reproduction — all positions decoded in one pass from a constant start
  token; nothing is masked after the first end token.

Sequence layout (CLIP-ready): position 0 holds CLIP's SOT embedding (whatever the decoder's start
token is), positions 1.. hold the spliced decoder outputs; after the end token (teacher-forced,
free-running) embeddings are CLIP's pad embedding, tokens the student's pad id and EOT
probabilities 0, which is exactly what open_clip's tokenizer would produce for the hard tokens.
Token suppression from the student's generation config (`suppress_tokens`, single-token
`bad_words_ids`) applies to every choice, as it does in `generate`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from transformers import MarianMTModel
from transformers.models.marian.modeling_marian import shift_tokens_right

from models.eot import first_true
from models.splice import CHUNK_ELEMENTS, Splice, SpliceOutput, lm_head_of
from models.text_tower import DistributionTextTower

DECODING_MODES = ("teacher-forced", "free-running", "parallel-bos")
IGNORE_INDEX = -100


@dataclass
class Decoded:
    """Everything the CLIP tower, the losses and a reader need from one decoding call."""

    embeddings: Tensor  # [B,S,W] CLIP input embeddings, CLIP SOT at position 0
    tokens: Tensor  # [B,S] student ids (hard): the decoder start token at 0, pad after the end token
    eot_index: Tensor  # [B] position of the end token (from labels when teacher-forced)
    eot_prob: Tensor  # [B,S] the student's probability of its end token (0 at position 0)
    candidates: Tensor  # [B,S] bool: positions where an EOT finder may pool (1..eot_index, or 1..S-1)
    hidden: Tensor  # [B,S-1,d] decoder states behind positions 1..S-1
    labels: Tensor | None  # [B,S-1] teacher-forced targets, IGNORE_INDEX after the end token
    head: tuple[Tensor, Tensor | None] = field(repr=False)  # the student's LM head (weight, bias)

    def eot_evidence(self) -> dict[str, Tensor]:
        """Keyword arguments for `DistributionTextTower.encode_embeddings`, e.g.
        `tower.encode_embeddings(d.embeddings, eot="prob", **d.eot_evidence())`."""
        return dict(eot_index=self.eot_index, eot_prob=self.eot_prob, candidates=self.candidates)

    def token_cross_entropy(self, labels: Tensor | None = None, *, row_weights: Tensor | None = None,
                            counted: Tensor | None = None, chunk_size: int | None = None) -> Tensor:
        """Token cross-entropy against `labels [B,S-1]` (default: the teacher-forced targets),
        ignoring IGNORE_INDEX: the mean over target tokens; with `row_weights [B]` the weighted sum
        of the rows' token losses over the number of target tokens of the `counted [B]` rows (default:
        all). Computed chunk by chunk over positions with recomputation, so no `B×S×V` logits or
        logit gradients are ever held."""
        labels = self.labels if labels is None else labels
        if labels is None or labels.shape != self.hidden.shape[:2]:
            raise ValueError(f"token cross-entropy needs labels of shape {tuple(self.hidden.shape[:2])}")
        weight, bias = self.head
        if row_weights is None:
            row_weights = self.hidden.new_ones(labels.shape[0], dtype=torch.float32)
        chunk = chunk_size or max(1, CHUNK_ELEMENTS // (labels.shape[0] * weight.shape[0]))
        total = self.hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, labels.shape[1], chunk):
            total = total + checkpoint(_weighted_nll, self.hidden[:, start:start + chunk], weight, bias,
                                       labels[:, start:start + chunk], row_weights.float(), use_reentrant=False)
        tokens = labels != IGNORE_INDEX
        return total / (tokens if counted is None else tokens & counted[:, None]).sum().clamp_min(1)


def _weighted_nll(hidden: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor, row_weights: Tensor) -> Tensor:
    logits = F.linear(hidden, weight, bias).float()
    nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")  # [B, c]
    return (nll.sum(1) * row_weights).sum()


def splice_decode(
    student: MarianMTModel,
    splice: Splice,
    tower: DistributionTextTower,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    mode: str,
    embedding: Tensor,
    labels: Tensor | None = None,
    max_length: int | None = None,
) -> Decoded:
    """Run `student` on source ids `[B,T]` and splice its output into CLIP input embeddings.

    `embedding [V, W]`: the CLIP input embedding of each decoder id (`TargetVocab.weight`: CLIP's
    token embedding for a CLIP-BPE decoder, a pretrained student's bridge);
    `labels [B,S-1]`: teacher-forced targets (IGNORE_INDEX or pad after the end token allowed);
    `max_length`: CLIP positions incl. SOT for free-running / parallel-bos (default: CLIP's context)."""
    if mode not in DECODING_MODES:
        raise ValueError(f"unknown decoding mode {mode!r}; choose one of {DECODING_MODES}")
    lm_weight, lm_bias = lm_head_of(student)
    if embedding.shape != (lm_weight.shape[0], tower.width):
        raise ValueError(
            f"the student's decoder has {lm_weight.shape[0]} tokens and CLIP width is {tower.width}, but the token → "
            f"CLIP matrix is {tuple(embedding.shape)}: pass the student's own target vocabulary's weight"
        )
    start, eos, pad = _special_ids(student)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    encoder = student.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    decoder = student.get_decoder()
    suppress = _suppressed_tokens(student, lm_weight.shape[0], lm_weight.device)

    def run(hidden: Tensor, suppressed: Tensor | None, feedback: Tensor | None = None) -> SpliceOutput:
        return splice(hidden, lm_weight, lm_bias, embedding, eot_id=eos, suppress=suppressed, feedback=feedback)

    def decoder_pass(decoder_ids: Tensor) -> Tensor:
        return decoder(input_ids=decoder_ids, encoder_hidden_states=encoder,
                       encoder_attention_mask=attention_mask).last_hidden_state

    batch = input_ids.shape[0]
    if mode == "teacher-forced":
        if labels is None or labels.dim() != 2 or labels.shape[0] != batch:
            raise ValueError(f"teacher-forced decoding needs labels [B={batch}, S-1]")
        _check_length(labels.shape[1] + 1, tower)
        targets = labels.masked_fill(labels == IGNORE_INDEX, pad)
        ends = first_true(targets == eos)
        valid = torch.arange(targets.shape[1], device=targets.device) <= ends[:, None]
        hidden = decoder_pass(shift_tokens_right(targets, pad, start))
        out = run(hidden, suppress)
        return _assemble(out, hidden, valid, ends + 1, targets.masked_fill(~valid, IGNORE_INDEX),
                         tower, start, pad, (lm_weight, lm_bias))

    length = max_length or tower.context_length
    _check_length(length, tower)
    if mode == "parallel-bos":
        hidden = decoder_pass(torch.full((batch, length - 1), start, device=input_ids.device))
        out = run(hidden, suppress)
        valid = torch.ones_like(out.tokens, dtype=torch.bool)
        return _assemble(out, hidden, valid, first_true(out.tokens == eos) + 1, None,
                         tower, start, pad, (lm_weight, lm_bias))

    # free-running
    feedback_matrix = decoder.embed_tokens.weight
    only_eos = torch.ones(lm_weight.shape[0], dtype=torch.bool, device=lm_weight.device)
    only_eos[eos] = False
    inputs = decoder.embed_tokens(torch.full((batch, 1), start, device=input_ids.device))
    cache, finished, steps, states = None, torch.zeros(batch, dtype=torch.bool, device=input_ids.device), [], []
    for position in range(1, length):
        state = decoder(inputs_embeds=inputs, encoder_hidden_states=encoder, encoder_attention_mask=attention_mask,
                        cache=cache, use_cache=True)
        cache, hidden = state.cache, state.last_hidden_state
        out = run(hidden, only_eos if position == length - 1 else suppress, feedback_matrix)
        steps.append((out, ~finished))
        states.append(hidden)
        finished = finished | (out.tokens[:, 0] == eos)
        if finished.all():
            break
        inputs = out.feedback
    outs = SpliceOutput(*(torch.cat([getattr(o, f) for o, _ in steps], 1) for f in ("embeddings", "tokens", "eot_prob")),
                        feedback=None)
    valid = torch.stack([v for _, v in steps], 1)
    ends = first_true((outs.tokens == eos) & valid)
    return _assemble(outs, torch.cat(states, 1), valid, ends + 1, None, tower, start, pad, (lm_weight, lm_bias))


def _assemble(out: SpliceOutput, hidden: Tensor, valid: Tensor, eot_index: Tensor, labels: Tensor | None,
              tower: DistributionTextTower, start: int, pad: int, head: tuple) -> Decoded:
    """Prepend CLIP's SOT, and replace everything after the end token by padding."""
    batch = valid.shape[0]
    special = tower.token_embedding(torch.tensor([tower.sot_id, tower.pad_id], device=valid.device))
    embeddings = torch.where(valid.unsqueeze(-1), out.embeddings, special[1].to(out.embeddings.dtype))
    first = torch.ones(batch, 1, dtype=torch.bool, device=valid.device)
    return Decoded(
        embeddings=torch.cat([special[0].to(embeddings.dtype).expand(batch, 1, -1), embeddings], 1),
        tokens=torch.cat([torch.full_like(first, start, dtype=torch.long), out.tokens.masked_fill(~valid, pad)], 1),
        eot_index=eot_index,
        eot_prob=torch.cat([torch.zeros_like(first, dtype=out.eot_prob.dtype), out.eot_prob * valid], 1),
        candidates=torch.cat([~first, valid], 1),
        hidden=hidden,
        labels=labels,
        head=head,
    )


def _special_ids(student: MarianMTModel) -> tuple[int, int, int]:
    """(decoder start, end, pad) ids of the student."""
    config, generation = student.config, student.generation_config
    start = generation.decoder_start_token_id if generation.decoder_start_token_id is not None \
        else config.decoder_start_token_id
    eos = generation.eos_token_id if generation.eos_token_id is not None else config.eos_token_id
    if isinstance(eos, Sequence):
        if len(eos) != 1:
            raise ValueError(f"decoding needs a single end token id, the student has {eos}")
        eos = eos[0]
    pad = config.pad_token_id
    if None in (start, eos, pad):
        raise ValueError(f"student needs decoder_start_token_id, eos_token_id and pad_token_id, got {(start, eos, pad)}")
    return start, eos, pad


def _suppressed_tokens(student: MarianMTModel, vocab: int, device: torch.device) -> Tensor | None:
    """Bool mask [V] of ids `generate` would never emit: `suppress_tokens` and single-token `bad_words_ids`."""
    generation = student.generation_config
    ids = list(generation.suppress_tokens or [])
    ids += [words[0] for words in (generation.bad_words_ids or []) if len(words) == 1]
    if not ids:
        return None
    mask = torch.zeros(vocab, dtype=torch.bool, device=device)
    mask[torch.tensor(ids, device=device)] = True
    return mask


def _check_length(length: int, tower: DistributionTextTower) -> None:
    if not 2 <= length <= tower.context_length:
        raise ValueError(f"CLIP sequence length must be in [2, {tower.context_length}] (SOT + tokens), got {length}")
