"""`translate corpus`: translate captioned images into a scored, filterable parallel corpus.

`OUT/corpus.jsonl` gets one record per caption, appended in input order one batch at a time;
after each batch the file is flushed and fsync'd, then the progress marker `OUT/progress.json`
(record count, byte length, input fingerprint) is replaced atomically. A rerun truncates
`corpus.jsonl` to the marker's length (dropping a batch cut off by the interruption), skips the
records already written (by id) and goes on; a different run or input in the same OUT is refused.
At the end the flags that depend on options (`low_grounding`, `duplicate`) and each record's
`aligned_line` are recomputed, `corpus.jsonl` is rewritten atomically, and every derived file
(aligned text, TSV, TMX, summary, histograms) is rewritten from it (`translate.outputs`).
With `rerank` (`--rerank clip`) each caption's n-best list is re-scored with its own image
(`Translator.rerank_clip`); the settings join the fingerprint, so a corpus begun with other
settings (or without reranking) is never continued with these.
What is read back is checked against its schema (`Progress`, `CorpusRecord`): a marker or a record
of the wrong shape is one line naming the file (and line) and the field. The folder is recognised
as a corpus (`CORPUS`) by its progress marker, or when it holds nothing but an input report (left
by a run that found nothing to translate); `translate corpus` writes into no other non-empty folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Required

from pydantic import NonNegativeInt
from tqdm.auto import tqdm
from typing_extensions import TypedDict

from data_prep.errors import Artefact, InputError
from data_prep.locks import LOCK_FILE
from data_prep.text_files import numbered_lines
from eval.retrieval import grounding_scores
from models.typed_json import ReadBackError, parse, read_json
from translate.flags import Filters, finalize, record_flags
from translate.inputs import Inputs, Item
from translate.outputs import atomic_write, write_outputs
from translate.translator import Translator

CORPUS = "corpus.jsonl"
PROGRESS = "progress.json"
INPUT_REPORT = "input_report.jsonl"


def is_corpus_folder(folder: Path) -> bool:
    """A folder `translate corpus` wrote: its progress marker, or only an input report (and a lock)."""
    return (folder / PROGRESS).is_file() or (
        (folder / INPUT_REPORT).is_file() and all(p.name in (INPUT_REPORT, LOCK_FILE) for p in folder.iterdir()))


CORPUS_FOLDER = Artefact("a corpus written by python -m translate corpus", is_corpus_folder)


class Progress(TypedDict):
    """`progress.json`: the input's fingerprint, and how many records and bytes of corpus.jsonl are safe."""

    fingerprint: dict[str, Any]
    records: NonNegativeInt
    bytes: NonNegativeInt


class CorpusRecord(TypedDict, total=False):
    """A record of corpus.jsonl as the finishing steps read it back (`translate_batch` writes it)."""

    id: Required[str]
    image_id: Required[str]
    file_name: str | None
    lang: Required[str]
    source: Required[str]
    translation: Required[str]
    grounding: Required[float | None]
    source_image_score: Required[float | None]
    length_ratio: Required[float | None]
    flags: Required[list[str]]
    provenance: str
    run_id: str | None
    model: str | None
    nbest_index: int | None
    aligned_line: int | None


