"""How much of the test text a small translated subset never shows: the coverage table.

Take a fraction P of the training captions as the translated ones — the same hashed, nested
subset training takes with `--parallel-fraction P` (`data_prep.targets.caption_hash` of image id,
caption index and seed) — and count, over the test captions, the tokens whose word never occurs in
them ("unseen") and the captions made only of words that do ("fully covered"). With `draws` > 1
the table is the mean over the seeds seed, seed+1, ... (with the range). Also the Zipf exponent of
a corpus's word frequencies (maximum likelihood over ranks). docs/longtail.md, "Stats".
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .targets import caption_hash

DEFAULT_FRACTIONS = (0.02, 0.05, 0.3)


@dataclass(frozen=True)
class Caption:
    """A caption's identity (image id, index in its row) and its words."""

    image_id: str
    index: int
    words: tuple[str, ...]


def translated_subset(train: Sequence[Caption], fraction: float, seed: int) -> list[Caption]:
    """The `round(fraction * len(train))` captions of smallest hash: nested in the fraction."""
    ranked = sorted(train, key=lambda c: caption_hash(c.image_id, c.index, seed))
    return ranked[:round(fraction * len(train))]


def coverage(train: Sequence[Caption], test: Sequence[Caption], fraction: float, seed: int) -> tuple[float, float]:
    """(share of test tokens unseen, share of test captions fully covered) at `fraction`."""
    seen = {w for c in translated_subset(train, fraction, seed) for w in c.words}
    tokens = sum(len(c.words) for c in test)
    unseen = sum(w not in seen for c in test for w in c.words)
    covered = sum(all(w in seen for w in c.words) for c in test)
    return unseen / max(1, tokens), covered / max(1, len(test))


def coverage_table(train: Sequence[Caption], test: Sequence[Caption], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                   seed: int = 0, draws: int = 1) -> dict:
    """The table as a dict: corpus sizes, word types of the training captions, and per fraction the
    mean (and min, max over `draws` seeds) of both shares."""
    rows = {}
    for fraction in fractions:
        results = [coverage(train, test, fraction, seed + k) for k in range(draws)]
        unseen, covered = zip(*results)
        rows[f"{fraction:g}"] = {
            "translated_captions": round(fraction * len(train)),
            "test_tokens_unseen": sum(unseen) / draws, "test_tokens_unseen_range": [min(unseen), max(unseen)],
            "test_captions_covered": sum(covered) / draws, "test_captions_covered_range": [min(covered), max(covered)],
        }
    return {
        "word_types": len({w for c in train for w in c.words}),
        "train_captions": len(train), "test_captions": len(test),
        "test_tokens": sum(len(c.words) for c in test),
        "seed": seed, "draws": draws, "fractions": rows,
    }


def format_table(name: str, table: dict) -> str:
    """The table as the issue prints it: one line per corpus (a Markdown row) and a header."""
    fractions = list(table["fractions"])
    header = ("| | word types | " + " | ".join(f"P = {f}: test tokens unseen / test captions fully covered"
                                               for f in fractions) + " |")
    cells = [f"{100 * r['test_tokens_unseen']:.1f}% / {100 * r['test_captions_covered']:.1f}%"
             for r in table["fractions"].values()]
    line = f"| {name} | {table['word_types']:,} | " + " | ".join(cells) + " |"
    draws = (f"mean of {table['draws']} hashed subsets (seeds {table['seed']}..{table['seed'] + table['draws'] - 1})"
             if table["draws"] > 1 else f"one hashed subset (seed {table['seed']})")
    note = (f"{table['train_captions']:,} training captions, {table['test_captions']:,} test captions "
            f"({table['test_tokens']:,} tokens); {draws}")
    return "\n".join([header, "|---|---|" + "---|" * len(fractions), line, note])


def fit_zipf(counts: Counter) -> float:
    """Maximum-likelihood exponent s of p(rank r) ∝ r^-s over the ranks of `counts` (word frequencies)."""
    from scipy.optimize import minimize_scalar

    freqs = sorted(counts.values(), reverse=True)
    logs = [math.log(r) for r in range(1, len(freqs) + 1)]
    total = sum(freqs)
    weighted = sum(f * lr for f, lr in zip(freqs, logs))

    def nll(s: float) -> float:
        return s * weighted + total * math.log(sum(math.exp(-s * lr) for lr in logs))

    return float(minimize_scalar(nll, bounds=(0.05, 5.0), method="bounded").x)
