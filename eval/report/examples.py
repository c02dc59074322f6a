"""Example sentences per run: best, median and worst by LiSAScore F, with source, references,
output, per-sentence scores, the test image and (for the first of each kind) a token
alignment of the output against its best reference."""
from __future__ import annotations

from eval.report.alignment import alignment, get_scorer, scorer_settings
from eval.report.collect import Run
from eval.report.images import lookup_images

RANK_KEY = "lisascore.F"
SHOWN_SCORES = ("bleu", "chrf", "bertscore.F", "lisascore.P", "lisascore.R", "lisascore.F",
                "grounding")


def pick(values: list[float], k: int) -> dict[str, list[int]]:
    """Indices of the k best, k median and k worst values, without overlaps (best first,
    then worst, then median from what is left, nearest the middle of the ranking)."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    best = order[:k]
    rest = [i for i in order if i not in best]
    worst = rest[::-1][:k]
    rest = [i for i in rest if i not in worst]
    middle = len(order) // 2
    rank = {i: r for r, i in enumerate(order)}
    median = sorted(sorted(rest, key=lambda i: (abs(rank[i] - middle), rank[i]))[:k], key=rank.get)
    return {"best": best, "median": median, "worst": worst}


def _best_reference(run: Run, index: int) -> int:
    best_ref = ((run.scores or {}).get("metrics", {}).get("lisascore") or {}).get("best_ref")
    return int(best_ref[index]) if isinstance(best_ref, list) and index < len(best_ref) else 0


def run_examples(run: Run, k: int, heatmaps: int, notes: list[str]) -> list[dict]:
    """[{"kind", "index", "source", "references", "hypothesis", "image_id", "scores",
    "best_reference", "image" (PIL or None), "alignment" (dict or None)}] for one run."""
    rows = run.sentences
    if not rows:
        return []
    if any(not isinstance(r.get(RANK_KEY), (int, float)) for r in rows):
        notes.append(f"{run.name}: sentences have no {RANK_KEY}; no examples")
        return []
    chosen = pick([r[RANK_KEY] for r in rows], k)
    images, note = lookup_images(run, [rows[i].get("image_id") for ids in chosen.values() for i in ids])
    if note:
        notes.append(note)
    settings = scorer_settings(run.scores or {})
    scorer, tried, out = None, False, []
    for kind, indices in chosen.items():
        for n, i in enumerate(indices):
            r = rows[i]
            ref_index = _best_reference(run, i)
            example = {"kind": kind, "index": i, "source": r.get("source"),
                       "references": r.get("references", []), "hypothesis": r.get("hypothesis", ""),
                       "image_id": r.get("image_id"), "best_reference": ref_index,
                       "scores": {s: r[s] for s in SHOWN_SCORES if isinstance(r.get(s), (int, float))},
                       "image": images.get(str(r.get("image_id"))), "alignment": None}
            refs = example["references"]
            if n < heatmaps and refs and ref_index < len(refs) and example["hypothesis"].strip():
                if not tried:
                    scorer, tried = _scorer_or_note(run, settings, notes), True
                if scorer is not None:
                    example["alignment"] = alignment(scorer, example["hypothesis"], refs[ref_index],
                                                     settings["matching"])
            out.append(example)
    return out


def _scorer_or_note(run: Run, settings: dict, notes: list[str]):
    """The run's LiSAScorer, or None (with a note) when its encoder cannot be loaded here."""
    try:
        return get_scorer(settings["model_type"], settings["num_layers"], settings["idf"])
    except (OSError, ValueError, ImportError) as err:
        notes.append(f"{run.name}: cannot load the LiSAScore encoder {settings['model_type']!r} "
                     f"({str(err).splitlines()[0]}); no alignment heatmaps")
        return None
