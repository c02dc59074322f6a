"""Test-time reranking by the word pairs a run learnt from: of the student's n-best translations of
a source, keep the one that names the most of the English phrases the source's words and phrases
are paired with — the pairs the pictures induced (`data_prep.phrase_lexicon.word_pairs`, `train.py
--lexicon-pairs`) — and among those the student's best (`train.py --pair-rerank`, docs/translate.md).

The student learns a rare pair well enough to translate the word alone, yet in a sentence of three
objects it often writes a frequent name in its place; the right name is then often in its n-best
list. Where it is in none, forced names (`train.py --pair-force`) add candidates that write a missing
phrase at each word boundary of the chosen translation and let the student go on from there; one of
them is kept only if the student's own score of it is within a margin of its best. No picture is
read at test time: the source's words and the run's pairs choose.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NotRequired

import torch
from pydantic import NonNegativeFloat, NonNegativeInt
from typing_extensions import TypedDict

from models.typed_json import read_json

PAIRS_FILE = "word_pairs.json"
_TOKEN = re.compile(r"[^\W_]+")  # English words without punctuation, as the pairs' phrases were cut (data_prep.pivot)
Segmenter = Callable[[str, str], list[str]]  # (text, language) -> its words: data_prep.words.words


class PairsFile(TypedDict):
    """`RUN/model/word_pairs.json` (checked on reading by `models.typed_json`)."""

    lang: str
    size: NonNegativeInt  # the n-best size of the rerank; 0: the pairs are kept, translation is greedy
    pairs: dict[str, str]  # source words, lower-cased, joined by one space -> English phrase
    force: NotRequired[NonNegativeFloat]  # the forced names' margin; 0 or absent (files before it): none


def _padded(text: str) -> str:
    return f" {' '.join(_TOKEN.findall(text.lower()))} "


@dataclass(frozen=True)
class PairLexicon:
    """Source words and phrases (lower-cased words of `lang` as `segment` cuts them —
    `data_prep.words.words`, which the caller passes, so that models/ reads no data code; a phrase's
    words joined by one space) and the English phrase each names; `size`: the n-best list a translation is
    chosen from (0: none, greedy decoding); `force`: the margin, in the student's length-normalised
    log-probability, within which a forced name's candidate may be chosen (0: no forced names)."""
    lang: str
    pairs: dict[str, str]
    size: int
    segment: Segmenter = field(compare=False, repr=False)
    force: float = 0.0

    @classmethod
    def of(cls, lang: str, pairs: Iterable, size: int, segment: Segmenter, force: float = 0.0) -> PairLexicon:
        """From `WordPair`s (or anything with `.key` and `.english`)."""
        return cls(lang, {p.key: p.english for p in pairs}, size, segment, force)

    def phrases(self, source: str) -> list[str]:
        """The English phrases of the words and runs of words of `source` that have a pair, each once,
        by where they start (a longer run first)."""
        cut = [w.lower() for w in self.segment(source, self.lang)]
        runs = (" ".join(cut[start:start + n]) for start in range(len(cut))
                for n in range(min(self.longest, len(cut) - start), 0, -1))
        return list(dict.fromkeys(self.pairs[run] for run in runs if run in self.pairs))

    @cached_property
    def longest(self) -> int:
        """The most words of a paired source phrase."""
        return max((key.count(" ") + 1 for key in self.pairs), default=1)

    @staticmethod
    def named(candidate: str, phrases: Sequence[str]) -> int:
        """How many of `phrases` `candidate` names (as whole lower-cased words, punctuation aside)."""
        text = _padded(candidate)
        return sum(_padded(p) in text for p in phrases)

    def choose(self, sources: Sequence[str], candidates: Sequence[Sequence[str]], scores: torch.Tensor) -> list[int]:
        """Per source, the index of the candidate (best first) naming the most of its phrases; ties
        go to the higher student score (`scores[i, j]`, the length-normalised log-probability), then
        to the earlier candidate."""
        chosen = []
        for i, (source, options) in enumerate(zip(sources, candidates, strict=True)):
            phrases = self.phrases(source)
            chosen.append(max(range(len(options)),
                              key=lambda j: (self.named(options[j], phrases), float(scores[i, j]), -j)))
        return chosen

    def forced_prefixes(self, source: str, translation: str) -> list[str]:
        """The forced names' prefixes of `translation`: for each paired phrase of `source` that it
        does not name, its first i words and then the phrase, for every i from 0 to all its words."""
        cut = translation.split()
        return [" ".join([*cut[:i], phrase]) for phrase in self.phrases(source) if not self.named(translation, [phrase])
                for i in range(len(cut) + 1)]

    def choose_forced(self, source: str, options: Sequence[str], scores: Sequence[float]) -> int:
        """The index of the option naming the most of `source`'s phrases among those whose student
        score is within `force` of the best option's; ties as in `choose`."""
        phrases, best = self.phrases(source), max(scores)
        return max((j for j in range(len(options)) if scores[j] >= best - self.force),
                   key=lambda j: (self.named(options[j], phrases), scores[j], -j))

    def save(self, directory: Path) -> None:
        data = {"lang": self.lang, "size": self.size, "force": float(self.force), "pairs": self.pairs}
        (Path(directory) / PAIRS_FILE).write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n",
                                                  encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, segment: Segmenter) -> PairLexicon | None:
        """The pairs saved in `directory`, or None where none were."""
        path = Path(directory) / PAIRS_FILE
        if not path.is_file():
            return None
        data = read_json(path, PairsFile)
        return cls(data["lang"], data["pairs"], data["size"], segment, data.get("force", 0.0))
