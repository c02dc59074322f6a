"""The lexicon induced through pictures, judged as a lexicon: precision at 1 against the Unicode
CLDR name pairs of a world that knows what its captions name (`concepts.json`).

For every concept whose source name occurs in the training captions, the name's pictures (the
training pictures whose source captions hold one of its source forms) are looked up in the
`data_prep.phrase_lexicon.PhraseLexicon` of the training split, and its best English phrase is
right when it is one of the concept's English forms. Four rankings:

- `cooccurrence`: the Dice coefficient of the picture sets alone;
- `explained`: the same, counting a phrase in a picture only where the picture's other source words
  (not the name's own) do not already claim it (`PhraseLexicon.candidates(explain=...)`);
- `teacher`: among the `k` best by co-occurrence, the CLIP teacher's choice — the phrase whose
  text embedding is closest to the name's pictures, centred by its mean closeness to all training
  pictures (a phrase CLIP likes everywhere gains nothing);
- `both`: co-occurrence first, the teacher choosing among the phrases within `tie` of the best
  Dice (phrases that share every picture tie by co-occurrence; the picture tells them apart).

Precision is reported over all queried concepts, by the concept's training frequency (training
source captions that name it, log2 bins), and split into the concepts some human translation of
the run shows (`seen`) and the others (`unseen`). Beside the rankings, the same tallies of two
ceilings, which need no teacher: how often the right phrase is among the `k` candidates at all
(`top_k`: the most any choice among them, the `teacher` ranking's, can reach) and among those within
`tie` of the best Dice (`within_tie`: the most the `both` ranking can reach).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data_prep.concepts import ConceptInventory
from data_prep.phrase_lexicon import PhraseLexicon
from data_prep.words import words
from eval.concepts import bin_order, frequency_bin, normalise

RANKINGS = ("cooccurrence", "explained", "teacher", "both")
CEILINGS = ("top_k", "within_tie")


@dataclass(frozen=True)
class TeacherScores:
    """How close the CLIP teacher puts English phrases to pictures: `image_features` [N, F] of the
    lexicon's pictures (unit rows), `encode_texts(phrases) -> [P, F]` (unit rows) and the prompt
    template a phrase is read in."""

    image_features: torch.Tensor
    encode_texts: Callable[[Sequence[str]], torch.Tensor]
    template: str = "a picture of a {}"

    def __call__(self, pictures: Sequence[int], phrases: Sequence[str]) -> list[float]:
        text = F.normalize(self.encode_texts([self.template.format(p) for p in phrases]).float(), dim=-1)
        sims = self.image_features.float() @ text.T  # [N, P]
        return (sims[list(pictures)].mean(0) - sims.mean(0)).tolist()


def evaluate_lexicon(lexicon: PhraseLexicon, inventory: ConceptInventory, train_frequency: Mapping[str, int],
                     seen: set[str], teacher: TeacherScores | None = None, *, k: int = 20,
                     tie: float = 0.05) -> dict:
    """Precision at 1 of each ranking (`teacher` and `both` need `teacher`) and the two ceilings,
    overall, by training frequency and for seen/unseen concepts, with each concept's top phrases
    and the rank of its first right phrase among the `k` candidates (None: not among them)."""
    rankings = RANKINGS if teacher is not None else RANKINGS[:2]
    tally = {r: {"all": [0, 0], "seen": [0, 0], "unseen": [0, 0], "by_frequency": {}} for r in rankings + CEILINGS}
    entries = []
    for concept in inventory.concepts:
        count = train_frequency.get(concept.id, 0)
        pictures = frozenset().union(*(lexicon.pictures_of(form) for form in concept.source))
        if not count or not pictures:
            continue
        candidates = lexicon.candidates(pictures, k)
        gold = {normalise(form).strip() for form in concept.english}
        own = frozenset(w.lower() for form in concept.source for w in words(form, inventory.lang))
        explained = lexicon.candidates(pictures, 1, explain=own)
        picks = {"cooccurrence": candidates[0][0] if candidates else None,
                 "explained": explained[0][0] if explained else None}
        near = [i for i, (_, dice) in enumerate(candidates) if dice >= candidates[0][1] - tie]
        if teacher is not None and candidates:
            scores = teacher(sorted(pictures), [p for p, _ in candidates])
            picks["teacher"] = candidates[max(range(len(candidates)), key=scores.__getitem__)][0]
            picks["both"] = candidates[max(near, key=scores.__getitem__)][0]
        rank = next((i + 1 for i, (p, _) in enumerate(candidates) if p in gold), None)
        hits = {r: picks.get(r) in gold for r in rankings}
        hits |= {"top_k": rank is not None, "within_tie": rank is not None and rank - 1 in near}
        kind = "seen" if concept.id in seen else "unseen"
        for r, hit in hits.items():
            for key in ("all", kind):
                tally[r][key][0] += hit
                tally[r][key][1] += 1
            cell = tally[r]["by_frequency"].setdefault(frequency_bin(count), [0, 0])
            cell[0] += hit
            cell[1] += 1
        entries.append({"id": concept.id, "source": concept.source[0], "english": concept.english[0],
                        "train_captions": count, "kind": kind, "picks": picks, "gold_rank": rank,
                        "candidates": [[p, round(d, 4)] for p, d in candidates[:5]]})

    def share(pair: list[int]) -> dict:
        return {"correct": pair[0], "concepts": pair[1], "precision_at_1": pair[0] / pair[1] if pair[1] else None}

    result = {r: {"all": share(t["all"]), "seen": share(t["seen"]), "unseen": share(t["unseen"]),
                  "by_frequency": [{"train_captions": b, **share(v)} for b, v in
                                   sorted(t["by_frequency"].items(), key=lambda kv: bin_order(kv[0]))]}
              for r, t in tally.items()}
    return {"rankings": {r: result[r] for r in rankings}, "ceilings": {c: result[c] for c in CEILINGS}, "k": k,
            "tie": tie, "concepts": entries}
