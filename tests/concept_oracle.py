"""An independent recount of concept accuracy (the oracle of `eval.concepts`): whole-word search
with `re` word boundaries, case-insensitive, and the log2 frequency bins by `int.bit_length`."""
from __future__ import annotations

import re

from data_prep.targets import caption_hash


def words(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def names(text: str, forms) -> bool:
    """True when one of the English `forms` occurs in `text` as whole words."""
    return any(re.search(r"(?<![^\W_])" + words(f) + r"(?![^\W_])", words(text)) for f in forms)


def frequency_label(count: int) -> str:
    if count <= 0:
        return "0"
    low = 1 << (count.bit_length() - 1)
    return str(low) if low == 1 else f"{low}-{2 * low - 1}"


def recount(hyps, concepts, seen, english, sources=None, frequency=None) -> dict:
    """Per kind [correct, mentions] (and "copy": per kind mentions the source names); per sentence
    {"unseen", "seen", "correct"} ids; with `frequency`, per log2 bin [correct, mentions]."""
    out = {"seen": [0, 0], "unseen": [0, 0], "copy": {"seen": 0, "unseen": 0}, "sentences": [], "bins": {}}
    for i, (hyp, ids) in enumerate(zip(hyps, concepts)):
        entry = {"unseen": [], "seen": [], "correct": []}
        for c in dict.fromkeys(ids):
            kind = "seen" if c in seen else "unseen"
            hit = names(hyp, english[c])
            out[kind][0] += hit
            out[kind][1] += 1
            entry[kind].append(c)
            entry["correct"] += [c] if hit else []
            if sources is not None:
                out["copy"][kind] += names(sources[i], english[c])
            if frequency is not None:
                tally = out["bins"].setdefault(frequency_label(frequency.get(c, 0)), [0, 0])
                tally[0] += hit
                tally[1] += 1
        out["sentences"].append(entry)
    return out


def hashed_split(train, fraction: float, seed: int) -> tuple[set, set, int]:
    """A run's translated training captions recounted: the `round(fraction * captions)` non-empty
    source captions of `train` with the lowest `caption_hash` (as (row, caption) keys), the concepts
    they name (the seen ones), and the number of captions."""
    captions = [(caption_hash(r["image_id"], j, seed), i, j) for i, r in enumerate(train)
                for j, source in enumerate(r["source"]) if source.strip()]
    human = {(i, j) for _, i, j in sorted(captions)[:round(fraction * len(captions))]}
    seen = {c for i, r in enumerate(train) for j, ids in enumerate(r["source_concepts"]) if (i, j) in human for c in ids}
    return human, seen, len(captions)
