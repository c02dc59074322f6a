"""Headline lines of an analysis.json: what the CLI prints and the report's Analysis section
shows next to the figures. Pure functions of the JSON (no torch), so the report can use them."""
from __future__ import annotations


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cka_lines(cka: dict) -> list[tuple[str, str]]:
    lines = []
    entry = cka.get("student_vs_english", {})
    if "skipped" in entry:
        lines.append(("CKA student path vs English", f"skipped: {entry['skipped']}"))
    elif entry:
        values = []
        for pooling in ("mean", "eot"):
            grid = entry[pooling]
            defined = [v for row in grid["matrix"] for v in row if v is not None]
            if not defined:
                values.append(f"{pooling}: undefined everywhere ({grid.get('undefined_reason', 'no variance')})")
                continue
            values.append(f"{pooling}: last layers {_fmt(grid['matrix'][-1][-1])}, best {_fmt(max(defined))}")
        lines.append(("CKA student path vs English (n=" + str(entry["mean"]["samples"]) + ")", "; ".join(values)))
    for kind in ("image", "text"):
        tower = cka.get(f"{kind}_tower", {})
        if "skipped" in tower:
            change = tower.get("max_abs_parameter_change")
            lines.append((f"CKA {kind} tower before/after", tower["skipped"]
                          + ("" if change is None else f" (largest parameter change {change:.2g})")))
        elif tower:
            diagonal = [row[i] for i, row in enumerate(tower["mean"]["matrix"]) if i < len(row)]
            lines.append((f"CKA {kind} tower before/after", "same-layer CKA (mean pooling): "
                          + ", ".join(_fmt(v, 2) for v in diagonal)))
    return lines


def _probe_lines(probes: dict) -> list[tuple[str, str]]:
    lines = []
    for protocol, r in probes.get("lm_head", {}).items():
        if "skipped" in r:
            lines.append((f"LM head ({protocol})", f"skipped: {r['skipped']}"))
        else:
            lines.append((f"LM head ({protocol})", f"CE {r['ce']:.3f} nats (uniform {r['uniform_ce']:.3f}), "
                                                  f"token accuracy {r['token_accuracy']:.3f}"))
    attrs = probes.get("attributes", {})
    if "skipped" in attrs:
        lines.append(("attribute probes", f"skipped: {attrs['skipped']}"))
    for kind, v in attrs.get("features", {}).items():
        if "skipped" in v:
            lines.append((f"attribute probes, {kind} features", f"skipped: {v['skipped']}"))
            continue
        parts = [f"{f} {r['accuracy']:.2f} (majority {r['majority_baseline']:.2f})" for f, r in v["families"].items()]
        lines.append((f"attribute probes, {kind} features (fit {v['n_fit']}, test {v['n_test']})",
                      "; ".join(parts) or "no task with two classes"))
    return lines


def _movement_lines(movement: dict) -> list[tuple[str, str]]:
    lines = []
    final = movement.get("from_teacher", {}).get("final")
    if final:
        by_module: dict = {}
        for group, value in final.items():
            module = group.split("/")[0]
            by_module[module] = max(by_module.get(module, 0.0), value)
        lines.append(("moved from the stage-0 teacher (largest layer)",
                      ", ".join(f"{m} {v:.3g}" for m, v in by_module.items())))
    to_final = movement.get("to_final", {})
    if to_final:
        first = min(to_final, key=int)
        by_module = {}
        for group, value in to_final[first].items():
            module = group.split("/")[0]
            by_module[module] = max(by_module.get(module, 0.0), value)
        lines.append((f"step {first} → exported model (largest layer)",
                      ", ".join(f"{m} {v:.3g}" for m, v in by_module.items())))
    return lines


def _tail_lines(tail: dict) -> list[tuple[str, str]]:
    if "note" in tail and "unseen_mentions" not in tail:
        return [("unseen concepts", tail["note"])]

    def cells(table: dict) -> str:
        return ", ".join(f"{key} {v['right']}/{v['mentions']}" for key, v in table.items())

    lines = [("unseen concepts named, by training captions",
              cells({row["training_captions"]: row for row in tail["by_training_captions"]})),
             ("unseen concepts named, by training pictures",
              cells({row["training_pictures"]: row for row in tail["by_training_pictures"]}))]
    if tail["by_target_coverage"]:
        lines.append(("unseen concepts named, by how often the final targets name them",
                      cells(tail["by_target_coverage"]) + "; the under-covered concepts' captions had targets: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(tail["under_covered_caption_targets"].items()))))
    else:
        lines.append(("unseen concepts: target coverage", tail["note"]))
    return lines


def summary_lines(analysis: dict) -> list[tuple[str, str]]:
    """[(label, text)] for every part present in `analysis`."""
    parts = analysis.get("parts", {})
    lines = []
    if "cka" in parts:
        lines += _cka_lines(parts["cka"])
    if "probes" in parts:
        lines += _probe_lines(parts["probes"])
    if "movement" in parts:
        lines += _movement_lines(parts["movement"])
    tokens = parts.get("tokens")
    if tokens:
        if "skipped" in tokens:
            lines.append(("token usage", f"skipped: {tokens['skipped']}"))
        else:
            lines.append(("token usage", f"JS divergence {_fmt(tokens['js_divergence_bits'])} bits, "
                                         f"{tokens['types']['student']} student vs {tokens['types']['reference']} "
                                         f"reference types, {tokens['unused_reference_types']} reference types never "
                                         f"used, {tokens['distinct_outputs']}/{tokens['sentences']} distinct outputs"))
    tail = parts.get("tail")
    if tail:
        lines += _tail_lines(tail)
    health = parts.get("health", {}).get("final")
    if health:
        if "skipped" in health:
            lines.append(("embedding health (test)", f"skipped: {health['skipped']}"))
        else:
            ranks = ", ".join(f"{a} {r['effective_rank']:.1f}/{r['dim']}" for a, r in health["axes"].items())
            lines.append(("embedding health (test): effective rank", ranks))
            lines.append(("collapse warnings", "; ".join(health["warnings"]) or "none"))
    return lines
