"""Test-time grounding measured: does `translate --rerank clip` translate better than the student alone?

On a trained run's test split (every caption with its image and its human translation), the
systems are greedy decoding (the default), beam search of width K, and CLIP reranking of the
K-best list (`Translator.rerank_clip`) for each beta. Per system: chrF and BLEU against the human
translations (sacreBLEU through `eval.score`, with the paired bootstrap difference against greedy),
translation→image in-batch R@1 (batches of 32, one caption per image: `eval.retrieval`, as the
run's own evaluation reports it), the mean CLIP image–translation cosine, and how many
translations differ from the student's best candidate. On a world whose captions carry concept ids
(`source_concepts`, the long-tail world), also the unseen- and seen-concept accuracy of every system
(`eval.concept_scores.concept_section`, as the run's evaluation counts it, with the seen concepts of
the run's own hashed subset of human translations) and the paired bootstrap difference against
greedy. Written to benchmarks/results/rerank_quality.json (docs/translate.md, "Reranking with the image").

    python benchmarks/rerank_quality.py --run RUN [--sizes 8] [--betas 0.1,0.2,0.5,1.0] [--out FILE]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from data_prep.collate import scan_usable
from data_prep.errors import InputError, Parser, non_negative_float, positive_int, run_command
from data_prep.load import load_dataset_dir
from eval.concept_scores import COLUMN, TrainingConcepts, concept_section
from eval.concepts import KINDS
from eval.score import score
from eval.system_eval import test_sentences
from translate.translator import Translator, run_config

RESULTS = Path(__file__).resolve().parent / "results" / "rerank_quality.json"


def _list(kind):
    """argparse type: a comma-separated list, each item checked by the argparse type `kind`."""
    def parse(text: str) -> list:
        return [kind(x) for x in text.split(",") if x]
    return parse


def training_concepts(data: str, train, config: dict) -> TrainingConcepts | None:
    """What concept accuracy needs from the run's training, built as its evaluation builds it: the
    usable training rows, the hashed subset of their human translations at the run's
    `--parallel-fraction` and `--seed` (`TargetTable.from_dataset`); None without concept ids."""
    if COLUMN not in train.column_names:
        return None
    rows = scan_usable(train, need_english=1, show_progress=False).usable
    try:
        return TrainingConcepts.at_fraction(data, train, rows, config.get("parallel_fraction"),
                                            int(config.get("seed", 0)))
    except ValueError as exc:  # fewer translations in the dataset than the run's fraction
        raise InputError(str(exc)) from None


def concept_columns(hyps: list[str], greedy: list[str] | None, sentences: list[dict], training: TrainingConcepts,
                    bootstrap: int, seed: int) -> dict:
    """Per kind mentions, correct and accuracy of `hyps` (`concept_section`, as a run's evaluation
    counts them); with `greedy`, the paired bootstrap difference of the unseen kind against it (the
    resamples `eval.score` draws with the same `bootstrap` and `seed`)."""
    section, _ = concept_section(hyps, [s["source"] for s in sentences], [s["concepts"] for s in sentences],
                                 training, untrained_hyps=greedy, bootstrap=bootstrap, seed=seed)
    out = {kind: {k: section[kind][k] for k in ("mentions", "correct", "accuracy")} for kind in KINDS}
    if greedy is not None and "unseen" in section.get("paired", {}):
        out["paired_vs_greedy"] = {"unseen": section["paired"]["unseen"]}
    return out


def measure(run: Path, sizes: list[int], betas: list[float], bootstrap: int, device: str | None) -> dict:
    translator = Translator.from_run(run, device=device or "cpu")
    translator.system.pair_lexicon = None  # greedy and beam search as named, not reranked by the run's word pairs
    config = run_config(run)
    data = config["data_path"]
    dsd = load_dataset_dir(data)
    ds = dsd["test"]
    scan = scan_usable(ds, need_english=1, show_progress=False)  # the test sentences of the run's evaluation
    sentences = [s for s in test_sentences(ds, scan.usable) if s["has_translation"]]
    training = training_concepts(data, dsd["train"], config)
    sources = [s["source"] for s in sentences]
    refs = [s["references"] for s in sentences]
    image_of_row = {row: ds[row]["image"].convert("RGB") for row in sorted({s["row"] for s in sentences})}
    images = [image_of_row[s["row"]] for s in sentences]  # one object per image: one gallery entry
    clip = (translator.system.clip, translator.system.preprocess, translator.system.clip_tokenizer)

    greedy = translator.translate(sources)
    systems = {"greedy": {"hyps": greedy, "changed": 0}}
    timings = {}
    for size in sizes:
        start = time.perf_counter()
        systems[f"beam {size}"] = {"hyps": translator.translate(sources, num_beams=size), "changed": 0}
        timings[f"beam {size}"] = time.perf_counter() - start
        for beta in betas:
            start = time.perf_counter()
            reranked = translator.rerank_clip(sources, images, size=size, beta=beta)
            timings[f"rerank {size} beta {beta}"] = time.perf_counter() - start
            systems[f"rerank clip, n-best {size}, beta {beta}"] = {
                "hyps": reranked.translations, "changed": sum(c > 0 for c in reranked.choice),
                "size": size, "beta": beta}
    rows, retrieval = {}, {}
    for name, system in systems.items():
        result = score(system["hyps"], refs, ("bleu", "chrf", "retrieval"), images=images, clip=clip,
                       bootstrap=bootstrap, baseline_hyps=None if name == "greedy" else greedy)
        m = result["metrics"]
        rows[name] = {
            "chrf": m["chrf"]["score"], "bleu": m["bleu"]["score"],
            "r1_in_batch": m["retrieval"]["translation"]["in_batch"]["b2a"],
            "grounding": m["retrieval"]["translation"]["grounding"],
            "changed_from_student_best": system["changed"],
            **{k: system[k] for k in ("size", "beta") if k in system},
            **({"paired_vs_greedy": {k: result["paired"][k] for k in ("chrf", "bleu")}} if "paired" in result else {}),
            "hypotheses": system["hyps"],
        }
        if training is not None:
            rows[name]["concepts"] = concept_columns(system["hyps"], None if name == "greedy" else greedy, sentences,
                                                     training, bootstrap, result["bootstrap"]["seed"])
        retrieval = m["retrieval"]  # the oracle row and chance are the same for every system
    concepts = {} if training is None else {"concepts": {
        "parallel_fraction": config.get("parallel_fraction"), "seed": int(config.get("seed", 0)),
        "seen_concepts": len(training.seen), "translated_captions": training.translated_captions,
        "inventory": len(training.inventory.concepts)}}
    return {"run": run.name, "data": Path(data).name, "split": "test", "n_sentences": len(sentences),
            "n_images": len(image_of_row), "test_rows_skipped": dict(scan.skipped),
            "references": "parallel (human translations)", **concepts,
            "oracle_r1_in_batch": retrieval["oracle"]["in_batch"]["b2a"],
            "oracle_grounding": retrieval["oracle"]["grounding"],
            "chance_r1_in_batch": retrieval["translation"]["in_batch"]["chance"], "bootstrap": bootstrap,
            "seconds": timings, "torch_threads": torch.get_num_threads(), "systems": rows}


def table(result: dict) -> str:
    with_concepts = "concepts" in result
    extra = " unseen concepts | Δ unseen vs greedy [95% CI] | seen concepts |" if with_concepts else ""
    lines = ["| system | chrF | Δ chrF vs greedy [95% CI] | BLEU | Δ BLEU [95% CI] | R@1 (in-batch 32) | grounding | "
             "changed |" + extra, "|---|---|---|---|---|---|---|---|" + "---|" * (3 * with_concepts)]
    for name, r in result["systems"].items():
        delta = {k: (f"{p['delta']:+.1f} [{p['delta_low']:+.1f}, {p['delta_high']:+.1f}]" if p else "–")
                 for k, p in ((k, r.get("paired_vs_greedy", {}).get(k)) for k in ("chrf", "bleu"))}
        line = (f"| {name} | {r['chrf']:.1f} | {delta['chrf']} | {r['bleu']:.1f} | {delta['bleu']} | "
                f"{r['r1_in_batch']:.3f} | {r['grounding']:.3f} | {r['changed_from_student_best']} |")
        if with_concepts:
            c = r["concepts"]
            p = c.get("paired_vs_greedy", {}).get("unseen")
            line += (f" {_accuracy(c['unseen'])} | "
                     + (f"{p['delta']:+.3f} [{p['delta_low']:+.3f}, {p['delta_high']:+.3f}]" if p else "–")
                     + f" | {_accuracy(c['seen'])} |")
        lines.append(line)
    lines.append(f"| human translation (oracle) | 100 | | 100 | | {result['oracle_r1_in_batch']:.3f} | "
                 f"{result['oracle_grounding']:.3f} | |" + " | | |" * with_concepts)
    return "\n".join(lines)


def _accuracy(kind: dict) -> str:
    """`correct/mentions = accuracy` of one concept kind ("no mentions" without any)."""
    return f"{kind['correct']}/{kind['mentions']} = {kind['accuracy']:.3f}" if kind["mentions"] else "no mentions"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python benchmarks/rerank_quality.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="a trained run directory (holds model/)")
    parser.add_argument("--sizes", type=_list(positive_int), default=[8],
                        help="n-best sizes, comma-separated (default 8)")
    parser.add_argument("--betas", type=_list(non_negative_float), default=[0.1, 0.2, 0.5, 1.0],
                        help="weights of the image score, comma-separated (default 0.1,0.2,0.5,1.0)")
    parser.add_argument("--bootstrap", type=positive_int, default=1000, help="paired bootstrap resamples")
    parser.add_argument("--device", help="torch device (default cpu)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)

    def command() -> int:
        result = measure(args.run, args.sizes, args.betas, args.bootstrap, args.device)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        print(table(result))
        print(f"written to {args.out}")
        return 0
    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
