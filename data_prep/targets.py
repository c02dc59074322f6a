"""Training targets of source captions: human translations, and pseudo-translations earned from images.

A key is `(row, caption)`: a training-split row index and the index of a caption in its `source`
list. A `Target` is an English text with a weight (its share in the token cross-entropy) and an
origin: `human` (the dataset's `parallel` column), `pivot` (an English caption of the same image,
chosen by `data_prep.pivot`) or `self` (the student's own translation, kept by its CLIP pair in a
grounded self-training round). Human targets are never replaced by pseudo ones.

`--parallel-fraction P` simulates a lower-resource setting on any dataset: only the captions whose
stable hash of `(image_id, caption index, seed)` falls below a threshold keep their human
translation, chosen so that a fraction P of all training captions keeps one. The hash makes the
kept sets nested (P = 0.02 ⊂ 0.05 ⊂ 0.1) and independent of row order.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import datasets
from pydantic import NonNegativeFloat, NonNegativeInt
from typing_extensions import TypedDict
from typing import NotRequired

from models.typed_json import parse

ORIGINS = ("human", "pivot", "self")
Key = tuple[int, int]


class TargetRecord(TypedDict):
    """One line of a saved target table (`TargetTable.save`), checked when it is read back."""

    row: NonNegativeInt
    caption: NonNegativeInt
    text: str
    weight: NonNegativeFloat
    origin: Literal["human", "pivot", "self"]
    taught: NotRequired[list[bool]]


@dataclass(frozen=True)
class Target:
    """An English target: its text, its weight in the token cross-entropy, its origin, and which of
    its whitespace-separated words it teaches (`taught`, one flag per word; None: all of them — a
    pivot target teaches only the words its source explains, `data_prep.pivot.taught_words`)."""
    text: str
    weight: float = 1.0
    origin: str = "human"
    taught: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        if self.taught is not None and len(self.taught) != len(self.text.split()):
            raise ValueError(f"{len(self.taught)} taught flags for the {len(self.text.split())} words of {self.text!r}")


def caption_hash(image_id: str, caption: int, seed: int) -> float:
    """A uniform number in [0, 1) that depends only on the caption's identity and the seed."""
    digest = hashlib.blake2b(f"{seed}:{image_id}:{caption}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class TargetTable:
    """The target of every training caption that has one."""

    def __init__(self, targets: dict[Key, Target] | None = None) -> None:
        self.targets: dict[Key, Target] = dict(targets or {})

    @classmethod
    def from_dataset(cls, ds: datasets.Dataset, rows: Sequence[int], *, fraction: float | None = None,
                     seed: int = 0) -> TargetTable:
        """Human translations of the source captions of `rows`; with `fraction`, only those of a
        hashed subset holding that fraction of all the rows' source captions (ValueError when the
        dataset has fewer translations than that)."""
        items = []
        for row, item in zip(rows, ds.select(rows).select_columns(["image_id", "source", "parallel"])):
            for j, (source, parallel) in enumerate(zip(item["source"], item["parallel"])):
                if source.strip():
                    items.append(((row, j), item["image_id"], parallel.strip()))
        human = [(key, image_id, text) for key, image_id, text in items if text]
        if fraction is None:
            return cls({key: Target(text) for key, _, text in human})
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"--parallel-fraction must be in [0, 1], got {fraction}")
        wanted = round(fraction * len(items))
        if wanted > len(human):
            raise ValueError(f"--parallel-fraction {fraction} asks for {wanted} translated training captions, but "
                             f"the dataset has {len(human)} of {len(items)} ({len(human) / max(1, len(items)):.3f})")
        ranked = sorted(human, key=lambda item: caption_hash(item[1], item[0][1], seed))
        return cls({key: Target(text) for key, _, text in ranked[:wanted]})

    def __len__(self) -> int:
        return len(self.targets)

    def __contains__(self, key: Key) -> bool:
        return key in self.targets

    def get(self, key: Key) -> Target | None:
        return self.targets.get(key)

    def human_keys(self) -> set[Key]:
        return {k for k, t in self.targets.items() if t.origin == "human"}

    def with_pseudo(self, pseudo: dict[Key, Target], *, replace: Iterable[str] = ORIGINS[1:]) -> TargetTable:
        """A new table: the human targets, the pseudo targets of origins not in `replace`, and `pseudo`
        (never over a human target)."""
        replace = set(replace)
        kept = {k: t for k, t in self.targets.items() if t.origin == "human" or t.origin not in replace}
        kept.update({k: t for k, t in pseudo.items() if kept.get(k, Target("", origin="pivot")).origin != "human"})
        return TargetTable(kept)

    def counts(self) -> Counter:
        return Counter(t.origin for t in self.targets.values())

    def summary(self, total: int) -> str:
        c = self.counts()
        parts = [f"{c[o]} {o}" for o in ORIGINS if c[o]]
        return f"{len(self)} of {total} training captions have a target" + (f" ({', '.join(parts)})" if parts else "")

    # -- a run keeps the tables it trained on (RUN/targets/), so a resumed run reads the same ones --
    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for (row, caption), t in sorted(self.targets.items()):
                record = {"row": row, "caption": caption, **asdict(t)}
                if t.taught is None:  # the files of runs without taught words stay as they were
                    del record["taught"]
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> TargetTable:
        """A table saved by `save`; a line that does not hold a `TargetRecord` is a `ReadBackError`
        naming `path:line` and the field."""
        targets = {}
        for number, line in enumerate(Path(path).read_bytes().splitlines(), 1):
            if line.strip():
                rec = parse(line, TargetRecord, f"{path}:{number}")
                taught = rec.get("taught")
                targets[(rec["row"], rec["caption"])] = Target(rec["text"], rec["weight"], rec["origin"],
                                                               None if taught is None else tuple(taught))
        return cls(targets)

    def __iter__(self) -> Iterator[tuple[Key, Target]]:
        return iter(self.targets.items())
