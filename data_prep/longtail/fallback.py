"""The grammar of every CLDR language without templates of its own: lists of names.

A caption is the CLDR names of some objects of the picture joined by the language's word for
"and" ("roter Apfel und Delfin", "pomme rouge et dauphin"): no articles, sizes, places or
ground colour, because none of them can be written correctly without knowing the language. Its
English translation (the `parallel` column) realises the same description, the same objects in
the same order ("a red apple and a dolphin"). What it can and cannot do: docs/longtail.md.
"""
from __future__ import annotations

from .descriptions import Description

# the word for "and" and how it is written between the last two names ({head}, {word}, {last});
# a language not listed here gets a comma list
AND = {"ar": ("و", "{head} {word}{last}"), "fa": ("و", "{head} {word} {last}"), "de": ("und", None),
       "fr": ("et", None), "it": ("e", None), "pt": ("e", None), "id": ("dan", None), "ru": ("и", None),
       "tr": ("ve", None), "ja": ("と", "{head}{word}{last}"), "ko": ("와", "{head}{word} {last}")}
SPACED = "{head} {word} {last}"
LIST_SEPARATOR = {"ja": "、", "ar": "، ", "fa": "، "}


def name_of(cldr: str) -> str:
    """The name of a CLDR short name: colons off, `_` as a space."""
    return cldr.strip(":").replace("_", " ")


def _korean_and(previous: str) -> str:
    """와 after a vowel, 과 after a final consonant (batchim) of the last Hangul syllable."""
    last = previous[-1]
    if "가" <= last <= "힣" and (ord(last) - ord("가")) % 28:
        return "과"
    return "와"


class Grammar:
    """Realises list descriptions in `lang` over the concept names `names` (id -> name)."""

    frames = ("bare",)
    sizes = False
    backgrounds = False

    def __init__(self, lang: str, names: dict[str, str]) -> None:
        self.lang = lang
        self.names = dict(names)

    def concepts(self, d: Description) -> list[str]:
        """The concept ids a realisation of `d` names, in the order of the text."""
        return d.concepts

    def forms(self, concept: str) -> list[str]:
        return [self.names[concept]]

    def realise(self, d: Description) -> str:
        if d.frame != "bare" or d.relation or d.background or any(m.size for m in d.mentions):
            raise ValueError(f"the {self.lang} fallback grammar writes lists of names only, got {d}")
        names = [self.names[m.concept] for m in d.mentions]
        separator = LIST_SEPARATOR.get(self.lang, ", ")
        if len(names) == 1 or self.lang not in AND:
            return separator.join(names)
        word, pattern = AND[self.lang]
        head = separator.join(names[:-1])
        if self.lang == "ko":
            word = _korean_and(head)
        return (pattern or SPACED).format(head=head, word=word, last=names[-1])
