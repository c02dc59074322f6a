"""Analyse one run: load it once, run the chosen parts, write analysis.json and the figures.

analysis.json is rewritten after every part, so an interrupted analysis keeps the parts it
finished. A new analysis of the same directory replaces the previous one (its figures included).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from eval.analysis import cka_maps, movement, probes, tail, tokens, training_health
from eval.analysis.context import load_context
from eval.report.collect import Run

ANALYSIS_FILE = "analysis.json"
PARTS: dict[str, Callable] = {"cka": cka_maps.analyse, "probes": probes.analyse, "movement": movement.analyse,
                              "tokens": tokens.analyse, "health": training_health.analyse, "tail": tail.analyse}


def _write(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=float) + "\n", encoding="utf-8")
    tmp.replace(path)


def _clear(out_dir: Path) -> None:
    """Remove a previous analysis (its JSON and the figures it listed) from `out_dir`."""
    old = out_dir / ANALYSIS_FILE
    if old.is_file():
        try:
            listed = [f["file"] for f in json.loads(old.read_text(encoding="utf-8")).get("figures", [])]
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
            listed = []
        for name in listed:
            (out_dir / Path(name).name).unlink(missing_ok=True)
        old.unlink()


def analyze_run(run: Run, out_dir: str | Path, *, parts: Sequence[str] = tuple(PARTS), limit: int = 1000,
                batch_size: int = 64, device: str | None = None,
                say: Callable[[str], None] = print) -> dict:
    """Run `parts` on `run`, writing `out_dir/analysis.json` and its PNGs; return the analysis dict."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown analysis part(s) {unknown}; choose from {','.join(PARTS)}")
    ctx = load_context(run, limit=limit, batch_size=batch_size, device=device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear(out_dir)
    teacher = str(ctx.teacher_path) if ctx.teacher_path else None
    result = {"run": run.name, "run_path": str(run.path), "teacher": teacher,
              "settings": {"parts": list(parts), "limit": limit, "batch_size": batch_size, "device": str(ctx.device)},
              "test_sentences": len(ctx.sentences), "notes": ctx.notes, "parts": {}, "figures": [], "seconds": {}}
    for name in parts:
        t0 = time.time()
        say(f"{run.name}: {name} …")
        part, plots = PARTS[name](ctx)
        result["parts"][name] = part
        result["figures"] += [{**plot.save(out_dir), "part": name} for plot in plots]
        result["seconds"][name] = round(time.time() - t0, 2)
        _write(out_dir / ANALYSIS_FILE, result)
    return result
