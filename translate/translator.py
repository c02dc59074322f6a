"""Inference API over a trained run: translate text, score translations against images.

`Translator.from_run(RUN)` loads `RUN/model` (the exported `GroundedSystem`, docs/architecture.md)
and the run id from `RUN/config.json` (`load_run_system`, which `eval analyze` uses too); a missing
model or a file missing from it, a damaged file (a truncated `student/model.safetensors` or
`clip/open_clip_model.pt`), a `system.json` or `config.json` that does not hold what its schema
declares, or weights that are not finite (a run that diverged) is an `InputError` (or a
`ReadBackError`) naming the file: one line, exit 2, never a broken model scored as a success.
Scores live in the run's own CLIP space:
- `grounding`: CLIP cosine between an image and a translation (docs/design.md §5's grounding score);
- `source_image_scores`: cosine between the image and the student's *differentiable* CLIP
  embedding of the source caption (the path training optimises; eval-mode splice = argmax).
Test-time grounding (`translate(..., images=, rerank="clip")`, `rerank_clip`): the student's
n-best list of each caption is re-scored with the caption's image by the rule of grounded
self-training (`models.grounded_selection.rerank`; docs/translate.md, "Reranking with the image").
Text is never changed beyond Unicode NFC and outer whitespace trimming. A source longer than the
source tokenizer's limit is cut there by the model; `truncated` says which inputs were.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Required

import sentencepiece as spm
import torch
from PIL import Image
from pydantic import PositiveInt
from safetensors import safe_open
from typing_extensions import TypedDict

from data_prep.builders.files import LayoutError
from data_prep.errors import InputError
from data_prep.memory import require_memory
from data_prep.schema import normalize_text
from eval.retrieval import grounding_scores
from models.clip_batches import ImageLike, open_rgb
from models.feature_cache import FeatureTable
from data_prep.words import words
from models.pair_rerank import PairLexicon
from models.grounded import SYSTEM_FILE, GroundedSystem, SystemSpec
from models.grounded_selection import rerank as rerank_candidates
from models.run_dir import RunConfig
from models.clip_loading import CHECKPOINT_NAME
from models.typed_json import ReadBackError, read_json
from translate.reranking import (DEFAULT_RERANK_BETA, DEFAULT_RERANK_SIZE, check_beta, rerank_settings,
                                 resolve_rerank_size)

def _rgb(image: ImageLike) -> Image.Image:
    """An RGB PIL image; a path that cannot be opened or decoded is an `InputError` naming it."""
    try:
        return open_rgb(image)
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"{image}: cannot read the image ({exc})") from None


@dataclass
class Reranked:
    """`translations` (one per input); `choice`: index of each chosen translation in its caption's
    n-best list (0 = the student's best; -1 for an empty input, which is not translated);
    `candidates`: each input's n-best list, best first by the student ([] for an empty input)."""

    translations: list[str]
    choice: list[int]
    candidates: list[list[str]]


class Translator:
    """A loaded `GroundedSystem`, ready for inference."""

    def __init__(self, system: GroundedSystem, *, run_id: str | None = None, model_dir: str | Path | None = None):
        self.system = system.eval()
        self.run_id = run_id
        self.model_dir = str(model_dir) if model_dir is not None else None

    @classmethod
    def from_run(cls, run: str | Path, device: str | torch.device | None = None) -> Translator:
        """Load `run/model` (`load_run_system`); `device=None` picks CUDA when available, else CPU."""
        run = Path(run)
        system, config = load_run_system(run, device)
        return cls(system, run_id=config.get("run_id") or run.resolve().name, model_dir=(run / "model").resolve())

    @property
    def device(self) -> torch.device:
        return self.system.device

    def translate(self, texts: Sequence[str], num_beams: int = 1, batch_size: int = 32, *,
                  images: Sequence[ImageLike | None] | None = None, rerank: str | None = None,
                  rerank_size: int | None = None, rerank_beta: float | None = None) -> list[str]:
        """English translations of `texts` (greedy, or beam search with `num_beams` > 1), one per
        input; an input that is empty after NFC/trimming gets "" without reaching the model.

        `rerank="clip"` with `images` (one per text, aligned; None = no image for that text, which
        keeps the student's best): each text's n-best list of size `rerank_size` (default:
        `num_beams` when above 1, else 8) re-scored with its image, the image weighted by
        `rerank_beta` (default 0.2); see `rerank_clip`."""
        settings = rerank_settings(rerank, num_beams=num_beams, size=rerank_size, beta=rerank_beta)
        if settings is not None:
            if images is None:
                raise InputError("rerank='clip' needs images: one image per text (the image judges the candidates)")
            return self.rerank_clip(texts, images, size=settings["size"], beta=settings["beta"],
                                    batch_size=batch_size).translations
        if images is not None:
            raise InputError("images are used only to rerank (rerank='clip')")
        if isinstance(texts, str):
            raise TypeError("texts must be a list of sentences, not a single string")
        texts = [normalize_text(t) for t in texts]
        todo = [i for i, t in enumerate(texts) if t]
        out = [""] * len(texts)
        done = (self.system.translate([texts[i] for i in todo], num_beams=num_beams, batch_size=batch_size)
                if todo else [])
        for i, translation in zip(todo, done):
            out[i] = translation
        return out

    @torch.no_grad()
    def rerank_clip(self, texts: Sequence[str], images: Sequence[ImageLike | None], *,
                    size: int = DEFAULT_RERANK_SIZE, beta: float = DEFAULT_RERANK_BETA,
                    batch_size: int = 32) -> Reranked:
        """Per text, the candidate of its `size`-best beam-search list that maximises
        `log p(c | text) + beta · scale · cos(CLIP(c), CLIP(image))` (length-normalised
        log-probability; `scale` = the run's CLIP logit scale; `models.grounded_selection.rerank`).
        `images[i]` is text i's image (PIL or path); None keeps the student's best. `beta` = 0
        gives beam search's best. Work and memory go `batch_size` texts at a time."""
        _check_aligned(images, texts)
        beta, size = check_beta(beta), resolve_rerank_size(size=size)
        texts = [normalize_text(t) for t in texts]
        out = Reranked([""] * len(texts), [-1] * len(texts), [[] for _ in texts])
        todo = [i for i, t in enumerate(texts) if t]
        scale = float(self.system.clip.logit_scale.exp())
        for s in range(0, len(todo), batch_size):
            batch = todo[s:s + batch_size]
            candidates, logprobs = self.system.nbest([texts[i] for i in batch], size=size, batch_size=batch_size)
            choice = torch.zeros(len(batch), dtype=torch.long)
            seen = [j for j, i in enumerate(batch) if images[i] is not None]
            if seen and size > 1:
                flat = [c for j in seen for c in candidates[j]]
                table = FeatureTable.of_texts(self.system.encode_english, self.system.clip_tokenizer, flat,
                                              device=self.device, show_progress=False)
                features = table[flat].view(len(seen), size, -1)
                image = self.image_embeddings([images[batch[j]] for j in seen], batch_size=batch_size)
                choice[seen] = rerank_candidates(logprobs[seen].to(self.device), features, image.to(self.device),
                                                 beta=beta, scale=scale).cpu()
            for j, i in enumerate(batch):
                out.choice[i], out.candidates[i] = int(choice[j]), candidates[j]
                out.translations[i] = candidates[j][int(choice[j])]
        return out

    @property
    def source_limit(self) -> int:
        """Most source tokens (end token included) the model reads; the rest of a longer input is cut."""
        return int(self.system.source_tokenizer.model_max_length)

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Per input: whether it is longer than `source_limit`, so that only its beginning is translated."""
        tokenizer = self.system.source_tokenizer
        extra = tokenizer.num_special_tokens_to_add()
        return [len(tokenizer.tokenize(normalize_text(t))) + extra > self.source_limit for t in texts]

    # -- embeddings -------------------------------------------------------------------------
    def image_embeddings(self, images: Sequence[ImageLike], batch_size: int = 64) -> torch.Tensor:
        """`[N, D]` CLIP image features (PIL images or file paths; an unreadable file is an `InputError`)."""
        return self.system.image_features(images, batch_size, load=_rgb).cpu()

    def text_embeddings(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """`[N, D]` CLIP text features of English `texts`."""
        return self.system.english_features(texts, batch_size).cpu()

    def source_embeddings(self, sources: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """`[N, D]` the student's differentiable CLIP embedding of each source caption."""
        return self.system.student_features([normalize_text(s) for s in sources], batch_size).cpu()

    # -- scores -----------------------------------------------------------------------------
    def grounding(self, images: Sequence[ImageLike], translations: Sequence[str]) -> list[float]:
        """CLIP image–translation cosine, aligned by index."""
        _check_aligned(images, translations)
        return grounding_scores(self.image_embeddings(images), self.text_embeddings(translations)).tolist()

    def source_image_scores(self, images: Sequence[ImageLike], sources: Sequence[str]) -> list[float]:
        """Cosine between each image and the student's differentiable CLIP embedding of its source."""
        _check_aligned(images, sources)
        return grounding_scores(self.image_embeddings(images), self.source_embeddings(sources)).tolist()


def _check_aligned(images: Sequence, texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of sentences, not a single string")
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} texts: they are scored aligned by index")


def run_config(run: str | Path) -> dict:
    """`RUN/config.json` as a dict ({} when the run has none), checked against `RunConfig` (a
    truncated file or a key of the wrong type is a `ReadBackError` naming it)."""
    path = Path(run) / "config.json"
    return read_json(path, RunConfig) if path.is_file() else {}


class StudentShape(TypedDict, total=False):
    """The sizes of `model/student/config.json` that the memory estimate of a beam search reads."""

    d_model: Required[PositiveInt]
    decoder_layers: Required[PositiveInt]
    vocab_size: Required[PositiveInt]
    decoder_vocab_size: PositiveInt | None


SOURCE_LENGTH = 512  # source tokens a Marian tokenizer keeps (model_max_length): the cross-attention cache's bound
# Files every saved system has (`GroundedSystem.save`); a folder is enough for the tokenizer.
MODEL_FILES = (SYSTEM_FILE, "target_vocab.json", "student/config.json", "student/model.safetensors",
               "source_tokenizer", f"clip/{CHECKPOINT_NAME}")


def model_files(run: str | Path) -> Path:
    """`RUN/model`, once every file of `MODEL_FILES` is found there (else an `InputError` naming them)."""
    run = Path(run)
    model_dir = run / "model"
    if not (model_dir / SYSTEM_FILE).is_file():
        raise LayoutError(f"{run} holds no trained model ({model_dir}/{SYSTEM_FILE} is missing): pass a run "
                          "directory written by `accelerate launch train.py --out RUN`")
    missing = [name for name in MODEL_FILES if not (model_dir / name).exists()]
    if missing:
        raise InputError(f"{model_dir} is incomplete: {', '.join(missing)} missing; export the run's model again "
                         "(`accelerate launch train.py --out RUN --resume` on a finished run) or retrain it")
    return model_dir


def load_run_system(run: str | Path, device: str | torch.device | None = None) -> tuple[GroundedSystem, dict]:
    """`(the GroundedSystem of RUN/model, RUN/config.json)`, with the run's word pairs where it has
    them (`models.pair_rerank`), checked before and after loading: every
    file of `MODEL_FILES` there, `system.json` and `config.json` as their schemas declare, no file
    damaged, every weight finite. Anything else is an `InputError`/`ReadBackError` naming the file."""
    run = Path(run)
    model_dir = model_files(run)
    config = run_config(run)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        system = GroundedSystem.load(model_dir, device=device)
        system.pair_lexicon = PairLexicon.load(model_dir, words)
    except ReadBackError:
        raise
    except Exception as exc:
        damaged = damaged_model_file(model_dir)
        if damaged is not None:
            raise InputError(f"{damaged[0]}: damaged model file ({damaged[1]}); export the run's model again or "
                             f"retrain it ({type(exc).__name__} while loading {model_dir})") from None
        if not isinstance(exc, RuntimeError | ValueError | KeyError | TypeError):
            raise
        # every file reads, but they do not fit together (e.g. system.json names another CLIP than clip/ holds)
        raise InputError(f"{model_dir}: its files do not fit together ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); export the run's model "
                         "again or retrain it") from None
    bad = non_finite_tensors(system)
    if bad:
        raise InputError(f"{model_dir}: the model's weights are not finite ({bad[0]}"
                         + (f", and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else "")
                         + "): the run diverged, so there is nothing to translate or score with; retrain it")
    return system, config


def non_finite_tensors(module: torch.nn.Module) -> list[str]:
    """`name: k of n values are NaN or infinite` for every floating tensor of `module`'s state."""
    found = []
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                found.append(f"{name}: {bad} of {tensor.numel()} values are NaN or infinite")
    return found


def check_generation_memory(run: str | Path, texts: Sequence[str], batch_size: int, beams: int) -> None:
    """Refuse, before the model loads, a beam search whose `min(batch_size, len(texts)) × beams`
    hypotheses at once would not fit in memory. The estimate per hypothesis (sizes from
    `RUN/model/student/config.json` and `system.json`): its logits over the target vocabulary and a
    few copies of them, and the decoder's self- and cross-attention caches, the source being at most
    its characters long in tokens (and at most `SOURCE_LENGTH`)."""
    model_dir = model_files(run)
    student = read_json(model_dir / "student" / "config.json", StudentShape)
    length = read_json(model_dir / SYSTEM_FILE, SystemSpec)["max_length"]
    vocab, width = student.get("decoder_vocab_size") or student["vocab_size"], student["d_model"]
    source = min(SOURCE_LENGTH, max((len(t) for t in texts), default=0) + 2)
    batch = min(batch_size, max(len(texts), 1))
    require_memory(batch * beams * hypothesis_bytes(vocab, student["decoder_layers"], width, length, source),
                   f"{beams} beam(s) x {batch} sentence(s) per batch",
                   "use a smaller --num-beams (or --rerank-size) or --batch-size")


def hypothesis_bytes(vocab: int, layers: int, width: int, length: int, source: int) -> int:
    """Memory of one beam-search hypothesis: its logits over the target vocabulary and a few copies
    of them, and the decoder's self- and cross-attention caches (`length` target and `source`
    source tokens, `layers` layers of `width`)."""
    return 16 * vocab + 8 * layers * width * (length + source) + 4 * source * width


def damaged_model_file(model_dir: Path) -> tuple[Path, str] | None:
    """`(file, reason)` for the first file of a saved `GroundedSystem` that cannot be read whole
    (JSON, safetensors, torch and SentencePiece files under `model_dir`); None when all read."""
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():
                        f.get_slice(key)
            elif path.suffix in (".pt", ".bin"):
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            elif path.suffix == ".spm":
                spm.SentencePieceProcessor(model_file=str(path))
        except Exception as exc:  # each format fails in its own way; any failure means the file is damaged
            return path, str(exc).split(". ")[0].splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None
