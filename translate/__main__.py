"""`python -m translate text|corpus`: translate sentences, or build a parallel corpus from captioned
images, with a run directory written by `accelerate launch train.py --out RUN` (docs/translate.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

TEXT_EPILOG = """examples:
  python -m translate text --run RUN "una casa roja junto al mar" "dos perros"
  python -m translate text --run RUN --file sentences.es --out sentences.en --beams 4
  echo "un gato negro" | python -m translate text --run RUN
Output: one line per input line, in order (an empty input line gives an empty output line)."""

CORPUS_EPILOG = """examples:
  python -m translate corpus --run RUN --data DATASET_DIR --split test --out corpus_out
  python -m translate corpus --run RUN --images photos/ --captions captions.jsonl --src-lang quz \\
      --min-grounding 0.2 --dedupe --tmx --out corpus_out
captions file: JSONL, CSV or TSV with columns file_name, caption (optional image_id, lang);
file_name is relative to --images.
Outputs in OUT: corpus.jsonl, corpus.<src>, corpus.en, corpus.tsv, [corpus.tmx], input_report.jsonl,
summary.json, summary.md, grounding_hist.png, length_ratio_hist.png. Rerunning the same command
after an interruption resumes where it stopped."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m translate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    text = sub.add_parser("text", help="translate sentences (arguments, --file or stdin)", epilog=TEXT_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="Translate sentences into English with a trained run's student.")
    text.add_argument("--run", required=True, type=Path, help="run directory (holds model/)")
    text.add_argument("texts", nargs="*", help="sentences to translate; '-' or none (without --file) reads stdin")
    text.add_argument("--file", type=Path, help="UTF-8 file with one sentence per line")
    _common(text)
    text.add_argument("--out", type=Path, help="write the translations here (default: print them)")

    corpus = sub.add_parser("corpus", help="build a scored parallel corpus from captioned images",
                            epilog=CORPUS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Translate the captions of images into a scored, filterable parallel "
                                        "corpus (resumable).")
    corpus.add_argument("--run", required=True, type=Path, help="run directory (holds model/)")
    source = corpus.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a dataset directory written by `python -m data_prep`")
    source.add_argument("--images", type=Path, help="image folder (with --captions)")
    corpus.add_argument("--split", default="test", help="split of --data (default: test)")
    corpus.add_argument("--captions", type=Path, help="JSONL/CSV/TSV captions file (with --images)")
    corpus.add_argument("--out", required=True, type=Path, help="output folder")
    corpus.add_argument("--src-lang", help="source language code for corpus.<src> and TMX (default: the data's "
                                           "lang column, else the run's --lang)")
    corpus.add_argument("--min-grounding", type=float, help="flag records whose grounding is below this as "
                                                            "low_grounding and leave them out of the aligned files")
    corpus.add_argument("--dedupe", action="store_true", help="leave repeated source sentences out of the aligned "
                                                              "files (the first kept occurrence stays)")
    corpus.add_argument("--tmx", action="store_true", help="also write corpus.tmx (TMX 1.4)")
    corpus.add_argument("--restart", action="store_true", help="discard a previous (partial) corpus in --out")
    corpus.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(corpus)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--beams", type=int, default=1, help="beam size (1 = greedy; default 1)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch (default 32)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def read_sentences(path: Path | None) -> list[str]:
    """Lines of `path` (stdin when None) without line endings; invalid UTF-8 names its line."""
    raw = sys.stdin.buffer.read() if path is None else path.read_bytes()
    lines = raw.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError:
            raise SystemExit(f"error: {path or '<stdin>'}:{number}: not valid UTF-8") from None
    return out


def run_text(args: argparse.Namespace) -> int:
    from translate.translator import Translator

    if args.file is not None and args.texts:
        raise SystemExit("error: give sentences as arguments or --file, not both")
    if args.file is not None:
        texts = read_sentences(args.file)
    elif not args.texts or args.texts == ["-"]:
        texts = read_sentences(None)
    else:
        texts = args.texts
    translator = Translator.from_run(args.run, device=args.device)
    translations = translator.translate(texts, beams=args.beams, batch_size=args.batch_size)
    text = "".join(" ".join(t.splitlines()) + "\n" for t in translations)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


def run_corpus(args: argparse.Namespace) -> int:
    import json

    from translate import inputs
    from translate.corpus import Filters, build_corpus
    from translate.translator import Translator

    if (args.images is None) != (args.captions is None):
        raise SystemExit("error: --images and --captions go together")
    config_file = args.run / "config.json"
    run_lang = json.loads(config_file.read_text()).get("lang") if config_file.is_file() else None
    translator = Translator.from_run(args.run, device=args.device)
    if args.data is not None:
        data = inputs.from_dataset(args.data, args.split, args.src_lang)
    else:
        data = inputs.from_captions(args.images, args.captions, args.src_lang or run_lang or "src")
    langs = {item.lang for item in data.items}
    src_lang = args.src_lang or (langs.pop() if len(langs) == 1 else run_lang or "src")
    for entry in data.report:
        where = f"line {entry['line']}" if "line" in entry else f"row {entry['row']}"
        print(f"{args.captions or args.data}: {where}: {entry['reason']} ({entry['action']})", file=sys.stderr)
    summary = build_corpus(translator, data, args.out, src_lang=src_lang, beams=args.beams, batch_size=args.batch_size,
                           filters=Filters(args.min_grounding, args.dedupe), tmx=args.tmx, restart=args.restart,
                           show_progress=not args.quiet)
    skipped = sum(summary["skipped_inputs"].values())
    print(f"{summary['records']} records ({summary['resumed_records']} resumed), {summary['aligned_pairs']} aligned "
          f"pairs, flags {summary['flags'] or 'none'}; {skipped} input lines skipped"
          + (f" {summary['skipped_inputs']} (see {args.out / 'input_report.jsonl'})" if skipped else "")
          + f"; written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_text(args) if args.command == "text" else run_corpus(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
