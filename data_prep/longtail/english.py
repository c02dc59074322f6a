"""English grammar of the long-tail world: CLDR English names as noun phrases.

A concept is named by its CLDR English name, lower case, `_` as a space ("red apple"). How a name
enters a caption depends on its kind (docs/longtail.md, "Grammar"):
- `count`: a singular count noun phrase, with "a"/"an" by the sound of the next word ("an
  eagle", "a unicorn", "an sos button") and an optional size word ("a small red apple");
- `emoji`: names that are not singular count noun phrases (plurals such as "books", mass nouns
  such as "fog", adjectives and verb phrases such as "dizzy" or "rolling on the floor laughing",
  proper names such as "leo") are said as emoji: "a books emoji", "a small dizzy emoji";
- `clock`: clock faces, "a clock showing eight o’clock";
- `sign`: prohibitions, "a no smoking sign", "a prohibited sign".
A name is plural when the last word of its head (the words before its first preposition) ends in
"s" but not in "ss", "us" or "is", or is an irregular plural; every such name is an `emoji`, so a
singular wrongly taken for a plural still reads well ("a rhinoceros emoji").
"""
from __future__ import annotations

import re

from .descriptions import Description, Mention

FRAMES = ("bare", "there", "picture", "relation", "copula", "row")  # every frame; sizes and grounds too
RELATIONS = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below",
             "beside": "next to"}
SIZES = {"small": "small", "large": "large"}
COLORS = {c: c for c in ("red", "orange", "yellow", "green", "blue", "purple", "pink", "grey", "white")}

PREPOSITIONS = {"with", "of", "in", "on", "at", "for", "from", "behind", "under", "over", "without", "and", "into",
                "to", "by", "showing", "holding", "pointing", "tilted", "facing", "wearing", "getting"}
IRREGULAR_PLURALS = {"people", "men", "women", "children", "feet", "teeth", "mice", "geese"}
# Names that are not singular count noun phrases though the plural rule misses them.
EMOJI_NAMES = {
    "zzz", "aquarius", "aries", "cancer", "capricorn", "gemini", "leo", "libra", "ophiuchus", "pisces",
    "sagittarius", "scorpio", "taurus", "virgo", "mrs. claus", "santa claus", "statue of liberty", "tokyo tower",
    "mount fuji", "milky way", "kaaba", "om", "yin yang", "bacon", "badminton", "bowling", "bread", "breast-feeding",
    "broccoli", "butter", "camping", "canned food", "construction", "cooked rice", "cooking", "copyright", "coral",
    "curry rice", "custard", "dashing away", "divide", "dizzy", "dna", "fire", "fog", "foggy", "fondue", "garlic",
    "high voltage", "ice", "ice hockey", "infinity", "information", "input latin lowercase",
    "input latin uppercase", "lacrosse", "left luggage", "locked", "unlocked", "luggage", "mate", "minus",
    "multiply", "plus", "non-potable water", "potable water", "passport control", "ping pong", "popcorn",
    "prohibited", "radioactive", "registered", "trade mark", "rolling on the floor laughing", "salt", "sake",
    "shaved ice", "spaghetti", "star-struck", "sushi", "tennis", "thread", "wireless", "wood", "yarn",
    "vibration mode", "mobile phone off", "meat on bone", "money with wings", "oden", "baguette bread",
    "baggage claim", "thumbs up", "thumbs down", "palms up together", "low battery", "biohazard",
    "field hockey", "cricket game", "american football", "rugby football", "water polo", "love-you gesture",
    "heart exclamation", "sign of the horns", "keycap 10", "new moon", "full moon", "desert",
}
# First words whose article the spelling rule gets wrong
ARTICLES = {"one-piece": "a", "one": "a", "one-thirty": "a", "unicorn": "a", "european": "a", "euro": "a",
            "ewe": "a", "uniform": "a", "hourglass": "an", "x-ray": "an", "atm": "an", "sos": "an", "id": "an",
            "ng": "an", "ok": "an", "a": "an", "ab": "an", "o": "an", "m": "an", "honest": "an", "heir": "an",
            "hour": "an", "s": "an", "f": "an", "l": "an", "n": "an", "r": "an", "x": "an", "h": "an"}
CLOCK = re.compile(r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)(?: o’clock|-thirty)")
SIGN = re.compile(r"no .+|prohibited")

KINDS = ("count", "emoji", "clock", "sign")


def name_of(cldr: str) -> str:
    """The English name of a CLDR short name: colons off, `_` as a space, lower case."""
    return cldr.strip(":").replace("_", " ").lower()


def article(word: str) -> str:
    """"a" or "an" before `word`, by its sound: the spelling rule and the exceptions of `ARTICLES`."""
    key = word.lower()
    if key in ARTICLES:
        return ARTICLES[key]
    if any(key.startswith(p) for p in ("uni", "use", "usu", "ute", "eu", "ewe", "one")):
        return "a"
    return "an" if key[:1] in "aeiou" else "a"


def is_plural(name: str) -> bool:
    """The head of `name` (its words before the first preposition) ends in a plural noun."""
    words = name.split()
    head = []
    for w in words:
        if head and w in PREPOSITIONS:
            break
        head.append(w)
    last = head[-1].rstrip("!’'")
    if any(w in IRREGULAR_PLURALS for w in head):
        return True
    return last.endswith("s") and not last.endswith(("ss", "us", "is"))


def kind(name: str) -> str:
    """How the English name enters a caption (module docstring)."""
    if CLOCK.fullmatch(name):
        return "clock"
    if SIGN.fullmatch(name):
        return "sign"
    if name in EMOJI_NAMES or is_plural(name):
        return "emoji"
    return "count"


class Grammar:
    """Realises descriptions in English over the concept names `names` (id -> English name)."""

    lang = "en"
    frames = FRAMES
    sizes = True
    backgrounds = True

    def __init__(self, names: dict[str, str]) -> None:
        self.names = dict(names)
        self.kinds = {cid: kind(name) for cid, name in self.names.items()}

    def concepts(self, d: Description) -> list[str]:
        """The concept ids a realisation of `d` names, in the order of the text."""
        return d.concepts

    def forms(self, concept: str) -> list[str]:
        """The surface forms a caption uses for `concept` (the name itself, whatever its kind)."""
        return [self.names[concept]]

    def mention(self, m: Mention) -> str:
        name, k = self.names[m.concept], self.kinds[m.concept]
        size = [SIZES[m.size]] if m.size else []
        if k == "clock":
            words = [*size, "clock", "showing", name]
        elif k == "sign":
            words = [*size, name, "sign"]
        elif k == "emoji":
            words = [*size, name, "emoji"]
        else:
            words = [*size, name]
        return " ".join([article(words[0].split()[0]), *words])

    def realise(self, d: Description) -> str:
        parts = [self.mention(m) for m in d.mentions]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        color = COLORS[d.background] if d.background else None
        ground = f" on {article(color)} {color} background" if color else ""
        if d.frame == "bare":
            return listed + ground
        if d.frame == "there":
            return f"there is {listed}{ground}"
        if d.frame == "picture":
            return f"a picture of {listed}{ground}"
        if d.frame == "row":
            return f"from left to right: {listed}" + (f",{ground}" if ground else "")
        rel = RELATIONS[d.relation]
        if d.frame == "relation":
            return f"{parts[0]} {rel} {parts[1]}{ground}"
        if d.frame == "copula":
            return f"{parts[0]} is {rel} {parts[1]}{ground}"
        raise ValueError(f"unknown frame {d.frame!r}")
