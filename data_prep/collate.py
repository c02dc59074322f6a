"""From dataset rows to training tensors, with bad rows found up front and counted.

`scan_usable` decodes every image and checks captions once, so batches are always full (every
process of a distributed run gathers equal-sized features) and no bad row can crash a step.
`TrainCollator` picks K English and M source captions per image (deterministically per epoch)
and tokenises them: English with CLIP's BPE, source with the SentencePiece tokenizer; each source
caption's target (a human or pseudo translation, with its weight) comes from the `TargetTable`
the step passes in. Its batches are the model's input dataclasses (`models.inputs`).
"""
from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import datasets
import torch
from PIL import Image
from tqdm.auto import tqdm

from models.decoding import IGNORE_INDEX
from models.inputs import GroundingInputs, TargetInputs

from .targets import Target, TargetTable


@dataclass
class ScanResult:
    """Indices of usable rows and counts of skipped rows per reason."""

    usable: list[int]
    skipped: Counter

    def summary(self) -> str:
        if not self.skipped:
            return f"all {len(self.usable)} rows usable"
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return f"{len(self.usable)} rows usable; skipped {sum(self.skipped.values())}: {reasons}"


def scan_usable(ds: datasets.Dataset, *, need_english: int = 1, need_parallel: bool = False, need_source: bool = True,
                show_progress: bool = True) -> ScanResult:
    """Find rows with a decodable image, a non-empty source caption (unless not `need_source`: a
    teacher's pictures) and `need_english` English captions."""
    raw = ds.cast_column("image", datasets.Image(decode=False))
    usable, skipped = [], Counter()
    columns = ["image", "source", "english", "parallel"]
    for i, row in enumerate(tqdm(raw.select_columns(columns), desc="scan", disable=not show_progress, unit="row")):
        image = row["image"] or {}
        try:
            with Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]) as im:
                im.load()
        except Exception:
            skipped["unreadable image"] += 1
            continue
        if need_source and not any(s.strip() for s in row["source"]):
            skipped["no source caption"] += 1
        elif sum(bool(e.strip()) for e in row["english"]) < min(need_english, 1):
            skipped["no English caption"] += 1
        elif need_parallel and not any(p.strip() for p in row["parallel"]):
            skipped["no parallel caption"] += 1
        else:
            usable.append(i)
    return ScanResult(usable, skipped)


@dataclass
class CaptionChoice:
    """Which captions of each row a batch uses: K English, M source (by index into `source`)."""

    english: list[list[str]]   # [B][K]
    source: list[list[str]]    # [B][M]
    source_index: list[list[int]]  # [B][M] index of each chosen caption in the row's `source` list


def choose_captions(rows: Sequence[dict], k_english: int, m_source: int, seed: int) -> CaptionChoice:
    """Sample captions without replacement while possible, cycling when a row has fewer; deterministic in `seed`."""

    def pick(n_items: int, k: int, rng: random.Random) -> list[int]:
        order = list(range(n_items))
        rng.shuffle(order)
        return [order[j % n_items] for j in range(k)]

    english, source, index = [], [], []
    for row in rows:
        rng = random.Random(f"{seed}:{row['image_id']}")
        eng = [e for e in row["english"] if e.strip()]
        src = [j for j, s in enumerate(row["source"]) if s.strip()]
        english.append([eng[j] for j in pick(len(eng), k_english, rng)] if eng and k_english else [])
        chosen = [src[j] for j in pick(len(src), m_source, rng)]
        source.append([row["source"][j] for j in chosen])
        index.append(chosen)
    return CaptionChoice(english, source, index)


@dataclass(frozen=True)
class SourceBatch:
    """The grounded part of one step: the model's `inputs` and the texts they were made from —
    the chosen English captions of each image (`english_text` [B][K], what frozen features are
    looked up by), the source captions (`source_text` [B*M]) and the images' ids."""

    inputs: GroundingInputs
    english_text: list[list[str]]
    source_text: list[str]
    image_ids: list[str]


def taught_labels(labels_for: Callable[[list[str]], torch.Tensor], labels: torch.Tensor,
                  targets: Sequence[Target]) -> torch.Tensor | None:
    """The labels the token cross-entropy scores: `labels` with the tokens of the words a target
    does not teach (`Target.taught`) set to IGNORE_INDEX; None when every target teaches all its
    words. A word's tokens are found from the token counts of the target's prefixes, so the rule
    holds for any target vocabulary."""
    partial = [(i, t) for i, t in enumerate(targets) if t.taught is not None and not all(t.taught)]
    if not partial:
        return None
    prefixes = [" ".join(t.text.split()[:n]) for _, t in partial for n in range(1, len(t.taught) + 1)]
    ends = ((labels_for(prefixes) != IGNORE_INDEX).sum(1) - 1).tolist()  # tokens before the end token
    scored = labels.clone()
    at = 0
    for i, t in partial:
        start = 0
        for taught, end in zip(t.taught, ends[at:at + len(t.taught)]):
            if not taught:
                scored[i, start:end] = IGNORE_INDEX
            start = end
        at += len(t.taught)
    return scored


