"""`python -m eval lexicon`: the lexicon a dataset's training pictures induce, judged as a lexicon —
precision at 1 against the world's Unicode CLDR name pairs (`eval.lexicon`) — as a printed table
and, with `--out`, a JSON file (docs/lexicon.md).

The training pictures are the rows a run trains on (`data_prep.collate.scan_usable`; skipped rows
are counted in the output). The *seen* concepts are those named by the hashed fraction
`--fraction` of the training captions that keeps its human translation, drawn with `--seed` as
train.py draws it (`data_prep.targets.TargetTable.from_dataset`); concept frequencies and the
seen set come from `eval.concept_scores.TrainingConcepts`, as in a run's concept accuracy. With
`--run RUN`, the CLIP saved in `RUN/model/clip/` (the stage-0 teacher, which stage 1 keeps frozen
under the default `--freeze both`) adds the `teacher` and `both` rankings; the run must have been
trained on the dataset's language and on the same training pictures and captions. The JSON names
the dataset and the run by their folder names only (no local path).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import datasets
import torch

from data_prep.collate import ScanResult, scan_usable
from data_prep.concepts import CONCEPTS_FILE
from data_prep.errors import (Artefact, InputError, fraction, non_negative_float, non_negative_int, output_file,
                              positive_int, same_path, torch_device)
from data_prep.load import load_dataset_dir
from data_prep.phrase_lexicon import PhraseLexicon
from eval.concept_scores import COLUMN, TrainingConcepts
from eval.lexicon import CEILINGS, TeacherScores, evaluate_lexicon
from models.clip_batches import encode_images, encode_texts
from models.clip_loading import CHECKPOINT_NAME
from models.run_dir import RunDir, write_durably
from models.typed_json import read_json

DEFAULT_FRACTION = 0.05
# Top-level keys of the JSON this command writes: a file holding them all may be replaced by a new one.
LEXICON_KEYS = frozenset({"data", "lang", "fraction", "seed", "training", "teacher", "rankings", "ceilings", "k",
                          "tie", "concepts"})
TRAINING_COLUMNS = ["image_id", "source", "english"]  # what the teacher of a run saw of its dataset (and more)


def is_lexicon_file(path: Path) -> bool:
    """A JSON file written by `eval lexicon` (its top-level keys), which a new one may replace."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and LEXICON_KEYS <= data.keys()


LEXICON_FILE = Artefact("a lexicon evaluation written by python -m eval lexicon", is_lexicon_file)


