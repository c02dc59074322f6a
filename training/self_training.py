"""Grounded self-training: the image as a judge of the student's own translations.

Before the steps `self_train_steps(cfg)` the student translates every training caption without a
human translation into its n-best candidates; with the `clip` judge they are reranked by CLIP with
the caption's image (and, with a lexicon induced from images, by the source's agreement with each
candidate), and the winner is kept as a pseudo-parallel target when it ranks its own image first
among `--self-train-group` images (`confidence` and `all` are the no-image controls). A round's
targets are written to `RUN/targets/round_NN.jsonl` and read back by a resumed run.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from data_prep.pivot import Lexicon, agreement, english_words, induce_lexicon
from data_prep.targets import Target, TargetTable
from models.feature_cache import FeatureTable
from models.grounded import GroundedSystem
from models.grounded_selection import select
from models.run_dir import RunDir
from training.data import TrainingData, rare_word_lexicon
from training.options import TrainConfig

NBEST_BATCH = 64  # captions translated at once into their n-best lists (training.limits bounds the memory)


SPECIFIC_SHARE = 0.2  # a word in at most this share of the training pictures names something specific


def self_train_steps(cfg: TrainConfig) -> list[int]:
    """The steps before which the rounds run: the first at `--self-train-start` × `--steps`, the
    others spread evenly over the rest."""
    rounds, steps = cfg.pseudo.self_train_rounds, cfg.optim.steps
    if not rounds:
        return []
    first = round(steps * cfg.pseudo.self_train_start)
    span = steps - first
    return sorted({first + (span * r) // rounds for r in range(rounds)})


@torch.no_grad()
def grounded_pseudo_targets(system: GroundedSystem, data: TrainingData, initial: TargetTable, images: FeatureTable,
                            cfg: TrainConfig, seed: int, show: bool, lexicon: Lexicon | None = None,
                            rare: Lexicon | None = None) -> tuple[dict, dict]:
    """One round: the pseudo targets it keeps, by caption key, and its statistics (`lexicon`: the
    agreement bonus of the rerank; `rare`: the rare-word lexicon `--self-train-replace agreeing` reads)."""
    p = cfg.pseudo
    keys, sources, human = [], [], initial.human_keys()
    rows = data.train_rows
    for row, item in zip(rows, data.train.select(rows).select_columns(["source"])):
        for j, source in enumerate(item["source"]):
            if source.strip() and (row, j) not in human:
                keys.append((row, j))
                sources.append(source)
    if not keys:
        return {}, {"candidates": 0, "kept": 0, "reranked": 0}
    system.eval()
    size = p.self_train_nbest if p.self_train_judge == "clip" else 1
    texts, logprobs = system.nbest(sources, size=size, batch_size=NBEST_BATCH)
    stats = {"candidates": len(keys), "reranked": 0}
    if p.self_train_judge == "clip":
        device = images.features.device
        flat = [t for cands in texts for t in cands]
        features = FeatureTable.of_texts(system.encode_english, system.clip_tokenizer, flat, device=device,
                                         show_progress=show)[flat].view(len(keys), size, -1)
        own = torch.tensor([images.index[row] for row, _ in keys], device=device)
        bonus = None
        if lexicon is not None:
            pieces = [system.source_tokenizer.tokenize(src) for src in sources]
            bonus = p.self_train_lexicon * torch.tensor(
                [[agreement(lexicon, piece, english_words(c)) for c in cands] for piece, cands in zip(pieces, texts)])
        sel = select(logprobs.to(device), features, own, images.features, beta=p.rerank_beta,
                     scale=float(system.clip.logit_scale.exp()), group=min(p.self_train_group, len(images.features)),
                     seed=seed, bonus=bonus)
        choice, kept = sel.choice.tolist(), sel.kept().tolist()
        stats.update(reranked=int((sel.choice != 0).sum()), mean_image_prob=float(sel.image_prob.mean()))
    else:
        choice = [0] * len(keys)
        best = logprobs[:, 0]
        kept = (best >= best.median()).tolist() if p.self_train_judge == "confidence" else [True] * len(keys)
    pseudo = {key: Target(cands[c], p.pseudo_weight, "self")
              for key, cands, c, keep in zip(keys, texts, choice, kept) if keep and cands[c].strip()}
    if p.self_train_replace == "agreeing":
        pseudo, stats["agreed"] = agreeing(pseudo, initial, {key: cands[c] for key, cands, c in zip(keys, texts, choice)},
                                           rare, p.pseudo_weight)
    stats["kept"] = len(pseudo)
    return pseudo, stats


def agreeing(kept: dict, initial: TargetTable, best: dict, rare: Lexicon, weight: float) -> tuple[dict, int]:
    """`--self-train-replace agreeing`: a caption with a pivot target keeps it unless the round's
    best translation (`best`, by key) names every word the pivot target teaches that few pictures
    show (in at most SPECIFIC_SHARE of them, by the `rare` lexicon; words it never saw count as
    specific); captions without a pivot target keep what the judge kept. Returns the targets and
    how many translations replaced a pivot target."""
    def specific(word: str) -> bool:
        index = rare.english_vocab.get(word)
        return index is None or rare.english_df[index] <= SPECIFIC_SHARE

    out, agreed = {k: t for k, t in kept.items() if (initial.get(k) or Target("", origin="self")).origin != "pivot"}, 0
    for key, pivot in initial:
        if pivot.origin != "pivot":
            continue
        taught = pivot.taught or (True,) * len(pivot.text.split())
        need = {w for chunk, t in zip(pivot.text.split(), taught) if t for w in english_words(chunk) if specific(w)}
        text = best.get(key, "")
        if text.strip() and need <= set(english_words(text)):
            out[key] = Target(text, weight, "self")
            agreed += 1
        else:
            out[key] = pivot
    return out, agreed


class SelfTraining:
    """The rounds of a run: when they are due, and the target table each one makes (`system`: the
    unwrapped grounded system; `frozen_images`: the training images' features of a frozen image
    tower, reused by the judge)."""

    def __init__(self, cfg: TrainConfig, data: TrainingData, system: GroundedSystem, preprocess,
                 frozen_images: FeatureTable | None, accelerator, log: Callable[[str], None], show: bool) -> None:
        self.cfg, self.data, self.system, self.preprocess = cfg, data, system, preprocess
        self.accelerator, self.log, self.show = accelerator, log, show
        self.steps = self_train_steps(cfg)
        self.frozen_image = cfg.teacher.freeze in ("both", "image")
        self.images = frozen_images
        self.lexicon = self.rare = None
        if self.steps and cfg.pseudo.self_train_lexicon > 0:
            self.lexicon = induce_lexicon(data.train, data.train_rows, system.source_tokenizer.tokenize)
        if self.steps and cfg.pseudo.self_train_replace == "agreeing":
            self.rare = rare_word_lexicon(cfg, data)

    def due(self, run: RunDir, step: int, start: int) -> bool:
        """A round runs before `step` (not again when a resumed run starts there and has its targets)."""
        return step in self.steps and not (run.targets(self.steps.index(step)).is_file() and step == start)

    def round(self, run: RunDir, step: int, initial: TargetTable) -> TargetTable:
        """Make the pseudo targets of the round before `step` (RUN/targets/), and the table with them."""
        r = self.steps.index(step)
        cfg, main_proc = self.cfg, self.accelerator.is_main_process
        if cfg.pseudo.self_train_judge == "clip" and (self.images is None or not self.frozen_image):
            self.images = FeatureTable.of_images(self.system.encode_images, self.preprocess, self.data.train,
                                                 self.data.train_rows, device=self.accelerator.device,
                                                 show_progress=self.show)
        if main_proc:
            pseudo, stats = grounded_pseudo_targets(self.system, self.data, initial, self.images, cfg,
                                                    seed=cfg.run.seed * 1000 + r, show=self.show, lexicon=self.lexicon,
                                                    rare=self.rare)
            TargetTable(pseudo).save(run.targets(r))
            run.append_metrics({"step": step, "self_train/round": r + 1,
                                **{f"self_train/{k}": v for k, v in stats.items()}})
            self.log(f"self-training round {r + 1} at step {step}: kept {stats['kept']} of {stats['candidates']} "
                     f"translations (CLIP reranked {stats['reranked']}"
                     + (f"; {stats['agreed']} replaced a pivot target" if "agreed" in stats else "") + ")")
        self.accelerator.wait_for_everyone()
        return self.table(run, r, initial)

    def resumed(self, run: RunDir, step: int) -> int | None:
        """The round whose targets a run resumed at `step` was training on (None before the first)."""
        done = [r for r, at in enumerate(self.steps) if at < step or (at == step and run.targets(r).is_file())]
        return done[-1] if done else None

    @staticmethod
    def table(run: RunDir, r: int, initial: TargetTable) -> TargetTable:
        """`initial` with round `r`'s pseudo targets (read from RUN/targets/)."""
        return initial.with_pseudo(dict(TargetTable.load(run.targets(r))))
