"""`python -m eval <command>`: command-line evaluation.

    python -m eval score --hyp H.txt --ref R.txt [--ref R2.txt ...] [--src S.txt]
        [--images DIR|LIST.txt --clip NAME --clip-pretrained PATH]
        [--metrics bleu,chrf,bertscore,lisascore,retrieval] [--bertscore-model DIR --num-layers L]
        [--idf] [--bootstrap N] [--seed S] [--compare BASELINE.txt] --out S.json
    python -m eval report RUN [RUN ...] --out report.html   (also writes report.md, report.json)
    python -m eval analyze RUN [RUN ...] [--out DIR] [--parts cka,probes,movement,tokens,health]
    python -m eval ablation --lang es --out ABLATION [--quick] [--data-dir DATASET]

Text files have one sentence per line, line-aligned; several --ref files are reference
streams (as in sacreBLEU). Each command is a (add_arguments, run) pair in COMMANDS.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.ablation import add_ablation_arguments, run_ablation
from eval.analysis import add_analyze_arguments, run_analyze
from eval.report import add_report_arguments, run_report

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_lines(path: str) -> list[str]:
    """Lines of a UTF-8 text file, trailing whitespace removed (as sacreBLEU reads them)."""
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: {path} does not exist (expected a text file, one sentence per line)")
    return [line.rstrip() for line in p.read_text(encoding="utf-8").splitlines()]


def image_paths(spec: str) -> list[str]:
    """A directory (its image files, sorted by name) or a text file listing image paths
    (relative paths are taken from the list's folder)."""
    p = Path(spec)
    if p.is_dir():
        return sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if p.is_file():
        return [str(p.parent / line) for line in read_lines(spec) if line]
    raise SystemExit(f"error: --images {spec} is neither a directory of images nor a file "
                     "listing one image path per line")


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    from eval.score import DEFAULT_METRICS, METRICS

    p.add_argument("--hyp", required=True, help="system output, one sentence per line")
    p.add_argument("--ref", required=True, action="append",
                   help="reference file, line-aligned; repeat for several reference streams")
    p.add_argument("--src", help="source sentences (recorded next to each hypothesis)")
    p.add_argument("--compare", metavar="BASELINE",
                   help="another system's output: adds paired bootstrap tests against it")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated, from {','.join(METRICS)} (default: %(default)s)")
    p.add_argument("--target-lang", default="en", help="target language (zh: sacreBLEU's zh tokenizer)")
    p.add_argument("--bertscore-model", metavar="DIR",
                   help="local model directory for BERTScore/LiSAScore (default: all-MiniLM-L6-v2)")
    p.add_argument("--num-layers", type=int, help="layer of --bertscore-model to use")
    p.add_argument("--idf", action="store_true", help="idf weighting (document frequency over references)")
    p.add_argument("--bertscore-baseline", metavar="FILE", help="bert-score baseline file for rescaling")
    p.add_argument("--matching", default="lsa",
                   help="LiSAScore matching: greedy, lsa or an approximation (default: lsa)")
    p.add_argument("--images", metavar="DIR|LIST",
                   help="one image per hypothesis: a folder (sorted by name) or a list file")
    p.add_argument("--clip", default="ViT-B-32", help="open_clip model name for retrieval")
    p.add_argument("--clip-pretrained", metavar="PATH", help="CLIP weights (local file) for retrieval")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: none)")
    p.add_argument("--seed", type=int, default=12345, help="bootstrap seed (sacreBLEU's default)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", help="cpu / cuda (default: cuda when available)")
    p.add_argument("--out", required=True, help="where to write the JSON scores")


def run_score(args: argparse.Namespace) -> int:
    from eval.references import streams_to_lists
    from eval.score import METRICS, score

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise SystemExit(f"error: unknown metric(s) {unknown}; choose from {','.join(METRICS)}")
    hyps = read_lines(args.hyp)
    files = {args.hyp: hyps, **{r: read_lines(r) for r in args.ref}}
    extra = {"sources": args.src, "baseline_hyps": args.compare}
    for key, path in extra.items():
        if path is not None:
            files[path] = extra[key] = read_lines(path)
    counts = {path: len(lines) for path, lines in files.items()}
    if len(set(counts.values())) != 1:
        raise SystemExit(f"error: files must have the same number of lines: {counts}")
    images = clip = None
    if "retrieval" in metrics:
        if args.images is None:
            raise SystemExit("error: the retrieval metric needs --images")
        images = image_paths(args.images)
        if len(images) != len(hyps):
            raise SystemExit(f"error: {len(images)} images for {len(hyps)} hypotheses in {args.images}")
        from models.clip_loading import load_clip

        clip = load_clip(args.clip, args.clip_pretrained)
    try:
        result = score(hyps, streams_to_lists([files[r] for r in args.ref]), metrics,
                       target_lang=args.target_lang, bootstrap=args.bootstrap, seed=args.seed,
                       model_type=args.bertscore_model, num_layers=args.num_layers, idf=args.idf,
                       baseline_path=args.bertscore_baseline, matching=args.matching,
                       batch_size=args.batch_size, device=args.device, images=images, clip=clip,
                       **{k: v for k, v in extra.items() if v is not None})
    except (ValueError, FileNotFoundError) as e:  # bad options or inputs: a message, not a traceback
        raise SystemExit(f"error: {e}") from e
    result["files"] = {"hyp": args.hyp, "ref": args.ref, "src": args.src, "compare": args.compare,
                       "images": args.images}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, m in result["metrics"].items():
        print(f"{name}: {_summary(name, m)}")
    print(f"wrote {out}")
    return 0


def _summary(name: str, m: dict) -> str:
    if "score" in m:
        ci = m.get("ci")
        return f"{m['score']:.2f}" + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "")
    if "corpus" in m:
        return " ".join(f"{k}={v:.4f}" for k, v in m["corpus"].items())
    if "translation" in m:
        t = m["translation"]
        return f"t2i R@1={t['t2i']['R@1']:.3f} i2t R@1={t['i2t']['R@1']:.3f} grounding={t['grounding']:.3f}"
    return ""


COMMANDS = {
    "score": ("score hypotheses against references", add_score_arguments, run_score),
    "ablation": ("does grounding help? a grid of training runs (parallel fraction × system × seed) compared "
                 "with token cross-entropy only, with CIs (docs/ablation.md)", add_ablation_arguments, run_ablation),
    "report": ("HTML/Markdown/JSON quality report of one or more run directories",
               add_report_arguments, run_report),
    "analyze": ("CKA, probes, parameter movement, token usage and embedding health of trained runs",
                add_analyze_arguments, run_analyze),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
