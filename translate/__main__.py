"""`python -m translate text|corpus|export`: translate sentences, build a parallel corpus from captioned
images, or export the student as a standard transformers directory, with a run directory written by
`accelerate launch train.py --out RUN` (docs/translate.md).
Bad input ends with one line `error: ...` and exit code 2; Ctrl-C with one line and exit code 130
(`data_prep.errors`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data_prep.errors import (InputError, Parser, cosine, input_file, non_negative_float, output_dir, output_file,
                              positive_int, run_command, torch_device)
from translate.reranking import DEFAULT_RERANK_BETA, DEFAULT_RERANK_SIZE, RERANKERS, rerank_settings

TEXT_EPILOG = """examples:
  python -m translate text --run RUN "una casa roja junto al mar" "dos perros"
  python -m translate text --run RUN --file sentences.es --out sentences.en --num-beams 4
  echo "un gato negro" | python -m translate text --run RUN
  python -m translate text --run RUN "una cruz roja" "dos círculos" --rerank clip --images cruz.png circ.png
  python -m translate text --run RUN --file captions.es --images-file captions.images --rerank clip
--rerank clip: each sentence's n-best list is re-scored with its image (--images after the sentences,
or --images-file: one image path per input line, relative to the list's folder; a blank line only
beside an empty sentence).
Output: one line per input line, in order (an empty input line gives an empty output line). Lines
end at \\n only (data_prep.text_files). An input longer than the model reads is cut there: one
warning says which lines. --out is checked before translating and written whole at the end.
Bad input: one line "error: ...", exit code 2; Ctrl-C: one line, exit code 130."""

CORPUS_EPILOG = """examples:
  python -m translate corpus --run RUN --data-dir DATASET_DIR --split test --out corpus_out
  python -m translate corpus --run RUN --images photos/ --captions captions.jsonl --src-lang quz \\
      --min-grounding 0.2 --dedupe --tmx --out corpus_out
  python -m translate corpus --run RUN --data-dir DATASET_DIR --rerank clip --rerank-beta 0.2 --out corpus_out
captions file: JSONL, CSV or TSV with columns file_name, caption (optional image_id, lang);
file_name is relative to --images (a name that leaves --images is skipped, never opened).
Outputs in OUT: corpus.jsonl, corpus.<src>, corpus.en, corpus.tsv, [corpus.tmx], input_report.jsonl,
summary.json, summary.md, grounding_hist.png, length_ratio_hist.png. Rerunning the same command
after an interruption resumes where it stopped (Ctrl-C: one line, exit code 130). Bad input: one
line "error: ...", exit code 2, before the model loads wherever possible."""


EXPORT_EPILOG = """example:
  python -m translate export --run RUN --out opus-style-student
then, offline and without remote code, exactly what `python -m translate text --run RUN` prints:
  tokenizer = AutoTokenizer.from_pretrained(OUT); model = MarianMTModel.from_pretrained(OUT)
  ids = model.generate(**tokenizer(sentences, return_tensors="pt", padding=True, truncation=True))
  tokenizer.batch_decode(ids, skip_special_tokens=True)
(pass num_beams=K to generate for --num-beams K). --out must be a new or empty folder; it is written
whole or not at all. Bad input: one line "error: ...", exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m translate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    text = sub.add_parser("text", help="translate sentences (arguments, --file or stdin)", epilog=TEXT_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="Translate sentences into English with a trained run's student.")
    text.add_argument("--run", required=True, type=Path, help="run directory (holds model/)")
    text.add_argument("texts", nargs="*", help="sentences to translate; '-' or none (without --file) reads stdin")
    text.add_argument("--file", type=Path, help="UTF-8 file with one sentence per line")
    images = text.add_mutually_exclusive_group()
    images.add_argument("--images", nargs="+", type=Path, metavar="IMG",
                        help="with --rerank clip: one image file per sentence, in order (put it after the sentences)")
    images.add_argument("--images-file", type=Path, metavar="LIST",
                        help="with --rerank clip: one image path per input line (relative to LIST's folder)")
    _common(text)
    text.add_argument("--out", type=Path, help="write the translations here (default: print them); never an input "
                                               "file, and an existing file only with --overwrite")
    text.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    corpus = sub.add_parser("corpus", help="build a scored parallel corpus from captioned images",
                            epilog=CORPUS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Translate the captions of images into a scored, filterable parallel "
                                        "corpus (resumable).")
    corpus.add_argument("--run", required=True, type=Path, help="run directory (holds model/)")
    source = corpus.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, help="a dataset directory written by `python -m data_prep`")
    source.add_argument("--images", type=Path, help="image folder (with --captions)")
    corpus.add_argument("--split", default="test", help="split of --data-dir (default: test)")
    corpus.add_argument("--captions", type=Path, help="JSONL/CSV/TSV captions file (with --images)")
    corpus.add_argument("--out", required=True, type=Path, help="output folder: new, empty, or a corpus of this "
                                                                "command (resumed, or replaced with --restart)")
    corpus.add_argument("--src-lang", help="source language code for corpus.<src> and TMX (default: the data's "
                                           "lang column, else the run's --lang)")
    corpus.add_argument("--min-grounding", type=cosine, help="flag records whose grounding is below this as "
                                                            "low_grounding and leave them out of the aligned files")
    corpus.add_argument("--dedupe", action="store_true", help="leave repeated source sentences out of the aligned "
                                                              "files (the first kept occurrence stays)")
    corpus.add_argument("--tmx", action="store_true", help="also write corpus.tmx (TMX 1.4)")
    corpus.add_argument("--restart", action="store_true", help="discard a previous (partial) corpus in --out")
    corpus.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(corpus)

    export = sub.add_parser("export", help="write the student as a standard transformers directory",
                            epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Write the run's student as a MarianMTModel with a tokenizer that "
                                        "AutoTokenizer loads, translating as `translate text` does.")
    export.add_argument("--run", required=True, type=Path, help="run directory (holds model/)")
    export.add_argument("--out", required=True, type=Path, help="the directory to write (new or empty)")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-beams", type=positive_int, default=1, help="beam size (1 = greedy; default 1)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="sentences per batch (default 32)")
    parser.add_argument("--device", type=torch_device,
                        help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--rerank", choices=RERANKERS,
                        help="re-score each caption's n-best list with its image: the student's length-normalised "
                             "log-probability + beta x CLIP logit scale x cos(CLIP(candidate), CLIP(image))")
    parser.add_argument("--rerank-size", type=positive_int, metavar="K",
                        help=f"n-best list size, the beam width of its search (default: --num-beams when above 1, "
                             f"else {DEFAULT_RERANK_SIZE})")
    parser.add_argument("--rerank-beta", type=non_negative_float, metavar="B",
                        help=f"weight of the image score (default {DEFAULT_RERANK_BETA}; 0 = beam search's best)")


