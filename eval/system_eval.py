"""End-of-run evaluation of a trained `GroundedSystem` on the test split, written to `RUN/eval/`.

One test sentence per (image, source caption): the student's translation (greedy `generate()`)
is scored against the human translation (`parallel`) with every corpus metric of `eval.score`,
paired against the untrained student (same initialisation, no training) as the baseline, and
retrieved against its image in CLIP space. Two further views: `grounded` — the student's
differentiable CLIP embedding (the path the loss trains) against the image, in-batch R@1 in
batches of 32, trained vs untrained — and `probe`, the test-time linear LM head on the frozen
decoder states (fit on validation, scored on test). File layout: docs/architecture.md.
"""
from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F

from eval.concept_scores import COLUMN, TrainingConcepts, concept_section, summary_line
from eval.probe import probe
from eval.retrieval import in_batch_recall_at_1
from eval.score import score
from eval.stats import DEFAULT_SEED
from models.clip_batches import encode_in_batches

METRICS = ("bleu", "chrf", "bertscore", "lisascore", "retrieval")


def decoder_states(system, sources: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """`[N, S-1, d]` decoder states behind CLIP positions 1..S-1 (zeros after decoding stopped)."""
    length = system.context_length - 1

    def states(part: Sequence[str]) -> torch.Tensor:
        hidden = system.splice_decode_sources(part).hidden
        return F.pad(hidden, (0, 0, 0, length - hidden.shape[1]))

    return encode_in_batches(states, sources, batch_size=batch_size)


def test_sentences(ds, rows: Sequence[int]) -> list[dict]:
    """One entry per (usable row, non-empty source caption): image_id, row, source, references
    (the caption's human translation; every English caption of the image when it has none), and
    `concepts` (the ids it names) when the dataset has them."""
    columns = ["image_id", "source", "parallel", "english", *([COLUMN] if COLUMN in ds.column_names else [])]
    out = []
    for row, item in zip(rows, ds.select(rows).select_columns(columns)):
        english = [e for e in item["english"] if e.strip()]
        named = item.get(COLUMN) or [None] * len(item["source"])
        for source, parallel, ids in zip(item["source"], item["parallel"], named):
            if source.strip():
                out.append({"image_id": item["image_id"], "row": row, "source": source,
                            "references": [parallel] if parallel.strip() else english,
                            "has_translation": bool(parallel.strip()), **({"concepts": ids} if ids is not None else {})})
    return out


def grounded_retrieval(system, image_emb: torch.Tensor, sources: list[str]) -> dict:
    """In-batch R@1 (batches of 32) between images `image_emb` and the student's differentiable
    embedding of one caption each (`sources`, aligned)."""
    r = in_batch_recall_at_1(image_emb, system.student_features(sources))
    return {"image_to_student": r["a2b"], "student_to_image": r["b2a"], "chance": r["chance"], "batches": r["batches"]}


def run_probes(system, dsd, scans, test: list[dict], protocols: Sequence[str] = ("heldout",),
               epochs: int = 3) -> dict[str, dict]:
    """The test-time linear LM head on frozen decoder states, per protocol (docs/design.md §5): `heldout`
    fits on the validation split's human-translated captions and scores `test`; `online` trains
    on the test pass itself (prequential). Test states are computed once for all protocols."""
    valid = [s for s in test_sentences(dsd["validation"], scans["validation"].usable) if s["has_translation"]] \
        if "heldout" in protocols else []
    test = [s for s in test if s["has_translation"]]

    def states_and_labels(items):
        return (decoder_states(system, [s["source"] for s in items]),
                system.labels_for([s["references"][0] for s in items]))

    test_x = test_y = None
    out = {}
    for protocol in protocols:
        if not test or (protocol == "heldout" and not valid):
            out[protocol] = {"skipped": "needs human translations in the "
                             + ("validation and test splits" if protocol == "heldout" else "test split")}
            continue
        if test_x is None:
            test_x, test_y = states_and_labels(test)
        fit = dict(zip(("fit_states", "fit_labels"), states_and_labels(valid))) if protocol == "heldout" else {}
        result = probe(test_x, test_y, vocab_size=system.student.config.decoder_vocab_size, protocol=protocol,
                       epochs=epochs, decode=system.vocab.decode, **fit)
        out[protocol] = {"fit_sentences": len(valid), **result} if protocol == "heldout" else result
    return out


def run_probe(system, dsd, scans, test: list[dict]) -> dict:
    """Heldout protocol: fit the linear LM head on validation decoder states, score on test."""
    return run_probes(system, dsd, scans, test, ("heldout",))["heldout"]


def evaluate_system(system, dsd, scans, preprocess, run, *, untrained=None, probe: bool = True, bootstrap: int = 1000,
                    show_progress: bool = True, clip_weights: str | None = None,
                    concepts: TrainingConcepts | None = None) -> str:
    """Evaluate on the test split, write `RUN/eval/`, return a one-paragraph summary. `concepts`:
    what concept accuracy needs from training (None: the dataset's captions carry no concept ids)."""
    system.eval()
    ds = dsd["test"]
    sentences = test_sentences(ds, scans["test"].usable)
    sources = [s["source"] for s in sentences]
    refs = [s["references"] for s in sentences]
    hyps = system.translate(sources)
    # encoded bytes only (decoded 64 at a time by the retrieval metric): decoding the whole split at once
    # would hold ~0.9 MB per COCO-size image in memory
    encoded = ds.select(scans["test"].usable).cast_column("image", datasets.Image(decode=False))["image"]
    image_of_row = {row: io.BytesIO(image["bytes"]) if image["bytes"] else image["path"]
                    for row, image in zip(scans["test"].usable, encoded)}
    images = [image_of_row[s["row"]] for s in sentences]
    translated = all(s["has_translation"] for s in sentences)
    metrics = METRICS if translated else ("retrieval",)
    common = dict(metrics=metrics, sources=sources, bootstrap=bootstrap, images=images,
                  clip=(system.clip, preprocess, system.clip_tokenizer))
    result = {"run_id": run.root.name, "split": "test", "clip_weights": clip_weights,
              "references": "parallel (human translations)" if translated else "English captions (retrieval only)"}
    untrained_hyps = untrained.translate(sources) if untrained is not None else None
    main = score(hyps, refs, baseline_hyps=untrained_hyps if bootstrap > 0 else None, **common)
    if untrained_hyps is not None:  # scored once: by the paired test, or on its own without bootstrap
        base = main.pop("baseline", None) or score(untrained_hyps, refs, **common)
        result["untrained"] = {"n_sentences": base["n_sentences"], "metrics": base["metrics"],
                               "hypotheses": untrained_hyps}
    for row, s in zip(main["sentences"], sentences):
        row["image_id"] = s["image_id"]
    result = {**main, **result}
    if concepts is not None:
        result["concepts"], named = concept_section(hyps, sources, [s["concepts"] for s in sentences], concepts,
                                                    untrained_hyps=untrained_hyps, bootstrap=bootstrap,
                                                    seed=(main["bootstrap"] or {}).get("seed", DEFAULT_SEED))
        for row, ids in zip(result["sentences"], named):
            row["concepts"] = ids
    first = {}  # each test image with its first caption
    for s in sentences:
        first.setdefault(s["row"], s["source"])
    image_emb = system.image_features(ds.select(list(first))["image"])
    result["grounded"] = {name: grounded_retrieval(model, image_emb, list(first.values()))
                          for name, model in (("trained", system), ("untrained", untrained)) if model is not None}
    if probe:
        result["probe"] = run_probe(system, dsd, scans, sentences)

    out = Path(run.eval)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(result, indent=1, ensure_ascii=False, default=float) + "\n")
    for name, lines in (("src.txt", sources), ("hyp.txt", hyps), ("ref.txt", [r[0] for r in refs])):
        (out / name).write_text("".join(line.replace("\n", " ") + "\n" for line in lines))
    if untrained_hyps is not None:
        (out / "untrained_hyp.txt").write_text("".join(h.replace("\n", " ") + "\n" for h in untrained_hyps))
    return summarize(result)


