"""`python -m eval <command>`: command-line evaluation.

    python -m eval score --hyp H.txt --ref R.txt [--ref R2.txt ...] [--src S.txt]
        [--images DIR|LIST.txt --clip NAME --clip-pretrained PATH]
        [--metrics bleu,chrf,bertscore,lisascore,retrieval] [--bertscore-model DIR --num-layers L]
        [--idf] [--bootstrap N] [--seed S] [--compare BASELINE.txt] --out S.json
    python -m eval report RUN [RUN ...] --out report.html   (also writes report.md, report.json)
    python -m eval analyze RUN [RUN ...] [--out DIR] [--parts cka,probes,movement,tokens,health,tail]
    python -m eval ablation --lang es --out ABLATION [--quick] [--data-dir DATASET]
    python -m eval lexicon --data-dir DATASET [--fraction P] [--seed S] [--run RUN] [--out FILE.json]

Text files have one sentence per line, line-aligned, read exactly as the sacreBLEU CLI reads them
(a line ends at "\\n" only; `data_prep.text_files`); several --ref files are reference streams (as
in sacreBLEU). Each command is a (add_arguments, run) pair in COMMANDS; bad input ends with one
line `error: ...` and exit code 2 (`data_prep.errors`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from data_prep.errors import (Artefact, InputError, Parser, input_file, non_negative_int, output_file, positive_int,
                              run_command, torch_device)
from data_prep.text_files import read_lines, read_list
from eval.ablation import add_ablation_arguments, run_ablation
from eval.analysis import add_analyze_arguments, run_analyze
from eval.lexicon_command import add_lexicon_arguments, run_lexicon
from eval.report import add_report_arguments, run_report

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_sentences(path: str, option: str) -> list[str]:
    """The lines of a text file exactly as the sacreBLEU CLI reads them (`data_prep.text_files`:
    split at "\\n" only, trailing whitespace removed, a BOM kept as sacreBLEU keeps it, with a warning)."""
    lines = read_lines(input_file(path, option), keep_bom=True)
    if lines and lines[0].startswith("\ufeff"):
        print(f"warning: {path} starts with a UTF-8 byte-order mark; it stays part of line 1, as sacreBLEU "
              "reads it", file=sys.stderr)
    return lines


def image_paths(spec: str) -> list[str]:
    """A directory (its image files, sorted by name) or a text file listing image paths
    (relative paths are taken from the list's folder)."""
    p = Path(spec)
    if p.is_dir():
        return sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if p.is_file():
        return [str(p.parent / line) for line in read_list(p)]
    raise InputError(f"--images {spec} is neither a directory of images nor a file listing one image path per line")


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
    p.add_argument("--num-layers", type=positive_int, help="layer of --bertscore-model to use")
    p.add_argument("--idf", action="store_true", help="idf weighting (document frequency over references)")
    p.add_argument("--bertscore-baseline", metavar="FILE", help="bert-score baseline file for rescaling")
    p.add_argument("--matching", default="lsa",
                   help="LiSAScore matching: greedy, lsa or an approximation (default: lsa)")
    p.add_argument("--images", metavar="DIR|LIST",
                   help="one image per hypothesis: a folder (sorted by name) or a list file")
    p.add_argument("--clip", default="ViT-B-32", help="open_clip model name for retrieval")
    p.add_argument("--clip-pretrained", metavar="PATH", help="CLIP weights (local file) for retrieval")
    p.add_argument("--bootstrap", type=non_negative_int, default=1000, help="bootstrap resamples (0: none)")
    p.add_argument("--seed", type=non_negative_int, default=12345, help="bootstrap seed (sacreBLEU's default)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="sentences per batch (default: 64)")
    p.add_argument("--device", type=torch_device, help="cpu / cuda (default: cuda when available)")
    p.add_argument("--out", required=True, help="where to write the JSON scores (a score file written here is "
                                                "replaced; any other existing file only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a score file")


def is_score_file(path: Path) -> bool:
    """A JSON file written by `eval score` (its top-level keys), which a new score may replace."""
    from eval.score import SCORE_KEYS

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and SCORE_KEYS <= data.keys()


SCORES = Artefact("a score file written by python -m eval score", is_score_file)


def run_score(args: argparse.Namespace) -> int:
    from eval.references import streams_to_lists
    from data_prep.memory import require_memory
    from eval.score import METRICS, score
    from eval.stats import bootstrap_bytes

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown or not metrics:
        raise InputError(f"--metrics: unknown or no metric(s) {unknown}; choose from {','.join(METRICS)}")
    named = [("--hyp", args.hyp), *(("--ref", r) for r in args.ref),
             *((option, path) for option, path in (("--src", args.src), ("--compare", args.compare)) if path)]
    inputs = {option: [path for o, path in named if o == option] for option, _ in named} | {"--images": args.images}
    out = output_file(args.out, "--out", inputs=inputs, artefact=SCORES, overwrite=args.overwrite)
    lines = {path: read_sentences(path, option) for option, path in named}
    _check_aligned(named, lines)
    hyps = lines[args.hyp]
    require_memory(bootstrap_bytes(args.bootstrap, len(hyps)), f"--bootstrap {args.bootstrap} on {len(hyps)} "
                   "sentences", "use fewer resamples (1000, the default, is sacreBLEU's)")
    extra = {"sources": args.src, "baseline_hyps": args.compare}
    extra = {key: lines[path] for key, path in extra.items() if path is not None}
    images = clip = None
    if "retrieval" in metrics:
        if args.images is None:
            raise InputError("the retrieval metric needs --images")
        images = image_paths(args.images)
        if len(images) != len(hyps):
            raise InputError(f"--images {args.images} has {len(images)} images but --hyp {args.hyp} has "
                             f"{len(hyps)} lines")
        clip = _load_clip(args.clip, args.clip_pretrained)
    try:
        result = score(hyps, streams_to_lists([lines[r] for r in args.ref]), metrics,
                       target_lang=args.target_lang, bootstrap=args.bootstrap, seed=args.seed,
                       model_type=args.bertscore_model, num_layers=args.num_layers, idf=args.idf,
                       baseline_path=args.bertscore_baseline, matching=args.matching,
                       batch_size=args.batch_size, device=args.device, images=images, clip=clip, **extra)
    except ValueError as e:  # options the library refuses (e.g. an unknown --matching): a message
        raise InputError(str(e)) from e
    result["files"] = {"hyp": args.hyp, "ref": args.ref, "src": args.src, "compare": args.compare,
                       "images": args.images}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=out.parent, prefix=f".{out.name}.", delete=False) as f:
        f.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    os.replace(f.name, out)  # never a half-written score file
    for name, m in result["metrics"].items():
        print(f"{name}: {_summary(name, m)}")
    print(f"wrote {out}")
    return 0


def _check_aligned(named: list[tuple[str, str]], lines: dict[str, list[str]]) -> None:
    """Every file must have --hyp's number of lines; the message names each file and its count."""
    hyp_option, hyp = named[0]
    wrong = [(option, path) for option, path in named[1:] if len(lines[path]) != len(lines[hyp])]
    if wrong:
        counts = ", ".join(f"{option} {path} has {len(lines[path])}" for option, path in wrong)
        raise InputError(f"{hyp_option} {hyp} has {len(lines[hyp])} lines but {counts}: the files must be "
                         "line-aligned (lines end at \\n only, as sacreBLEU reads them)")


def _load_clip(name: str, pretrained: str | None) -> tuple:
    """The open_clip model for retrieval; a weights file that cannot be loaded is an input error naming it."""
    from models.clip_loading import load_clip

    if pretrained is not None:
        input_file(pretrained, "--clip-pretrained")
    try:
        return load_clip(name, pretrained)
    except (RuntimeError, ValueError, KeyError) as exc:
        what = f"--clip-pretrained {pretrained}" if pretrained else f"--clip {name}"
        raise InputError(f"{what}: cannot be loaded as open_clip {name} ({str(exc).splitlines()[0]})") from None


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
    "lexicon": ("precision at 1 of the lexicon a long-tail world's training pictures induce, by concept frequency "
                "(docs/lexicon.md)", add_lexicon_arguments, run_lexicon),
}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m eval", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return run_command(lambda: COMMANDS[args.command][2](args))


if __name__ == "__main__":
    sys.exit(main())
