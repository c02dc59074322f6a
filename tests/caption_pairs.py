"""Procedural COCO-style caption pairs for metric tests and benchmarks.

A reference is an English image caption; its candidate imitates what an MT student produces:
the same caption, a paraphrase (synonyms, other word order), a degraded output (dropped or
repeated words, a wrong object) or a caption of a different picture. Seeded and offline.
"""
from __future__ import annotations

import random

SUBJECTS = ["a man", "a woman", "a young girl", "a little boy", "two dogs", "a brown dog",
            "a black cat", "a group of people", "an old man", "a tennis player", "a surfer",
            "a giraffe", "two zebras", "a baseball player", "a chef", "a skateboarder"]
SYNONYMS = {"a man": "a guy", "a woman": "a lady", "a little boy": "a small child",
            "a brown dog": "a dog", "a group of people": "some people", "riding": "on",
            "holding": "carrying", "sitting on": "seated on", "next to": "beside",
            "a street": "the road", "a park": "the park", "large": "big", "small": "little"}
ACTIONS = ["riding a bicycle", "holding an umbrella", "sitting on a bench", "eating a pizza",
           "throwing a frisbee", "standing next to a bus", "walking along the beach",
           "playing with a ball", "flying a kite", "looking at a large clock",
           "riding a wave", "cutting a cake", "swinging a racket", "jumping over a ramp",
           "lying on a small bed", "drinking a cup of coffee"]
PLACES = ["in a park", "on a street", "near the water", "in a kitchen", "on a snowy hill",
          "in front of a building", "at the zoo", "on a grassy field", "in a living room", ""]
OBJECTS = ["bicycle", "umbrella", "bench", "pizza", "frisbee", "bus", "ball", "kite", "clock"]


def caption(rng: random.Random) -> str:
    parts = [rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(PLACES)]
    return " ".join(p for p in parts if p) + rng.choice([".", ""])


def _paraphrase(ref: str, rng: random.Random) -> str:
    out = ref
    for a, b in SYNONYMS.items():
        if a in out and rng.random() < 0.6:
            out = out.replace(a, b, 1)
    return out


def _degrade(ref: str, rng: random.Random) -> str:
    words = ref.rstrip(".").split()
    kind = rng.choice(["drop", "repeat", "swap_object", "stutter"])
    if kind == "drop" and len(words) > 3:
        del words[rng.randrange(len(words))]
    elif kind == "repeat":
        k = rng.randrange(len(words))
        words[k:k] = [words[k]] * rng.randint(1, 3)
    elif kind == "swap_object":
        words[-1] = rng.choice(OBJECTS)
    else:  # a student that loops on its first words
        words = words[:3] * 2 + words[3:5]
    return " ".join(words)


def caption_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(candidates, references): n pairs with a realistic mix of quality."""
    rng = random.Random(seed)
    cands, refs = [], []
    for _ in range(n):
        ref = caption(rng)
        kind = rng.random()
        if kind < 0.15:
            cand = ref
        elif kind < 0.45:
            cand = _paraphrase(ref, rng)
        elif kind < 0.85:
            cand = _degrade(_paraphrase(ref, rng), rng)
        else:
            cand = caption(rng)
        cands.append(cand)
        refs.append(ref)
    return cands, refs
