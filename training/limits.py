"""Limits before allocation for train.py: the options whose memory grows with their value are
estimated against the memory of the device the run trains on, and a run that could not fit is
refused with the estimate (one line, exit code 2) — before the data is built, with the sizes the
data decides taken at their least, and again once the data has decided them (the target
vocabulary, the translation length, the test sentences), before any model is built.

What is estimated, per process (docs/reliability.md has the measurements):
- one stage-1 step: the translations decoded through the splice (`--batch-size` × `--m-source`
  rows over the target vocabulary, SPLICE_BYTES per row and vocabulary entry) and the token
  cross-entropy's logits (a human and a pseudo batch of `--ce-batch-size` targets × the
  translation length × the target vocabulary, CE_BYTES per entry);
- a self-training round: NBEST_BATCH captions × `--self-train-nbest` beams, each a beam-search
  hypothesis as `translate` estimates one (`translate.translator.hypothesis_bytes`);
- the anchor bank (`--anchor-bank` × CLIP's embedding width: weight, gradient, two AdamW moments);
- a dense label scheme's logit cube (`--labels` other than diagonal: the n-dim loss' own budget);
- the final evaluation's bootstrap (`--eval-bootstrap` × the test sentences, `eval.stats.bootstrap_bytes`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import open_clip
import torch

from data_prep.errors import InputError
from data_prep.memory import available_memory, require_memory
from eval.stats import bootstrap_bytes
from models.cube import CubeMemoryError
from models.ndim_loss import NDimContrastiveLoss
from models.student import CLIP_VOCAB_SIZE
from models.tiny_configs import MARIAN_PRESETS
from training.options import TrainConfig
from training.self_training import NBEST_BATCH
from translate.translator import SOURCE_LENGTH, hypothesis_bytes

SPLICE_BYTES = 512  # per grounded row and target-vocabulary entry of a step (345 measured on a CPU: RSS growth)
CE_BYTES = 24  # per target position and vocabulary entry: logits, log-softmax and their gradients (16), x 1.5
ANCHOR_BYTES = 16  # per anchor coordinate: weight, gradient and AdamW's two moments, fp32
SHORTLIST_LEAST = 3  # a shortlist always holds pad, SOT and EOT
LENGTH_LEAST = 3  # SOT, one token, EOT


@dataclass(frozen=True)
class Sizes:
    """What the memory of a run depends on besides its options: the student's target vocabulary,
    the CLIP positions a translation uses, the longest training source (characters + 2) and the
    number of test sentences."""
    vocab: int
    length: int
    source_length: int
    test_sentences: int


@dataclass(frozen=True)
class Student:
    """The student sizes a beam search depends on."""
    vocab: int | None  # None: a corpus shortlist, known once the data is
    layers: int
    width: int


def student_shape(cfg: TrainConfig) -> Student:
    """The decoder's vocabulary (None for a shortlist), layers and width, before any model is built."""
    s = cfg.student
    if s.student == "scratch":
        preset = MARIAN_PRESETS[s.student_preset]
        return Student(CLIP_VOCAB_SIZE if s.target_vocab == "full" else None, preset["decoder_layers"],
                       preset["d_model"])
    from transformers import MarianConfig

    config = MarianConfig.from_pretrained(s.student)
    return Student(config.decoder_vocab_size or config.vocab_size, config.decoder_layers, config.d_model)


def least_sizes(cfg: TrainConfig) -> Sizes:
    """The sizes before the data is read: what the options fix, the least possible value of the rest."""
    vocab = student_shape(cfg).vocab or SHORTLIST_LEAST
    return Sizes(vocab, cfg.student.max_target_length or LENGTH_LEAST, 2, 1)


def data_sizes(cfg: TrainConfig, shortlist: int | None, longest_source: int, test_sentences: int) -> Sizes:
    """The sizes once the data has decided them (`cfg` resolved; `shortlist`: the corpus shortlist's size)."""
    return Sizes(shortlist or student_shape(cfg).vocab or CLIP_VOCAB_SIZE, cfg.student.max_target_length,
                 min(SOURCE_LENGTH, longest_source + 2), test_sentences)


def step_estimate(cfg: TrainConfig, sizes: Sizes, world: int) -> tuple[int, str]:
    """(bytes, what) of one stage-1 step on one of `world` processes: the splice's and the token
    cross-entropy's tensors over the target vocabulary."""
    o, opt, vocab = cfg.objective, cfg.optim, sizes.vocab
    step, parts = 0, []
    if o.contrastive_weight > 0:
        step += SPLICE_BYTES * math.ceil(opt.batch_size / world) * o.m_source * vocab
        parts.append(f"--batch-size {opt.batch_size} x --m-source {o.m_source} translations through the splice")
    if o.token_ce_weight > 0:
        step += CE_BYTES * 2 * math.ceil(opt.ce_batch_size / world) * sizes.length * vocab
        parts.append(f"--ce-batch-size {opt.ce_batch_size} targets x {sizes.length} positions of token "
                     "cross-entropy")
    return step, f"one training step ({' and '.join(parts)}, over {vocab} target ids)"


def device_memory(device: torch.device) -> tuple[int, str]:
    """(bytes free, where) on the device a process trains on."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0], f"on {device}"
    return available_memory(), "on this machine"


def check_memory(cfg: TrainConfig, sizes: Sizes, world: int, device: torch.device) -> None:
    """Refuse (`InputError` with the estimate) a run one of whose stages would not fit on `device`."""
    available, where = device_memory(device)
    o, opt, p, e, vocab, length = cfg.objective, cfg.optim, cfg.pseudo, cfg.eval, sizes.vocab, sizes.length
    require_memory(*step_estimate(cfg, sizes, world),
                   "use a smaller --batch-size, --m-source or --ce-batch-size (or --target-vocab corpus)",
                   available, where)
    if p.self_train_rounds:
        beams = p.self_train_nbest if p.self_train_judge == "clip" else 1
        student = student_shape(cfg)
        require_memory(NBEST_BATCH * beams * hypothesis_bytes(vocab, student.layers, student.width, length,
                                                              sizes.source_length),
                       f"self-training's beam search (--self-train-nbest {beams} beams x {NBEST_BATCH} captions)",
                       "use a smaller --self-train-nbest", available, where)
    if o.anchor_bank:
        width = open_clip.get_model_config(cfg.teacher.clip)["embed_dim"]
        require_memory(ANCHOR_BYTES * o.anchor_bank * width, f"--anchor-bank {o.anchor_bank} (x {width} dimensions)",
                       "use fewer anchors", available, where)
    if o.contrastive_weight > 0 and o.labels != "diagonal":
        batch = opt.batch_size
        try:
            NDimContrastiveLoss(o.similarity, o.labels, n_axes=o.layout.n).check_budget(
                (math.ceil(batch / world), *[batch] * (o.layout.n - 1)))
        except CubeMemoryError as exc:
            raise InputError(f"--labels {o.labels} with --batch-size {batch} and {o.layout.n} axes: {exc}") from None
    if e.evaluate and e.eval_bootstrap:
        require_memory(bootstrap_bytes(e.eval_bootstrap, sizes.test_sentences),
                       f"--eval-bootstrap {e.eval_bootstrap} on {sizes.test_sentences} test sentence(s)",
                       "use fewer resamples (1000, the default, is sacreBLEU's)")
