"""The grounded system: CLIP towers + Marian student + splice, as one module (DESIGN §4).

`GroundedSystem.forward` is one training step's differentiable part: the student translates the
source captions (free-running by default), the splice turns its output into CLIP input
embeddings, and the CLIP text tower encodes them; on the captions that have a human
translation it also returns the token cross-entropy. Image and English features come from the
same CLIP (`encode_images`, `encode_english`), so every axis of the n-dim loss lives in one
space. `translate` gives readable text through `generate()`; `save` / `load` write and read
`RUN/model/` (docs/architecture.md), the only thing `translate` and `eval` need from a run.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import MarianMTModel, MarianTokenizer

from data_prep.source_tokenizer import load_source_tokenizer
from models.clip_loading import load_clip
from models.decoding import IGNORE_INDEX, Decoded, decode
from models.shortlist import ClipShortlist
from models.splice import Splice
from models.student import CLIP_EOT_ID, CLIP_PAD_ID, CLIP_SOT_ID, VocabBridge, load_pretrained_student
from models.teacher import CHECKPOINT_NAME
from models.text_tower import DistributionTextTower

SYSTEM_FILE = "system.json"


class GroundedSystem(nn.Module):
    """CLIP (`clip`, with `clip_tokenizer`) reading a Marian `student` through `splice`.

    `bridge`: the `VocabBridge` of a pretrained student (None for a scratch student, whose
    decoder vocabulary is CLIP's BPE); `target_tokenizer`: a pretrained student's own tokenizer;
    `shortlist`: a scratch student's decoder vocabulary when it is a corpus subset of CLIP's BPE;
    `max_length`: CLIP positions (SOT included) a translation may use (default: CLIP's context).
    `eot_finder` pools the student's sequence in the CLIP tower; `decoding` is the training-time
    decoding mode. In eval mode a `gumbel` splice becomes `argmax` (deterministic features)."""

    def __init__(self, clip: nn.Module, clip_name: str, clip_tokenizer: Callable, student: MarianMTModel,
                 source_tokenizer: MarianTokenizer, splice: Splice, *, eot_finder: str = "prob",
                 decoding: str = "free-running", bridge: VocabBridge | None = None,
                 target_tokenizer: MarianTokenizer | None = None, shortlist: ClipShortlist | None = None,
                 max_length: int | None = None):
        super().__init__()
        self.clip, self.clip_name, self.clip_tokenizer = clip, clip_name, clip_tokenizer
        self.tower = DistributionTextTower(clip)
        self.student, self.source_tokenizer, self.splice, self.bridge = student, source_tokenizer, splice, bridge
        self.target_tokenizer = target_tokenizer
        self.eot_finder, self.decoding = eot_finder, decoding
        self.eval_splice = Splice("argmax") if splice.kind == "gumbel" else splice
        if (bridge is None) != (target_tokenizer is None):
            raise ValueError("a pretrained student needs both its VocabBridge and its target tokenizer")
        if shortlist is not None and bridge is not None:
            raise ValueError("a vocabulary shortlist applies to scratch students only")
        self.shortlist = shortlist.bind(self.tower.token_embedding) if shortlist is not None else None
        self.max_length = min(max_length or self.tower.context_length, self.tower.context_length)

    @property
    def vocabulary_map(self) -> VocabBridge | ClipShortlist | None:
        """What takes student ids to CLIP input embeddings (None: the ids are CLIP's own)."""
        return self.bridge if self.bridge is not None else self.shortlist

    @property
    def context_length(self) -> int:
        return self.tower.context_length

    # -- the differentiable path ---------------------------------------------------------------
    def forward(self, sources: dict[str, Tensor] | None = None,
                targets: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """One training step's differentiable part, in one call (so a DDP-wrapped system syncs
        every gradient once, the CLIP towers' included when they train).

        `sources` — the grounded part, B images with M source captions each: `source_ids`,
        `source_mask` [B*M, L] (image-major; `labels` when decoding is teacher-forced), the images
        as `images` [B,3,H,W] or frozen features `image_features` [B,F], and optionally the English
        captions as `english_ids` [B,K,L] or `english_features` [B,K,F] → `features` [B*M,F] and
        hard `tokens` [B*M,S] of the student's translations read by CLIP, and `axes`, the n-dim
        loss' axes in their one order: image, English 1..K, student 1..M (each [B,F]).
        `targets` (`source_ids`, `source_mask`, `labels` [N,S-1], `weight` [N], `counted` [N]):
        captions with a (human or pseudo) translation → `token_ce`, the teacher-forced token
        cross-entropy, each row weighted, over the target tokens of the `counted` rows."""
        out = {}
        if sources is not None:
            decoded = self.decode(sources["source_ids"], sources["source_mask"], sources.get("labels"))
            student = self.encode_decoded(decoded)
            image = sources["image_features"] if "image_features" in sources else self.encode_images(sources["images"])
            english = sources.get("english_features")
            if english is None and "english_ids" in sources:
                english = self.encode_english(sources["english_ids"])
            out.update(features=student, tokens=decoded.tokens,
                       axes=[image, *(() if english is None else english.unbind(1)),
                             *student.view(image.shape[0], -1, student.shape[-1]).unbind(1)])
        if targets is not None:
            forced = decode(self.student, Splice("argmax"), self.tower, targets["source_ids"], targets["source_mask"],
                            mode="teacher-forced", labels=targets["labels"], bridge=self.vocabulary_map)
            out["token_ce"] = forced.token_cross_entropy(row_weights=targets.get("weight"),
                                                         counted=targets.get("counted"))
        return out

    def decode(self, source_ids: Tensor, source_mask: Tensor, labels: Tensor | None = None) -> Decoded:
        """The student's translations as CLIP input embeddings, in the training-time decoding mode
        (`labels`: the targets of teacher-forced decoding) or, in eval mode, free-running with the
        deterministic splice."""
        splice = self.splice if self.training else self.eval_splice
        mode = self.decoding if self.training else "free-running" if self.decoding == "teacher-forced" else self.decoding
        if mode == "teacher-forced" and labels is None:
            raise ValueError("teacher-forced decoding needs labels (the English captions of the sources)")
        return decode(self.student, splice, self.tower, source_ids, source_mask, mode=mode, labels=labels,
                      bridge=self.vocabulary_map, max_length=self.max_length)

    def encode_decoded(self, decoded: Decoded) -> Tensor:
        return self.tower.encode_embeddings(decoded.embeddings, eot=self.eot_finder, **decoded.eot_evidence())

    def encode_images(self, images: Tensor) -> Tensor:
        return self.clip.encode_image(images)

    def encode_english(self, ids: Tensor) -> Tensor:
        """CLIP text features of English token ids `[..., L]` (leading shape kept)."""
        return self.clip.encode_text(ids.reshape(-1, ids.shape[-1])).reshape(*ids.shape[:-1], -1)

    # -- text in and out -----------------------------------------------------------------------
    def tokenize_source(self, texts: Sequence[str], max_length: int = 64) -> dict[str, Tensor]:
        enc = self.source_tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                                    return_tensors="pt")
        return {"source_ids": enc["input_ids"], "source_mask": enc["attention_mask"]}

    def labels_for(self, texts: Sequence[str]) -> Tensor:
        """Teacher-forced targets `[N, S-1]` for English `texts` in the student's target vocabulary,
        IGNORE_INDEX after the end token; an empty text gives an all-ignored row."""
        length = self.context_length - 1
        if self.target_tokenizer is None:  # CLIP BPE: open_clip's tokens without SOT
            labels = self.clip_tokenizer([t or "" for t in texts])[:, 1:length + 1]
            after_end = torch.cumsum((labels == CLIP_EOT_ID).int(), 1) - (labels == CLIP_EOT_ID).int() > 0
            ignored = after_end | (labels == CLIP_PAD_ID)
            if self.shortlist is not None:  # ids outside the shortlist cannot be predicted: not scored
                labels = self.shortlist.from_clip(labels)
                ignored |= labels < 0
            labels = labels.masked_fill(ignored, IGNORE_INDEX)
        else:
            enc = self.target_tokenizer(text_target=[t or "" for t in texts], padding="max_length",
                                        truncation=True, max_length=length, return_tensors="pt")
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
        empty = torch.tensor([not t for t in texts], dtype=torch.bool)
        return labels.masked_fill(empty[:, None], IGNORE_INDEX)

    def target_decoder(self) -> tuple[Callable[[list[int]], str], set[int]]:
        """`(decode, special_ids)` for the student's target ids: `decode` turns a list of ids into
        text once the `special_ids` (start, end, pad) are stripped (`eval.generation.decode_ids`)."""
        if self.target_tokenizer is not None:
            return self.target_tokenizer.decode, set(self.target_tokenizer.all_special_ids)
        if self.shortlist is not None:
            clip_ids = self.shortlist.clip_ids.tolist()
            return (lambda ids: self.clip_tokenizer.decode([clip_ids[i] for i in ids])), set(self.shortlist.special_ids())
        return self.clip_tokenizer.decode, {CLIP_SOT_ID, CLIP_EOT_ID, CLIP_PAD_ID}

    def decode_tokens(self, tokens: Tensor) -> list[str]:
        """Readable text of hard decoded tokens `[N,S]` (position 0 = start token)."""
        from eval.generation import decode_ids

        decode_fn, special = self.target_decoder()
        eos = self.student.config.eos_token_id
        rows = [row[1:row.index(eos)] if eos in row[1:] else row[1:] for row in tokens.tolist()]
        return decode_ids(rows, decode_fn, special)

    @torch.no_grad()
    def translate(self, sources: Sequence[str], *, num_beams: int = 1, batch_size: int = 32) -> list[str]:
        """Readable translations through `generate()` (greedy or beam search), specials stripped."""
        from eval.generation import translate

        decode_fn, special = self.target_decoder()
        return translate(self.student, self.source_tokenizer, sources, decode_fn, special_ids=special,
                         num_beams=num_beams, max_new_tokens=None, max_length=self.max_length,
                         batch_size=batch_size)

    @torch.no_grad()
    def nbest(self, sources: Sequence[str], *, size: int, batch_size: int = 32) -> tuple[list[list[str]], Tensor]:
        """The `size` best beam-search translations of each source (best first) and their
        length-normalised log-probabilities `[N, size]`."""
        from eval.generation import nbest

        decode_fn, special = self.target_decoder()
        return nbest(self.student, self.source_tokenizer, sources, decode_fn, size=size, special_ids=special,
                     max_length=self.max_length, batch_size=batch_size)

    # -- RUN/model ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write everything `load` needs under `directory` (written to a temporary sibling, then renamed)."""
        directory = Path(directory)
        tmp = directory.with_name(directory.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        self.student.save_pretrained(tmp / "student")
        self.source_tokenizer.save_pretrained(tmp / "source_tokenizer")
        if self.target_tokenizer is not None:
            self.target_tokenizer.save_pretrained(tmp / "student")
            torch.save(self.bridge.state_dict(), tmp / "bridge.pt")
        (tmp / "clip").mkdir()
        torch.save({"state_dict": self.clip.state_dict()}, tmp / "clip" / CHECKPOINT_NAME)
        if self.splice.linear is not None:
            torch.save(self.splice.state_dict(), tmp / "splice.pt")
        spec = {"clip": self.clip_name, "splice": self.splice.kind, "feedback_kind": self.splice.feedback_kind,
                "tau": self.splice.tau, "eot_finder": self.eot_finder, "decoding": self.decoding,
                "max_length": self.max_length,
                "pretrained_student": self.target_tokenizer is not None,
                "shortlist": self.shortlist.clip_ids.tolist() if self.shortlist is not None else None}
        (tmp / SYSTEM_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> GroundedSystem:
        """The system saved by `save` (a run's `RUN/model/`), in eval mode."""
        directory = Path(directory)
        if not (directory / SYSTEM_FILE).is_file():
            raise FileNotFoundError(f"{directory} holds no saved system ({SYSTEM_FILE}); pass a run directory "
                                    "written by `accelerate launch train.py --out RUN` (its model/ folder)")
        spec = json.loads((directory / SYSTEM_FILE).read_text())
        clip, _, clip_tokenizer = load_clip(spec["clip"], pretrained=directory / "clip" / CHECKPOINT_NAME)
        source_tokenizer = load_source_tokenizer(directory / "source_tokenizer")
        bridge = target_tokenizer = None
        if spec["pretrained_student"]:
            student, target_tokenizer = load_pretrained_student(directory / "student")
            bridge = VocabBridge(torch.load(directory / "bridge.pt", weights_only=True)["weight"])
        else:
            student = MarianMTModel.from_pretrained(str(directory / "student"))
        shortlist = ClipShortlist(spec["shortlist"]) if spec.get("shortlist") else None
        embedding = (bridge.weight if bridge is not None else clip.token_embedding.weight[shortlist.clip_ids]
                     if shortlist is not None else clip.token_embedding.weight)
        splice = Splice.for_student(spec["splice"], student, embedding, tau=spec["tau"], feedback_kind=spec["feedback_kind"])
        if (directory / "splice.pt").is_file():
            splice.load_state_dict(torch.load(directory / "splice.pt", weights_only=True))
        system = cls(clip, spec["clip"], clip_tokenizer, student, source_tokenizer, splice,
                     eot_finder=spec["eot_finder"], decoding=spec["decoding"], bridge=bridge,
                     target_tokenizer=target_tokenizer, shortlist=shortlist, max_length=spec.get("max_length"))
        return system.to(device).eval()
