"""The dataset contract of docs/design.md §3: columns, features, provenance codes, text normalisation.

Every builder produces records with exactly these columns; `writer.write_dataset` is the one
place that turns them into a `datasets.DatasetDict`.
"""
from __future__ import annotations

import unicodedata

import datasets

COLUMNS = ("image", "image_id", "lang", "source", "english", "parallel", "provenance")

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_id": datasets.Value("string"),
        "lang": datasets.Value("string"),
        "source": datasets.Sequence(datasets.Value("string")),
        "english": datasets.Sequence(datasets.Value("string")),
        "parallel": datasets.Sequence(datasets.Value("string")),
        "provenance": datasets.Value("string"),
    }
)

# Optional columns: written by the builders that know them, with exactly these types; a dataset
# either has one in every row of every split or not at all.
OPTIONAL_FEATURES = datasets.Features(
    {
        # per source caption, the ids of the concepts it names (worlds that know them, e.g. `longtail`)
        "source_concepts": datasets.Sequence(datasets.Sequence(datasets.Value("string"))),
    }
)


def features_for(columns) -> datasets.Features:
    """The features of a dataset holding the contract's columns plus the optional `columns` named."""
    extra = [c for c in OPTIONAL_FEATURES if c in set(columns)]
    return datasets.Features({**FEATURES, **{c: OPTIONAL_FEATURES[c] for c in extra}})


SPLITS = ("train", "validation", "test")

# Provenance codes: who wrote each text column.
HUMAN_WRITTEN = "hw"
HUMAN_TRANSLATED = "ht"
MACHINE_TRANSLATED = "mt"
SYNTHETIC = "syn"
NONE = "none"
PROVENANCE_CODES = (HUMAN_WRITTEN, HUMAN_TRANSLATED, MACHINE_TRANSLATED, SYNTHETIC, NONE)


def provenance(dataset: str, split: str, **columns: str) -> str:
    """Provenance string `"<dataset>/<split>/<col>=<code>,..."`, e.g.
    `coco-cn/train/source=hw,english=hw,parallel=none`. A column mixing origins joins codes with
    `+` in caption order, e.g. `source=hw+ht` (human-written captions, then human translations)."""
    for col, code in columns.items():
        if any(part not in PROVENANCE_CODES for part in code.split("+")):
            raise ValueError(f"unknown provenance code {code!r} for {col}; expected one of {PROVENANCE_CODES}, "
                             "or several joined by '+'")
    codes = ",".join(f"{col}={code}" for col, code in columns.items())
    return f"{dataset}/{split}/{codes}"


def normalize_text(text: str) -> str:
    """Unicode NFC and outer whitespace trimming — the only change ever made to raw text."""
    return unicodedata.normalize("NFC", text).strip()