class TrainCollator:
    """Turn dataset rows into the tensors of one training step, in two parts.

    `sources(rows, indices, seed, targets)` — the grounded part, per image batch: `source_ids`,
    `source_mask` [B*M,Ls] (row-major: image b, caption m); `labels` [B*M,S-1] for teacher-forced
    decoding (each caption's target in `targets` when it has one, else the first chosen English
    caption of its image); with `preprocess`: `images` [B,3,H,W]; with `clip_tokenizer`:
    `english_ids` [B,K,L] (CLIP BPE). Frozen towers read cached features instead.
    `targets_batch(keys, ds, targets)` — the token cross-entropy part: captions `(row, caption)` that
    have a target in the `TargetTable` → `TargetInputs` with each row's `weight`, whether it is
    `human`, and `counted` (the rows whose target tokens normalise the loss: the human ones when
    the batch has any, so that pseudo targets add to a human batch instead of diluting it).
    """

    def __init__(self, source_tokenizer, labels_for: Callable[[list[str]], torch.Tensor], *,
                 k_english: int, m_source: int, preprocess: Callable | None = None,
                 clip_tokenizer: Callable | None = None, forced_labels: bool = False,
                 max_source_len: int = 64) -> None:
        self.source_tokenizer = source_tokenizer
        self.labels_for = labels_for
        self.k_english, self.m_source = k_english, m_source
        self.preprocess, self.clip_tokenizer = preprocess, clip_tokenizer
        self.forced_labels = forced_labels
        self.max_source_len = max_source_len

    def _source(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.source_tokenizer(texts, padding=True, truncation=True, max_length=self.max_source_len,
                                    return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def sources(self, rows: Sequence[dict], indices: Sequence[int], seed: int, targets: TargetTable) -> SourceBatch:
        """The grounded part for dataset rows `rows` (row indices `indices`); `seed` fixes the
        caption choice (pass a per-epoch seed: variety across epochs, exact resumption)."""
        choice = choose_captions(rows, self.k_english, self.m_source, seed)
        texts = [s for caps in choice.source for s in caps]
        source_ids, source_mask = self._source(texts)
        labels = images = english_ids = None
        if self.forced_labels:
            forced = []
            for item, row, eng, caps in zip(rows, indices, choice.english, choice.source_index):
                fallback = eng[0] if eng else next(e for e in item["english"] if e.strip())  # scan_usable: one exists
                forced += [(targets.get((row, j)) or Target(fallback)).text for j in caps]
            labels = self.labels_for(forced)
        if self.preprocess is not None:
            images = torch.stack([self.preprocess(row["image"].convert("RGB")) for row in rows])
        if self.clip_tokenizer is not None and self.k_english:
            english_ids = self.clip_tokenizer([e for caps in choice.english for e in caps]).view(len(rows),
                                                                                               self.k_english, -1)
        inputs = GroundingInputs(source_ids, source_mask, labels=labels, images=images, english_ids=english_ids)
        return SourceBatch(inputs, choice.english, texts, [row["image_id"] for row in rows])

    def targets_batch(self, keys: Sequence[tuple[int, int]], ds: datasets.Dataset, targets: TargetTable, *,
                      pairs: Sequence[tuple[str, Target]] = ()) -> TargetInputs:
        """The token cross-entropy part for captions `keys` of `ds` (each must have a target in `targets`),
        then the (source text, target) `pairs`."""
        unique = sorted({row for row, _ in keys})
        sources = dict(zip(unique, ds.select(unique)["source"]))
        chosen = [targets.get(key) for key in keys] + [t for _, t in pairs]
        human = torch.tensor([t.origin == "human" for t in chosen])
        source_ids, source_mask = self._source([sources[row][j] for row, j in keys] + [s for s, _ in pairs])
        labels = self.labels_for([t.text for t in chosen])
        return TargetInputs(source_ids, source_mask, labels=labels,
                            weight=torch.tensor([t.weight for t in chosen], dtype=torch.float32), human=human,
                            counted=human if human.any() else torch.ones_like(human),
                            scored=taught_labels(self.labels_for, labels, chosen))
