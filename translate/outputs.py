"""The files derived from a finished `corpus.jsonl`: Moses-aligned text, TSV, TMX, summary, histograms.

All of them are rewritten from the records at the end of every `translate corpus` run, so they
always agree with `corpus.jsonl`: the aligned files, the TSV rows and the TMX `<tu>`s are exactly
the records whose `aligned_line` is set, in that order.
"""
from __future__ import annotations

import csv
import io
import json
import os
import statistics
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from translate.flags import ALWAYS_EXCLUDED, Filters
from translate.inputs import Inputs

TSV_COLUMNS = ("id", "image_id", "file_name", "source", "translation", "grounding", "source_image_score",
               "length_ratio")
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_outputs(records: list[dict], out: Path, *, src_lang: str, filters: Filters, tmx: bool, inputs: Inputs,
                  resumed: int, model: dict, num_beams: int = 1, rerank: dict | None = None,
                  word_pairs: dict | None = None) -> dict:
    """Write every derived file into `out`; return the summary dict (also `summary.json`)."""
    aligned = [r for r in records if r["aligned_line"] is not None]
    atomic_write(out / f"corpus.{src_lang}", "".join(r["source"] + "\n" for r in aligned))
    atomic_write(out / "corpus.en", "".join(r["translation"] + "\n" for r in aligned))
    atomic_write(out / "corpus.tsv", tsv_text(aligned))
    if tmx:
        atomic_write(out / "corpus.tmx", tmx_text(aligned, src_lang))
    plots = histograms(records, out, filters)
    files = sorted([f"corpus.{src_lang}", "corpus.en", "corpus.tsv", "corpus.jsonl", "input_report.jsonl",
                    *(["corpus.tmx"] if tmx else []), *plots])
    summary = summarize(records, aligned, src_lang=src_lang, filters=filters, inputs=inputs, resumed=resumed,
                        model=model, num_beams=num_beams, rerank=rerank, word_pairs=word_pairs, files=files)
    atomic_write(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    atomic_write(out / "summary.md", summary_markdown(summary))
    return summary


def _cell(value) -> str:
    return "" if value is None else str(value)


def tsv_text(aligned: list[dict]) -> str:
    """Header + one row per aligned record (csv quoting protects a tab inside a caption)."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    writer.writerows([_cell(r[c]) for c in TSV_COLUMNS] for r in aligned)
    return buf.getvalue()


def tmx_text(aligned: list[dict], src_lang: str) -> str:
    """A TMX 1.4 document with one `<tu>` (tuid = record id) per aligned record; ElementTree escapes."""
    header = ET.Element("header", {"creationtool": "groundmt-translate", "creationtoolversion": "1",
                                   "datatype": "plaintext", "segtype": "sentence", "adminlang": "en",
                                   "srclang": src_lang, "o-tmf": "groundmt-corpus.jsonl"})
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<!DOCTYPE tmx SYSTEM "tmx14.dtd">', '<tmx version="1.4">',
             "  " + ET.tostring(header, encoding="unicode"), "  <body>"]
    for r in aligned:
        tu = ET.Element("tu", {"tuid": r["id"]})
        for kind in ("grounding", "source_image_score"):
            if r[kind] is not None:
                ET.SubElement(tu, "prop", {"type": f"x-{kind}"}).text = str(r[kind])
        ET.SubElement(tu, "prop", {"type": "x-image_id"}).text = r["image_id"]
        for lang, text in ((src_lang, r["source"]), ("en", r["translation"])):
            ET.SubElement(ET.SubElement(tu, "tuv", {XML_LANG: lang}), "seg").text = text
        lines.append("    " + ET.tostring(tu, encoding="unicode"))
    return "\n".join(lines + ["  </body>", "</tmx>", ""])


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"n": len(values), "mean": statistics.fmean(values), "min": min(values), "q1": q[0], "median": q[1],
            "q3": q[2], "max": max(values)}


def summarize(records: list[dict], aligned: list[dict], *, src_lang: str, filters: Filters, inputs: Inputs,
              resumed: int, model: dict, files: list[str], num_beams: int = 1, rerank: dict | None = None,
              word_pairs: dict | None = None) -> dict:
    """The summary dict; `decoding.rerank.changed` counts the records whose translation is not the
    student's best candidate (`nbest_index` > 0); `decoding.word_pairs` (where the run's word pairs
    chose the translations: `{"pairs", "size", "force"}`) says how."""
    flags = Counter(f for r in records for f in r["flags"])
    if rerank is not None:
        rerank = {**rerank, "changed": sum(1 for r in records if (r.get("nbest_index") or 0) > 0)}
    if word_pairs:
        num_beams = max(num_beams, word_pairs["size"])  # the n-best list the pairs choose from
    return {
        **model, "input": inputs.fingerprint, "src_lang": src_lang,
        "decoding": {"num_beams": num_beams if rerank is None else rerank["size"], "rerank": rerank,
                     **({"word_pairs": word_pairs} if word_pairs else {})},
        "records": len(records), "aligned_pairs": len(aligned), "resumed_records": resumed,
        "flags": dict(sorted(flags.items())),
        "thresholds": {"min_grounding": filters.min_grounding, "dedupe": filters.dedupe,
                       "always_excluded_flags": list(ALWAYS_EXCLUDED)},
        "skipped_inputs": inputs.skipped_counts(),
        "flagged_inputs": dict(Counter(r["reason"] for r in inputs.report if r["action"] == "flagged")),
        "scores": {key: _stats([r[key] for r in records if r[key] is not None])
                   for key in ("grounding", "source_image_score", "length_ratio")},
        "files": files,
    }


def summary_markdown(s: dict) -> str:
    lines = [f"# Corpus summary — run `{s['run_id']}`", "",
             f"- records (captions): {s['records']}", f"- aligned pairs (`corpus.{s['src_lang']}` / `corpus.en`): "
             f"{s['aligned_pairs']}", f"- records reused from an interrupted run: {s['resumed_records']}",
             f"- decoding: {decoding_line(s['decoding'])}",
             f"- thresholds: min grounding = {s['thresholds']['min_grounding']}, dedupe = {s['thresholds']['dedupe']}; "
             f"always excluded: {', '.join(s['thresholds']['always_excluded_flags'])}", "",
             "| flag | records |", "|---|---|"]
    lines += [f"| {flag} | {n} |" for flag, n in s["flags"].items()] or ["| (none) | 0 |"]
    lines += ["", "| skipped input (input_report.jsonl) | lines |", "|---|---|"]
    lines += [f"| {reason} | {n} |" for reason, n in s["skipped_inputs"].items()] or ["| (none) | 0 |"]
    lines += ["", "| score | n | mean | min | median | max |", "|---|---|---|---|---|---|"]
    for key, st in s["scores"].items():
        lines.append(f"| {key} | " + (" | ".join([str(st["n"])] + [f"{st[k]:.3f}" for k in ("mean", "min", "median",
                                                                                           "max")]) if st else
                                     "0 | – | – | – | –") + " |")
    return "\n".join(lines) + "\n"


def decoding_line(decoding: dict) -> str:
    """One line for summary.md: the search, and the reranking when there was one."""
    beams = decoding["num_beams"]
    search = "greedy" if beams == 1 else f"beam search, {beams} beams"
    rerank, pairs = decoding["rerank"], decoding.get("word_pairs")
    if pairs:
        forced = f", with forced names within {pairs['force']:g} of the student's best" if pairs["force"] else ""
        return f"{search}; the n-best list reranked by the run's {pairs['pairs']} word pairs{forced}"
    if rerank is None:
        return search
    return (f"{search}; n-best of {rerank['size']} reranked by {rerank['method'].upper()} with each caption's image "
            f"(beta = {rerank['beta']}); {rerank['changed']} translations differ from the student's best")


def histograms(records: list[dict], out: Path, filters: Filters) -> list[str]:
    """`grounding_hist.png` and `length_ratio_hist.png` (matplotlib Agg); returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for key, label, line in (("grounding", "CLIP image–translation cosine", filters.min_grounding),
                             ("length_ratio", "translation / source length (characters)", None)):
        values = [r[key] for r in records if r[key] is not None]
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        ax.hist(values, bins=30, color="#4477aa")
        if line is not None:
            ax.axvline(line, color="#cc3311", linestyle="--", label=f"--min-grounding {line}")
            ax.legend()
        ax.set(xlabel=label, ylabel="captions", title=f"{key} ({len(values)} captions)")
        fig.tight_layout()
        fig.savefig(out / f"{key}_hist.png")
        plt.close(fig)
        names.append(f"{key}_hist.png")
    return names