def summarize(result: dict) -> str:
    """The headline numbers of a `scores.json`."""
    m = result["metrics"]
    lines = [f"test ({result['n_sentences']} sentences):"]
    ret = m["retrieval"]["translation"]["in_batch"]
    line = (f"  translation→image R@1 in batches of 32: {ret['b2a']:.3f} (chance {ret['chance']:.3f}, "
            f"oracle {m['retrieval']['oracle']['in_batch']['b2a']:.3f}")
    if "untrained" in result:
        line += f", untrained {result['untrained']['metrics']['retrieval']['translation']['in_batch']['b2a']:.3f}"
    lines.append(line + ")")
    g = result["grounded"]
    lines.append(f"  student embedding→image R@1: {g['trained']['student_to_image']:.3f}"
                 + (f" (untrained {g['untrained']['student_to_image']:.3f})" if "untrained" in g else ""))
    if "bleu" in m:
        base = result.get("untrained", {}).get("metrics", {})
        for label, value in (("BLEU", lambda x: x["bleu"]["score"]), ("chrF", lambda x: x["chrf"]["score"]),
                             ("BERTScore F", lambda x: x["bertscore"]["corpus"]["F"]),
                             ("LiSAScore F", lambda x: x["lisascore"]["corpus"]["F"])):
            lines.append(f"  {label}: {value(m):.3f}" + (f" (untrained {value(base):.3f})" if base else ""))
    if "concepts" in result:
        lines.append(summary_line(result["concepts"]))
    if "ce" in result.get("probe", {}):
        p = result["probe"]
        lines.append(f"  probe head CE {p['ce']:.3f} nats (uniform {p['uniform_ce']:.3f}), token accuracy "
                     f"{p['token_accuracy']:.3f}")
    return "\n".join(lines)