def _quiet_loading() -> None:
    """No transformers progress bar while the model loads: stderr carries only what the user must read."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def run_text(args: argparse.Namespace) -> int:
    from data_prep.text_files import read_lines
    from translate.outputs import atomic_write
    from translate.translator import Translator, check_generation_memory

    if args.file is not None and args.texts:
        raise InputError("give sentences as arguments or --file, not both")
    rerank = _text_rerank(args)
    out = None if args.out is None else output_file(  # before any work
        args.out, "--out", inputs={"--file": args.file, "--images-file": args.images_file, "--images": args.images},
        overwrite=args.overwrite)
    images = _text_images(args) if rerank is not None else None  # before stdin is read
    if args.file is not None:
        texts = read_lines(input_file(args.file, "--file"))
    elif not args.texts or args.texts == ["-"]:
        texts = read_lines(None)
    else:
        texts = args.texts
        _check_arguments_text(texts)
    if images is not None:
        _check_images(images, texts, args)
    check_generation_memory(args.run, texts, args.batch_size, args.num_beams if rerank is None else rerank["size"])
    _quiet_loading()
    translator = Translator.from_run(args.run, device=args.device)
    if rerank is None:
        translations = translator.translate(texts, num_beams=args.num_beams, batch_size=args.batch_size)
    else:
        translations = translator.rerank_clip(texts, images, size=rerank["size"], beta=rerank["beta"],
                                              batch_size=args.batch_size).translations
    cut = [n for n, flag in enumerate(translator.truncated(texts), start=1) if flag]
    if cut:
        shown = ", ".join(map(str, cut[:10])) + (", ..." if len(cut) > 10 else "")
        print(f"warning: {len(cut)} input(s) longer than the model reads ({translator.source_limit} tokens) were cut "
              f"there and translated only in part: input line(s) {shown}", file=sys.stderr)
    text = "".join(" ".join(t.splitlines()) + "\n" for t in translations)
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, text)
    return 0


def _check_arguments_text(texts: list[str]) -> None:
    """Sentences given as arguments must be UTF-8 (Python keeps a byte that is not as a lone surrogate)."""
    from data_prep.text_files import surrogate_problem

    for number, text in enumerate(texts, start=1):
        why = surrogate_problem(text)
        if why is not None:
            raise InputError(f"sentence argument {number} is {why if why.startswith('not') else 'not valid: ' + why}")


def _text_rerank(args: argparse.Namespace) -> dict | None:
    """The reranking settings of `translate text` (None without --rerank); options that would do
    nothing, or contradict each other, are refused before any work."""
    if args.rerank is None and (args.images is not None or args.images_file is not None):
        raise InputError("--images and --images-file are used only with --rerank clip (the image judges the "
                         "candidates)")
    return rerank_settings(args.rerank, num_beams=args.num_beams, size=args.rerank_size, beta=args.rerank_beta)


def _text_images(args: argparse.Namespace) -> list[Path | None]:
    """The images of `translate text --rerank clip`, each checked to be a file: `--images` as given,
    or the lines of `--images-file` (relative to its folder; a blank line = no image)."""
    if args.images is not None:
        return [input_file(path, "--images") for path in args.images]
    if args.images_file is None:
        raise InputError("--rerank clip needs one image per sentence: --images IMG [IMG ...] or --images-file LIST")
    from data_prep.text_files import read_lines

    listing = input_file(args.images_file, "--images-file")
    paths = [listing.parent / line.strip() if line.strip() else None for line in read_lines(listing)]
    return [None if p is None else input_file(p, f"--images-file {listing}") for p in paths]


def _check_images(images: list[Path | None], texts: list[str], args: argparse.Namespace) -> None:
    """One image per input line; a blank image line only beside an empty sentence."""
    option = "--images" if args.images is not None else f"--images-file {args.images_file}"
    if len(images) != len(texts):
        raise InputError(f"{option} gives {len(images)} image(s) for {len(texts)} input line(s): one image per "
                         "sentence, in order")
    missing = [n for n, (image, text) in enumerate(zip(images, texts), start=1) if image is None and text.strip()]
    if missing:
        raise InputError(f"{option}: no image for input line {missing[0]} ({len(missing)} sentence(s) without one)")


def run_corpus(args: argparse.Namespace) -> int:
    from data_prep.locks import FolderLock
    from translate import inputs
    from translate.corpus import CORPUS_FOLDER, INPUT_REPORT, PROGRESS, Filters, build_corpus, read_progress
    from translate.outputs import atomic_write
    from translate.translator import Translator, check_generation_memory, run_config

    if (args.images is None) != (args.captions is None):
        raise InputError("--images and --captions go together")
    rerank = rerank_settings(args.rerank, num_beams=args.num_beams, size=args.rerank_size, beta=args.rerank_beta)
    out = output_dir(args.out, "--out", artefact=CORPUS_FOLDER, replace=True,  # before any work
                     inputs={"--run": args.run, "--data-dir": args.data_dir, "--images": args.images,
                             "--captions": args.captions})
    run_lang = run_config(args.run).get("lang")
    if args.data_dir is not None:
        data = inputs.from_dataset(args.data_dir, args.split, args.src_lang)
    else:
        data = inputs.from_captions(args.images, args.captions, args.src_lang or run_lang or "src")
    source = args.captions or f"{args.data_dir} split {args.split!r}"
    with FolderLock(out, "python -m translate corpus"):  # one process at a time writes a corpus: from its first write
        if not data.items:
            skipped = data.skipped_counts()
            report = ""
            if not (out / PROGRESS).exists():  # a previous corpus in OUT keeps its own report
                atomic_write(out / INPUT_REPORT, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data.report))
                report = f"; see {out / INPUT_REPORT}"
            raise InputError(f"nothing to translate: {source} has no usable caption"
                             + (f" (all {sum(skipped.values())} lines skipped: {skipped}){report}" if skipped else ""))
        langs = {item.lang for item in data.items}
        src_lang = args.src_lang or (langs.pop() if len(langs) == 1 else run_lang or "src")
        check_generation_memory(args.run, [item.source for item in data.items], args.batch_size,
                                args.num_beams if rerank is None else rerank["size"])
        _quiet_loading()
        translator = Translator.from_run(args.run, device=args.device)
        for entry in data.report:
            where = f"line {entry['line']}" if "line" in entry else f"row {entry['row']}"
            print(f"{args.captions or args.data_dir}: {where}: {entry['reason']} ({entry['action']})", file=sys.stderr)
        try:
            summary = build_corpus(translator, data, out, src_lang=src_lang, num_beams=args.num_beams,
                                   batch_size=args.batch_size, filters=Filters(args.min_grounding, args.dedupe),
                                   tmx=args.tmx, restart=args.restart, show_progress=not args.quiet, rerank=rerank)
        except KeyboardInterrupt:
            marker = out / PROGRESS
            kept = read_progress(marker)["records"] if marker.is_file() else 0
            raise KeyboardInterrupt(f"{kept} records are safe in {out / 'corpus.jsonl'}; rerun the same command to "
                                    "resume") from None
    skipped = sum(summary["skipped_inputs"].values())
    print(f"{summary['records']} records ({summary['resumed_records']} resumed), {summary['aligned_pairs']} aligned "
          f"pairs, flags {summary['flags'] or 'none'}; {skipped} input lines skipped"
          + (f" {summary['skipped_inputs']} (see {out / INPUT_REPORT})" if skipped else "")
          + f"; written to {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    import tempfile

    from translate.translator import Translator

    out = output_dir(args.out, "--out", inputs={"--run": args.run})  # before any work: a new or empty folder
    _quiet_loading()
    translator = Translator.from_run(args.run, device="cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        translator.system.export(Path(tmp) / "student")
        if out.is_dir():
            out.rmdir()
        (Path(tmp) / "student").rename(out)
    print(f"wrote {out}: MarianMTModel and its tokenizer (target vocabulary: {translator.system.vocab.describe()}); "
          "load them with MarianMTModel.from_pretrained and AutoTokenizer.from_pretrained")
    return 0


COMMANDS = {"text": run_text, "corpus": run_corpus, "export": run_export}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
