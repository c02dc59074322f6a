"""Stage 1's pieces from a resolved configuration: the grounded system (CLIP + student + splice),
its objective, the frozen towers' feature tables, the optimizer and its schedule."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.anchor_bank import AnchorBank
from models.experts import AlignedExpert, TextExpert
from models.feature_cache import FeatureTable
from models.grounded import GroundedSystem
from models.ndim_loss import NDimContrastiveLoss
from models.objective import ContrastiveObjective
from models.schedules import warmup_cosine
from models.splice import Splice
from models.student import build_scratch_student, load_pretrained_student
from models.target_vocab import BridgedVocab, ClipShortlist, ClipVocab
from training.data import TrainingData
from training.options import TrainConfig


def target_shortlist(cfg: TrainConfig, clip_tokenizer, data: TrainingData, targets) -> ClipShortlist | None:
    """A scratch student's decoder vocabulary with `--target-vocab corpus`: the CLIP BPE ids of the
    training English text and targets (None: all of CLIP's BPE, or a pretrained student's own)."""
    if cfg.student.student != "scratch" or cfg.student.target_vocab != "corpus":
        return None
    return ClipShortlist.from_texts(clip_tokenizer, data.english_captions() + [t.text for _, t in targets])


def build_system(cfg: TrainConfig, clip, clip_tokenizer, source_tokenizer, *, seed: int,
                 shortlist: ClipShortlist | None = None) -> GroundedSystem:
    """The grounded system with a freshly initialised (scratch) or loaded (pretrained) student;
    the same seed gives the same initial student (the untrained baseline of the evaluation).
    `shortlist`: a scratch student's decoder vocabulary (default: all of CLIP's BPE)."""
    s = cfg.student
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if s.student == "scratch":
            vocab = shortlist if shortlist is not None else ClipVocab(clip_tokenizer)
            student = build_scratch_student(len(source_tokenizer), s.student_preset,
                                            max_length=clip.positional_embedding.shape[0], dropout=s.dropout,
                                            **vocab.student_ids())
        else:
            student, source_tokenizer = load_pretrained_student(s.student)  # it reads its own source vocabulary
            vocab = BridgedVocab.from_tokenizers(source_tokenizer, clip_tokenizer, clip.token_embedding.weight,
                                                 vocab_size=student.config.decoder_vocab_size)
        splice = Splice.for_student(s.splice, student, vocab.bind(clip.token_embedding).weight, tau=s.tau_start)
    return GroundedSystem(clip, cfg.teacher.clip, clip_tokenizer, student, source_tokenizer, splice, vocab=vocab,
                          eot_finder=s.eot_finder, decoding=s.decoding,
                          max_length=s.max_target_length or None).to(next(clip.parameters()).device)


def build_objective(cfg: TrainConfig, clip) -> ContrastiveObjective:
    """The n-dim loss over the axes of `cfg` with the optional English anchor, anchor bank (in
    CLIP's embedding space) and LSA term."""
    o = cfg.objective
    bank = AnchorBank(o.anchor_bank, clip.visual.output_dim, seed=cfg.run.seed) if o.anchor_bank else None
    return ContrastiveObjective(NDimContrastiveLoss(o.similarity, o.labels, n_axes=o.layout.n),
                                english_anchor=None if o.english_anchor == "none" else o.english_anchor,
                                bank=bank, lsa=o.lsa_weight > 0)


def freeze_towers(system: GroundedSystem, freeze: str) -> None:
    """Freeze the CLIP towers named by --freeze (the text tower's gradient still reaches the student)."""
    text_names = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection", "text")
    for name, param in system.clip.named_parameters():
        is_text = name.split(".")[0] in text_names
        if freeze == "both" or (freeze == "text" and is_text) or (freeze == "image" and not is_text):
            param.requires_grad_(False)
    for name in ("logit_scale", "logit_bias"):  # unused in stage 1: the n-dim loss has its own
        if isinstance(getattr(system.clip, name, None), torch.nn.Parameter):
            getattr(system.clip, name).requires_grad_(False)


@dataclass
class FrozenFeatures:
    """Features of the frozen towers, encoded once: the training images' (by row), the English
    captions' and each `--expert`'s (by caption text); None where the tower trains or no axis
    reads them."""
    images: FeatureTable | None
    english: FeatureTable | None
    experts: list[FeatureTable]


def frozen_features(cfg: TrainConfig, system: GroundedSystem, preprocess, data: TrainingData, device,
                    log: Callable[[str], None], show: bool) -> FrozenFeatures:
    frozen_image, frozen_text = cfg.teacher.freeze in ("both", "image"), cfg.teacher.freeze in ("both", "text")
    contrastive = cfg.objective.contrastive_weight > 0
    images = english = None
    if frozen_image and contrastive:
        images = FeatureTable.of_images(system.encode_images, preprocess, data.train, data.train_rows, device=device,
                                        show_progress=show)
    if frozen_text and cfg.objective.k_english and contrastive:
        english = FeatureTable.of_texts(system.encode_english, system.clip_tokenizer, data.english_captions(),
                                        device=device, show_progress=show)
    return FrozenFeatures(images, english, [expert_features(spec, english, log) for spec in cfg.objective.expert or ()])


def expert_features(spec: str, english: FeatureTable, log: Callable[[str], None]) -> FeatureTable:
    """An `--expert` ('minilm' or a local encoder directory) mapped into the CLIP text space by
    centred Procrustes fitted on the training captions against their (unit) CLIP features, and its
    features of every training caption, keyed like `english`."""
    captions = list(english.index)
    clip_features = F.normalize(english.features, dim=-1)
    aligned = AlignedExpert.fit(TextExpert(None if spec == "minilm" else spec), captions, clip_features.cpu())
    features = aligned.encode(captions).to(english.features.device)
    residual = aligned.alignment.residual(aligned.expert.encode(captions), clip_features.cpu())
    log(f"expert {spec}: {aligned.expert.dim}-d, mapped into CLIP's {features.shape[1]}-d text space by centred "
        f"Procrustes on {len(captions)} captions (residual {residual:.3f})")
    return FeatureTable(captions, features)


def build_optimizer(cfg: TrainConfig, system: GroundedSystem, objective: ContrastiveObjective):
    """(trainable parameters, AdamW, warm-up + cosine schedule): the CLIP towers that train at
    `--tower-lr`, everything else at `--lr`."""
    trainable = [p for p in (*system.parameters(), *objective.parameters()) if p.requires_grad]
    towers = {id(p) for p in system.clip.parameters()}
    groups = [{"params": [p for p in trainable if id(p) not in towers]},
              {"params": [p for p in trainable if id(p) in towers], "lr": cfg.teacher.tower_lr}]
    o = cfg.optim
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=o.lr, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, o.steps, o.warmup_steps))
    return trainable, optimizer, scheduler