def add_lexicon_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True,
                   help="a dataset whose captions name concepts (concepts.json; `python -m data_prep longtail`)")
    p.add_argument("--fraction", type=fraction, default=DEFAULT_FRACTION,
                   help="fraction of training captions that keep their human translation: their concepts are "
                        "the seen ones (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the hashed translated subset, as train.py --seed (default: %(default)s)")
    p.add_argument("--run", metavar="RUN",
                   help="a trained run on this dataset: its CLIP teacher adds the teacher and both rankings")
    p.add_argument("--k", type=positive_int, default=20,
                   help="English phrases ranked by co-occurrence that the teacher chooses among (default: %(default)s)")
    p.add_argument("--tie", type=non_negative_float, default=0.05,
                   help="`both`: the teacher chooses among the phrases within this Dice of the best (default: "
                        "%(default)s)")
    p.add_argument("--device", type=torch_device, help="cpu / cuda for the teacher (default: cuda when available)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="pictures per teacher batch (default: 64)")
    p.add_argument("--out", help="JSON file to write (a lexicon file written here is replaced; any other existing "
                                 "file only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a lexicon file")


def run_lexicon(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    run = Path(args.run) if args.run else None
    inputs = {"--data-dir": [data_dir, data_dir / CONCEPTS_FILE],
              "--run": [run, run / "config.json", run / "model" / "clip" / CHECKPOINT_NAME] if run else None}
    out = output_file(args.out, "--out", inputs=inputs, artefact=LEXICON_FILE, overwrite=args.overwrite) \
        if args.out else None
    train = load_dataset_dir(data_dir)["train"]
    if COLUMN not in train.column_names:
        raise InputError(f"--data-dir {data_dir}: its captions carry no concept ids ({COLUMN}); the lexicon is "
                         "judged against the concept names of a world built by `python -m data_prep longtail`")
    scan = scan_usable(train, need_english=1, show_progress=False)
    if not scan.usable:
        raise InputError(f"--data-dir {data_dir}: no usable training picture ({scan.summary()})")
    try:
        training = TrainingConcepts.at_fraction(data_dir, train, scan.usable, args.fraction, args.seed)
    except ValueError as exc:  # fewer translations in the dataset than the fraction asks for
        raise InputError(str(exc).replace("--parallel-fraction", "--fraction")) from None
    lang = training.inventory.lang
    teacher = teacher_info = None
    if run is not None:
        teacher, teacher_info = run_teacher(run, lang, data_dir, train, scan.usable, device=args.device,
                                            batch_size=args.batch_size)
    lexicon = PhraseLexicon.induce(train, scan.usable, lang)
    result = evaluate_lexicon(lexicon, training.inventory, training.frequency, set(training.seen), teacher,
                              k=args.k, tie=args.tie)
    info = training.inventory.info
    report = {"data": data_dir.resolve().name, "lang": lang,
              "world": {key: info[key] for key in ("zipf", "seed") if key in info},
              "fraction": args.fraction, "seed": args.seed,
              "training": _training_counts(scan, training, len(lexicon.english)), "teacher": teacher_info, **result}
    print(table(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_durably(out, dumps(report))
        print(f"wrote {out}")
    return 0


def dumps(report: dict) -> str:
    """The report as indented JSON, each concept's entry on one line (a thousand of them stay readable
    and diffable)."""
    head = json.dumps({key: value for key, value in report.items() if key != "concepts"}, indent=2,
                      ensure_ascii=False)
    rows = ",\n".join("    " + json.dumps(entry, ensure_ascii=False) for entry in report["concepts"])
    return f'{head[:-2]},\n  "concepts": [\n{rows}\n  ]\n}}\n'


def _training_counts(scan: ScanResult, training: TrainingConcepts, phrases: int) -> dict:
    return {"pictures": len(scan.usable), "skipped": dict(scan.skipped), "captions": training.captions,
            "translated_captions": training.translated_captions, "concepts_named": len(training.frequency),
            "seen_concepts": len(training.seen), "inventory": len(training.inventory.concepts),
            "english_phrases": phrases}


def run_teacher(run: Path, lang: str, data_dir: Path, train: datasets.Dataset, rows: list[int], *,
                device: str | None, batch_size: int) -> tuple[TeacherScores, dict]:
    """The CLIP of `RUN/model/clip/` as a `TeacherScores` over the training pictures `rows`, once the
    run is found to be one of `lang` trained on `data_dir`'s training pictures and captions."""
    from models.grounded import SYSTEM_FILE, SystemSpec
    from training.stage0 import loaded_clip

    config = RunDir(run).read_config()
    if config.get("lang") != lang:
        raise InputError(f"--run {run} was trained on {config.get('lang')!r} captions, but --data-dir {data_dir} "
                         f"is a {lang!r} world: pass a run of this language (or leave --run out)")
    _check_run_data(run, config.get("data_path"), data_dir, train)
    system_file = run / "model" / SYSTEM_FILE
    weights = run / "model" / "clip" / CHECKPOINT_NAME
    missing = [str(p) for p in (system_file, weights) if not p.is_file()]
    if missing:
        raise InputError(f"--run {run} holds no saved CLIP teacher ({', '.join(missing)} missing): pass a finished "
                         "run of `train.py`")
    name = read_json(system_file, SystemSpec)["clip"]
    clip, preprocess, tokenizer = loaded_clip(name, weights, "--run", "")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    clip = clip.to(device).eval()
    images = encode_images(clip.encode_image, preprocess, train.select(rows)["image"], device=device,
                           batch_size=batch_size)
    scores = TeacherScores(torch.nn.functional.normalize(images, dim=-1).cpu(),
                           lambda texts: encode_texts(clip.encode_text, tokenizer, texts, device=device).cpu())
    return scores, {"run": run.resolve().name, "clip": name, "freeze": config.get("freeze"),
                    "template": scores.template}


def _check_run_data(run: Path, data_path: str | None, data_dir: Path, train: datasets.Dataset) -> None:
    """The run read `data_dir`, or a dataset with the same training pictures and captions."""
    if not data_path:
        raise InputError(f"--run {run}: its config.json names no data_path, so whether it was trained on "
                         f"--data-dir {data_dir} cannot be told")
    if same_path(data_path, data_dir):
        return
    if not (Path(data_path) / "dataset_dict.json").is_file():
        raise InputError(f"--run {run} was trained on {data_path}, which is not on this machine to compare with "
                         f"--data-dir {data_dir}: pass that dataset as --data-dir")
    theirs = load_dataset_dir(data_path)["train"]
    if theirs.select_columns(TRAINING_COLUMNS).to_dict() != train.select_columns(TRAINING_COLUMNS).to_dict():
        raise InputError(f"--run {run} was trained on {data_path}, whose training pictures or captions differ "
                         f"from --data-dir {data_dir}'s: pass the run's own dataset (or leave --run out)")


def table(report: dict) -> str:
    """Precision at 1 per ranking, then the two ceilings (columns): over all concepts, seen, unseen,
    by training frequency."""
    columns = {**report["rankings"], **{f"ceiling {c}": report["ceilings"][c] for c in CEILINGS}}
    t = report["training"]
    lines = [f"lexicon of {report['data']} ({report['lang']}): {t['pictures']} training pictures, "
             f"{t['english_phrases']} English phrases; seen = the concepts of the {t['translated_captions']} "
             f"translated captions (fraction {report['fraction']:g}, seed {report['seed']})",
             f"{'precision at 1 (correct/concepts)':<36}" + "".join(f"{c:>20}" for c in columns)]

    def cell(entry: dict) -> str:
        p = entry["precision_at_1"]
        return f"{'-' if p is None else f'{p:.3f}'} ({entry['correct']}/{entry['concepts']})"

    for key in ("all", "seen", "unseen"):
        lines.append(f"{key:<36}" + "".join(f"{cell(c[key]):>20}" for c in columns.values()))
    for i, b in enumerate(report["rankings"]["cooccurrence"]["by_frequency"]):
        lines.append(f"{'  training captions ' + b['train_captions']:<36}"
                     + "".join(f"{cell(c['by_frequency'][i]):>20}" for c in columns.values()))
    return "\n".join(lines)
