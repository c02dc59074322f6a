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
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from data_prep.errors import InputError
from data_prep.text_files import numbered_lines
from eval.retrieval import grounding_scores
from translate.flags import Filters, finalize, record_flags
from translate.inputs import Inputs, Item
from translate.outputs import atomic_write, write_outputs
from translate.translator import Translator

CORPUS = "corpus.jsonl"
PROGRESS = "progress.json"
INPUT_REPORT = "input_report.jsonl"


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
            progress = json.loads(self.marker.read_text())
            if not self.corpus.is_file():
                raise InputError(f"{self.marker} exists but {self.corpus} does not; pass --restart")
            if progress["fingerprint"] != fingerprint:
                raise InputError(f"{out} holds a corpus of another run or input "
                                 f"({progress['fingerprint']}); pass --restart to replace it, or another --out")
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


def read_records(path: Path) -> list[dict]:
    """The records of a corpus.jsonl, split at "\\n" only: `json.dumps(ensure_ascii=False)` leaves
    U+2028, NEL and the like unescaped inside a record, where `str.splitlines` would cut it."""
    return [json.loads(line) for _, line in numbered_lines(path) if line]


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
    return write_outputs(records, out, src_lang=src_lang, filters=filters, tmx=tmx, inputs=inputs,
                         resumed=writer.resumed, model=model, num_beams=num_beams, rerank=rerank)