class CorpusWriter:
    """Appends records to `OUT/corpus.jsonl` with the fsync'd progress marker; resumes from it."""

    def __init__(self, out: Path, fingerprint: dict, restart: bool = False):
        self.out, self.fingerprint = out, fingerprint
        self.corpus, self.marker = out / CORPUS, out / PROGRESS
        out.mkdir(parents=True, exist_ok=True)
        if restart:
            for path in (self.corpus, self.marker):
                path.unlink(missing_ok=True)
        self.done: set[str] = set()
        self.resumed = 0
        if self.marker.is_file():
            progress = read_progress(self.marker)
            if not self.corpus.is_file():
                raise InputError(f"{self.marker} exists but {self.corpus} does not; pass --restart")
            if progress["fingerprint"] != fingerprint:
                raise InputError(f"{out} holds a corpus of another run or input "
                                 f"({progress['fingerprint']}); pass --restart to replace it, or another --out")
            if progress["bytes"] > self.corpus.stat().st_size:
                raise InputError(f"{self.corpus} is shorter than its progress marker says ({progress['bytes']} "
                                 "bytes); pass --restart")
            with self.corpus.open("r+b") as f:  # drop whatever was appended after the last marker
                f.truncate(progress["bytes"])
            self.done = {record["id"] for record in read_records(self.corpus)}
            if len(self.done) != progress["records"]:
                raise InputError(f"{self.corpus} does not match its progress marker; pass --restart")
            self.resumed = len(self.done)
        elif self.corpus.exists():
            raise InputError(f"{self.corpus} exists without a progress marker; pass --restart to replace it")
        else:
            self.corpus.touch()
            self._mark()

    def append(self, records: list[dict]) -> None:
        with self.corpus.open("ab") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        self.done.update(r["id"] for r in records)
        self._mark()

    def _mark(self) -> None:
        atomic_write(self.marker, json.dumps({"fingerprint": self.fingerprint, "records": len(self.done),
                                               "bytes": self.corpus.stat().st_size}, indent=1) + "\n")

    def rewrite(self, records: list[dict]) -> None:
        """Replace corpus.jsonl (finalised flags) and move the marker to its new length."""
        atomic_write(self.corpus, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._mark()


def _load_images(inputs: Inputs, items: list[Item]) -> list:
    """PIL images of `items` (None where the picture cannot be decoded)."""
    from PIL import Image

    out = []
    for item in items:
        try:
            if isinstance(item.image, int):
                out.append(inputs.dataset[item.image]["image"].convert("RGB"))
            else:
                with Image.open(item.image) as im:
                    out.append(im.convert("RGB"))
        except OSError:
            out.append(None)
    return out


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def read_progress(path: Path) -> dict:
    """The progress marker, checked against `Progress` (a damaged one is a `ReadBackError`)."""
    try:
        return read_json(path, Progress)
    except ReadBackError as exc:
        raise ReadBackError(f"{exc}; pass --restart to discard the corpus") from None


def read_jsonl(path: Path, schema: Any = dict[str, Any]) -> list[dict]:
    """The objects of a JSONL file this command wrote, split at "\\n" only: `json.dumps(ensure_ascii=False)`
    leaves U+2028, NEL and the like unescaped inside a record, where `str.splitlines` would cut it.
    Each is checked against `schema` (a damaged one is a `ReadBackError` naming `file:line`)."""
    try:
        return [parse(line, schema, f"{path}:{number}") for number, line in numbered_lines(path) if line]
    except ReadBackError as exc:
        raise ReadBackError(f"{exc}; pass --restart to discard the corpus") from None


def read_records(path: Path) -> list[dict]:
    """The records of a corpus.jsonl, each checked against `CorpusRecord`."""
    return read_jsonl(path, CorpusRecord)


def translate_batch(translator: Translator, inputs: Inputs, items: list[Item], *, num_beams: int, batch_size: int,
                    model: dict, rerank: dict | None = None) -> list[dict]:
    """Corpus records of `items`: translation, scores, option-independent flags. With `rerank`
    ({"method": "clip", "size", "beta"}) the translation is the candidate its image chooses, and
    the record says which (`nbest_index`; an image that cannot be decoded keeps the student's best)."""
    sources = [it.source for it in items]
    images = _load_images(inputs, items)
    nbest_index: list[int | None] = [None] * len(items)
    if rerank is None:
        translations = translator.translate(sources, num_beams=num_beams, batch_size=batch_size)
    else:
        reranked = translator.rerank_clip(sources, images, size=rerank["size"], beta=rerank["beta"],
                                          batch_size=batch_size)
        translations = reranked.translations
        nbest_index = [None if c < 0 else c for c in reranked.choice]
    truncated = translator.truncated(sources)
    scored = [i for i, (it, im) in enumerate(zip(items, images)) if im is not None and it.source]
    grounding: list[float | None] = [None] * len(items)
    source_score: list[float | None] = [None] * len(items)
    if scored:
        img = translator.image_embeddings([images[i] for i in scored], batch_size=batch_size)
        txt = translator.text_embeddings([translations[i] for i in scored], batch_size=batch_size)
        src = translator.source_embeddings([items[i].source for i in scored], batch_size=batch_size)
        for i, g, s in zip(scored, grounding_scores(img, txt).tolist(), grounding_scores(img, src).tolist()):
            grounding[i] = None if not translations[i] else g
            source_score[i] = s
    records = []
    for it, translation, im, g, s, cut, index in zip(items, translations, images, grounding, source_score, truncated,
                                                     nbest_index):
        records.append({
            "id": it.id, "image_id": it.image_id, "file_name": it.file_name, "lang": it.lang,
            "source": it.source, "translation": translation, "grounding": _rounded(g),
            "source_image_score": _rounded(s),
            "length_ratio": round(len(translation) / len(it.source), 6) if it.source else None,
            "flags": record_flags(it.source, translation, im is not None, cut),
            "provenance": it.provenance, **model, **({} if rerank is None else {"nbest_index": index}),
        })
    return records


def build_corpus(translator: Translator, inputs: Inputs, out: str | Path, *, src_lang: str, filters: Filters,
                 num_beams: int = 1, batch_size: int = 32, tmx: bool = False, restart: bool = False,
                 show_progress: bool = True, rerank: dict | None = None) -> dict:
    """Translate `inputs` into `out` (resuming), then write every derived file; return the summary.
    `rerank`: None, or {"method": "clip", "size": n-best size, "beta": weight of the image}."""
    out = Path(out)
    fingerprint = {**inputs.fingerprint, "run_id": translator.run_id, "model": translator.model_dir,
                   "num_beams": num_beams, "src_lang": src_lang, **({} if rerank is None else {"rerank": rerank})}
    writer = CorpusWriter(out, fingerprint, restart=restart)
    model = {"run_id": translator.run_id, "model": translator.model_dir}
    todo = [it for it in inputs.items if it.id not in writer.done]
    with tqdm(total=len(inputs.items), initial=len(inputs.items) - len(todo), desc="translating", unit="caption",
              disable=not show_progress) as bar:
        for s in range(0, len(todo), batch_size):
            batch = todo[s:s + batch_size]
            writer.append(translate_batch(translator, inputs, batch, num_beams=num_beams, batch_size=batch_size,
                                          model=model, rerank=rerank))
            bar.update(len(batch))
    atomic_write(out / INPUT_REPORT, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in inputs.report))
    records = finalize(read_records(writer.corpus), filters)
    writer.rewrite(records)
    pairs = translator.system.pair_lexicon
    word_pairs = ({"pairs": len(pairs.pairs), "size": pairs.size, "force": pairs.force}
                  if rerank is None and pairs is not None and pairs.size else None)
    return write_outputs(records, out, src_lang=src_lang, filters=filters, tmx=tmx, inputs=inputs,
                         resumed=writer.resumed, model=model, num_beams=num_beams, rerank=rerank,
                         word_pairs=word_pairs)
