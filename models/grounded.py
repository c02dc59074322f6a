"""The grounded system: CLIP towers + Marian student + splice, as one module (docs/design.md §4).

`GroundedSystem.forward` is one training step's differentiable part: the student translates the
source captions (free-running by default), the splice turns its output into CLIP input
embeddings, and the CLIP text tower encodes them; on the captions that have a human
translation it also returns the token cross-entropy. Image and English features come from the
same CLIP (`encode_images`, `encode_english`), so every axis of the n-dim loss lives in one
space. What the student's decoder ids mean — their CLIP embeddings, labels, text — is its
`TargetVocab` (`models.target_vocab`). `translate` / `nbest` give readable text through
`generate()` (`models.generation`); `student_features`, `image_features` and `english_features`
give CLIP features of many inputs at once (`models.clip_batches`). `save` / `load` write and read
`RUN/model/` (docs/architecture.md), the only thing `translate` and `eval` need from a run; its
`student/` is a standard transformers directory (`models.export`).
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from pydantic import FiniteFloat, PositiveInt
from torch import Tensor, nn
from transformers import MarianMTModel, PreTrainedTokenizerBase
from typing_extensions import TypedDict

from models.clip_batches import ImageLike, encode_images, encode_in_batches, encode_texts, open_rgb
from models.clip_loading import CHECKPOINT_NAME, load_clip
from models.axes import Axes
from models.decoding import DECODING_MODES, Decoded, splice_decode
from models.eot import EOT_MODES
from models.export import export_student, import_student
from models.generation import continue_greedily, generate_texts, nbest, sequence_scores
from models.inputs import GroundingInputs, TargetInputs
from models.pair_rerank import PairLexicon
from models.splice import SPLICES, TOKEN_KINDS, Splice
from models.student import load_marian_tokenizer
from models.target_vocab import TargetVocab, labels_for, load_target_vocab
from models.text_tower import DistributionTextTower
from models.typed_json import read_json

SYSTEM_FILE = "system.json"


class SystemSpec(TypedDict):
    """`system.json`: what `save` writes and `load` needs besides the weights (checked on reading
    by `models.typed_json`)."""

    clip: str
    splice: Literal[SPLICES]
    feedback_kind: Literal[TOKEN_KINDS]
    tau: FiniteFloat
    eot_finder: Literal[EOT_MODES]
    decoding: Literal[DECODING_MODES]
    max_length: PositiveInt


@dataclass(frozen=True)
class SystemOutput:
    """`axes`: the n-dim loss' axes (None without grounding inputs); `token_ce`: the token
    cross-entropy (None without targets)."""

    axes: Axes | None
    token_ce: Tensor | None


class GroundedSystem(nn.Module):
    """CLIP (`clip`, with `clip_tokenizer`) reading a Marian `student` through `splice`.

    `vocab`: the student's target vocabulary (`TargetVocab`: CLIP's BPE, a shortlist of it, or a
    pretrained student's own with its bridge); `source_tokenizer`: what the student reads;
    `max_length`: CLIP positions (SOT included) a translation may use (default: CLIP's context),
    also the student's generation default. `eot_finder` pools the student's sequence in the CLIP
    tower; `decoding` is the training-time decoding mode. In eval mode a `gumbel` splice becomes
    `argmax` (deterministic features)."""

    def __init__(self, clip: nn.Module, clip_name: str, clip_tokenizer: Callable, student: MarianMTModel,
                 source_tokenizer: PreTrainedTokenizerBase, splice: Splice, *, vocab: TargetVocab,
                 eot_finder: str = "prob", decoding: str = "free-running", max_length: int | None = None):
        super().__init__()
        self.clip, self.clip_name, self.clip_tokenizer = clip, clip_name, clip_tokenizer
        self.tower = DistributionTextTower(clip)
        self.student, self.source_tokenizer, self.splice = student, source_tokenizer, splice
        self.vocab = vocab.bind(self.tower.token_embedding)
        self.eot_finder, self.decoding = eot_finder, decoding
        self.eval_splice = Splice("argmax") if splice.kind == "gumbel" else splice
        self.max_length = min(max_length or self.tower.context_length, self.tower.context_length)
        # test-time rerank by word pairs (`models.pair_rerank`): set by training and by `translate`'s loader
        self.pair_lexicon: PairLexicon | None = None
        student.generation_config.max_length = self.max_length
        self.preprocess = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(clip)),
                                             is_train=False)

    @property
    def context_length(self) -> int:
        return self.tower.context_length

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- the differentiable path ---------------------------------------------------------------
    def forward(self, sources: GroundingInputs | None = None, targets: TargetInputs | None = None, *,
                tau: float | None = None) -> SystemOutput:
        """One training step's differentiable part, in one call (so a DDP-wrapped system syncs
        every gradient once, the CLIP towers' included when they train).

        `sources` (`models.inputs`): the student translates the source captions, the splice turns
        its output into CLIP input embeddings and the text tower encodes them; with the images' and
        English captions' features (encoded here, or given by frozen towers) and the experts' they
        are the `Axes` of the n-dim loss. `targets`: the teacher-forced token cross-entropy of the
        captions that have a translation (of the tokens they teach: `scored`), each row weighted,
        over the target tokens of the `counted` rows. `tau`: the splice's temperature from this step on."""
        if tau is not None:
            self.splice.tau = tau
        axes = token_ce = None
        if sources is not None:
            decoded = self.splice_decode(sources.source_ids, sources.source_mask, sources.labels)
            student = self.encode_decoded(decoded)
            image = sources.image_features if sources.image_features is not None else self.encode_images(sources.images)
            english = sources.english_features
            if english is None and sources.english_ids is not None:
                english = self.encode_english(sources.english_ids)
            experts = sources.expert_features
            axes = Axes(image=image, english=() if english is None else tuple(english.unbind(1)),
                        experts=() if experts is None else tuple(experts.unbind(1)),
                        student=tuple(student.view(image.shape[0], -1, student.shape[-1]).unbind(1)))
        if targets is not None:
            forced = splice_decode(self.student, Splice("argmax"), self.tower, targets.source_ids, targets.source_mask,
                                   mode="teacher-forced", labels=targets.labels, embedding=self.vocab.weight)
            token_ce = forced.token_cross_entropy(targets.scored, row_weights=targets.weight,
                                                  counted=targets.counted)
        return SystemOutput(axes, token_ce)

    def splice_decode(self, source_ids: Tensor, source_mask: Tensor, labels: Tensor | None = None) -> Decoded:
        """The student's translations as CLIP input embeddings, in the training-time decoding mode
        (`labels`: the targets of teacher-forced decoding) or, in eval mode, free-running with the
        deterministic splice."""
        splice = self.splice if self.training else self.eval_splice
        mode = self.decoding if self.training else "free-running" if self.decoding == "teacher-forced" else self.decoding
        if mode == "teacher-forced" and labels is None:
            raise ValueError("teacher-forced decoding needs labels (the English captions of the sources)")
        return splice_decode(self.student, splice, self.tower, source_ids, source_mask, mode=mode, labels=labels,
                             embedding=self.vocab.weight, max_length=self.max_length)

    def encode_decoded(self, decoded: Decoded) -> Tensor:
        return self.tower.encode_embeddings(decoded.embeddings, eot=self.eot_finder, **decoded.eot_evidence())

    def encode_images(self, images: Tensor) -> Tensor:
        return self.clip.encode_image(images)

    def encode_english(self, ids: Tensor) -> Tensor:
        """CLIP text features of English token ids `[..., L]` (leading shape kept)."""
        return self.clip.encode_text(ids.reshape(-1, ids.shape[-1])).reshape(*ids.shape[:-1], -1)

    # -- many inputs at once (no gradient) -------------------------------------------------------
    @torch.no_grad()
    def splice_decode_sources(self, sources: Sequence[str]) -> Decoded:
        """`splice_decode` of source sentences (one batch; in the current mode, without gradient)."""
        enc = {k: v.to(self.device) for k, v in self.tokenize_source(sources).items()}
        return self.splice_decode(enc["source_ids"], enc["source_mask"])

    def student_features(self, sources: Sequence[str], batch_size: int = 64) -> Tensor:
        """`[N, F]` CLIP features of the student's translations of `sources` through the splice (the
        path training optimises; in eval mode the splice is deterministic)."""
        return encode_in_batches(lambda part: self.encode_decoded(self.splice_decode_sources(part)), sources,
                                 batch_size=batch_size, width=self.feature_width)

    def image_features(self, images: Sequence[ImageLike], batch_size: int = 64, *,
                       load: Callable[[ImageLike], Image.Image] = open_rgb, show_progress: bool = False) -> Tensor:
        """`[N, F]` CLIP features of images (PIL images or files, opened by `load`; a lazy sequence
        such as a `datasets` column is read one batch at a time)."""
        return encode_images(self.encode_images, self.preprocess, images, device=self.device, batch_size=batch_size,
                             load=load, width=self.feature_width, show_progress=show_progress)

    def english_features(self, texts: Sequence[str], batch_size: int = 64) -> Tensor:
        """`[N, F]` CLIP text features of English `texts`."""
        return encode_texts(self.clip.encode_text, self.clip_tokenizer, texts, device=self.device,
                            batch_size=batch_size, width=self.feature_width)

    @property
    def feature_width(self) -> int:
        return int(self.clip.visual.output_dim)

    # -- text in and out -----------------------------------------------------------------------
    def tokenize_source(self, texts: Sequence[str], max_length: int = 64) -> dict[str, Tensor]:
        enc = self.source_tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                                    return_tensors="pt")
        return {"source_ids": enc["input_ids"], "source_mask": enc["attention_mask"]}

    def labels_for(self, texts: Sequence[str]) -> Tensor:
        """Teacher-forced targets `[N, S-1]` for English `texts` in the student's target vocabulary,
        IGNORE_INDEX after the end token; an empty text gives an all-ignored row."""
        return labels_for(self.vocab, texts, self.context_length - 1)

    @torch.no_grad()
    def translate(self, sources: Sequence[str], *, num_beams: int = 1, batch_size: int = 32) -> list[str]:
        """Readable translations through `generate()` (greedy or beam search), specials stripped;
        with `pair_lexicon` of a size above 0, the candidate of an n-best list at least that wide
        that names the most of the source's paired phrases, and with its `force` above 0 the
        forced names' candidates as well (`models.pair_rerank`)."""
        lexicon = self.pair_lexicon
        if lexicon is None or not lexicon.size:
            return generate_texts(self.student, self.source_tokenizer, sources, self.vocab.decode,
                                  num_beams=num_beams, batch_size=batch_size)
        candidates, scores = self.nbest(sources, size=max(lexicon.size, num_beams), batch_size=batch_size)
        chosen = [options[j] for options, j in zip(candidates, lexicon.choose(sources, candidates, scores))]
        if not lexicon.force:
            return chosen
        for i, (options, rescored) in self.forced_options(sources, candidates, chosen, batch_size=batch_size).items():
            chosen[i] = options[lexicon.choose_forced(sources[i], options, rescored)]
        return chosen

    @torch.no_grad()
    def forced_options(self, sources: Sequence[str], candidates: Sequence[Sequence[str]], chosen: Sequence[str], *,
                       batch_size: int = 32) -> dict[int, tuple[list[str], list[float]]]:
        """For each source whose `chosen` translation misses one of its paired phrases
        (`pair_lexicon.forced_prefixes`): its n-best `candidates` and the student's greedy
        continuations of the forced prefixes, each text once, with the student's length-normalised
        log-probability of each (`models.generation.sequence_scores`), by the source's index."""
        forced = (self.pair_lexicon.forced_prefixes(source, text) for source, text in zip(sources, chosen))
        prefixes = {i: p for i, p in enumerate(forced) if p}
        if not prefixes:
            return {}
        pending = [(i, p) for i, ps in prefixes.items() for p in ps]
        end = self.student.generation_config.eos_token_id
        ids = [[t for t in row if t >= 0 and t != end] for row in self.labels_for([p for _, p in pending]).tolist()]
        continued = self.vocab.decode(continue_greedily(self.student, self.source_tokenizer,
                                                        [sources[i] for i, _ in pending], ids, batch_size=batch_size))
        options = {i: list(candidates[i]) for i in prefixes}
        for (i, _), text in zip(pending, continued):
            options[i].append(text)
        options = {i: list(dict.fromkeys(o)) for i, o in options.items()}
        flat = [(i, text) for i, o in options.items() for text in o]
        scores = sequence_scores(self.student, self.source_tokenizer, [sources[i] for i, _ in flat],
                                 self.labels_for([t for _, t in flat]), batch_size=batch_size).tolist()
        out, at = {}, 0
        for i, o in options.items():
            out[i] = (o, scores[at:at + len(o)])
            at += len(o)
        return out

    @torch.no_grad()
    def nbest(self, sources: Sequence[str], *, size: int, batch_size: int = 32) -> tuple[list[list[str]], Tensor]:
        """The `size` best beam-search translations of each source (best first) and their
        length-normalised log-probabilities `[N, size]`."""
        return nbest(self.student, self.source_tokenizer, sources, self.vocab.decode, size=size,
                     batch_size=batch_size)

    # -- RUN/model ------------------------------------------------------------------------------
    def export(self, directory: str | Path) -> Path:
        """The student as a standard transformers directory (`models.export`)."""
        return export_student(self.student, self.vocab, self.source_tokenizer, directory)

    def save(self, directory: str | Path) -> Path:
        """Write everything `load` needs under `directory` (written to a temporary sibling, then
        renamed): `student/` (the standard export), `source_tokenizer/`, `clip/`, the target
        vocabulary, the splice's weights, `system.json` and the rerank's word pairs (`word_pairs.json`)."""
        directory = Path(directory)
        tmp = directory.with_name(directory.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self.export(tmp / "student")
        self.source_tokenizer.save_pretrained(tmp / "source_tokenizer")
        self.vocab.save(tmp)
        (tmp / "clip").mkdir()
        torch.save({"state_dict": self.clip.state_dict()}, tmp / "clip" / CHECKPOINT_NAME)
        if self.splice.linear is not None:
            torch.save(self.splice.state_dict(), tmp / "splice.pt")
        spec = {"clip": self.clip_name, "splice": self.splice.kind, "feedback_kind": self.splice.feedback_kind,
                "tau": self.splice.tau, "eot_finder": self.eot_finder, "decoding": self.decoding,
                "max_length": self.max_length}
        (tmp / SYSTEM_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        if self.pair_lexicon is not None:
            self.pair_lexicon.save(tmp)
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
        spec = read_json(directory / SYSTEM_FILE, SystemSpec)
        clip, _, clip_tokenizer = load_clip(spec["clip"], pretrained=directory / "clip" / CHECKPOINT_NAME)
        vocab = load_target_vocab(directory, clip_tokenizer).bind(DistributionTextTower(clip).token_embedding)
        student = import_student(directory / "student", vocab)
        splice = Splice.for_student(spec["splice"], student, vocab.weight, tau=spec["tau"],
                                    feedback_kind=spec["feedback_kind"])
        if (directory / "splice.pt").is_file():
            splice.load_state_dict(torch.load(directory / "splice.pt", weights_only=True))
        system = cls(clip, spec["clip"], clip_tokenizer, student, load_marian_tokenizer(directory / "source_tokenizer"),
                     splice, vocab=vocab, eot_finder=spec["eot_finder"], decoding=spec["decoding"],
                     max_length=spec["max_length"])
        return system.to(device).eval()
