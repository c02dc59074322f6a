"""A phrase lexicon induced through pictures: which English phrase a source phrase names, from
which pictures each one's captions mention — no translation read.

Every English phrase (a run of up to `max_words` lower-cased words of an English caption) is
indexed by the pictures whose English captions hold it. A source phrase is looked up by the
pictures whose source captions hold it (whole words where the language writes spaces, a substring
where it does not), and the English phrases are ranked by the Dice coefficient of the two picture
sets, 2·|A ∩ B| / (|A| + |B|): 1 when the two always come together, however rare. Phrases that
share every picture tie; a teacher that reads English and pictures (`eval.lexicon`) can break the
ties. This is the phrase-level twin of the piece-level `data_prep.pivot.Lexicon`; `eval.lexicon`
measures it against the Unicode CLDR name pairs of the long-tail world (precision at 1).
`word_pairs` turns it into training pairs: each source word and the English phrase that names it
(`train.py --lexicon-pairs`, docs/lexicon.md); `phrase_pairs` does the same for runs of 2 or more
source words no translation shows as a whole ("luna llena" → "full moon", whose words a translation
may show one by one; `train.py --lexicon-phrase-words`). With `explain`, a phrase is counted in a
picture only where no other source word of that picture already names it (`PhraseLexicon.claims`):
the frequent words explain their names away, and what is left of a word of one picture is its own
name (`word_pairs(explain=True)`, `train.py --lexicon-explain-away`, docs/lexicon.md "Explaining away").
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import datasets

from .pivot import english_words
from .words import UNSPACED
from .words import words as segmented

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
TEMPLATE_WORD_SHARE = 0.05  # a word in more of the pictures' English captions belongs to the template
CLAIM_PICTURES = 4  # a source word of this many pictures or more claims its best phrase (explaining away)


def _normalised(text: str) -> str:
    return f" {_NON_WORD.sub(' ', text.lower()).strip()} "


@dataclass
class PhraseLexicon:
    """English phrases by the pictures they occur with, and the source captions to look phrases up in."""

    english: dict[str, frozenset[int]]  # phrase -> picture indices
    phrases: list[frozenset[str]]  # picture index -> the English phrases of its captions
    sources: list[str]  # normalised source captions of all pictures, joined per picture
    spaced: bool
    source_words: list[frozenset[str]] = field(default_factory=list)  # picture -> its source words, lower case
    word_pictures: dict[str, frozenset[int]] = field(default_factory=dict)  # source word -> pictures
    _claims: dict[str, frozenset[str]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.source_words:  # spaced text: the words of the normalised captions
            self.source_words = [frozenset(text.split()) for text in self.sources]
        if not self.word_pictures:
            index: dict[str, set[int]] = defaultdict(set)
            for i, mine in enumerate(self.source_words):
                for word in mine:
                    index[word].add(i)
            self.word_pictures = {k: frozenset(v) for k, v in index.items()}

    @classmethod
    def induce(cls, ds: datasets.Dataset, rows: Sequence[int], lang: str, *, max_words: int = 6) -> PhraseLexicon:
        """Index the English phrases and source captions of the pictures `rows` of `ds`."""
        english: dict[str, set[int]] = defaultdict(set)
        phrases, sources, source_words = [], [], []
        spaced = lang.split("-")[0].lower() not in UNSPACED
        for i, item in enumerate(ds.select(rows).select_columns(["source", "english"])):
            mine = set()
            for caption in item["english"]:
                tokens = english_words(caption)
                mine.update(" ".join(tokens[start:start + n]) for n in range(1, max_words + 1)
                            for start in range(len(tokens) - n + 1))
            for phrase in mine:
                english[phrase].add(i)
            phrases.append(frozenset(mine))
            sources.append(" ".join(_normalised(s) for s in item["source"] if s.strip()))
            if not spaced:  # segmented (`data_prep.words`): what explaining away reads as a caption's words
                source_words.append(frozenset(w.lower() for s in item["source"] for w in segmented(s, lang)
                                              if any(c.isalnum() for c in w)))
        return cls({k: frozenset(v) for k, v in english.items()}, phrases, sources, spaced=spaced,
                   source_words=source_words)

    def pictures_of(self, phrase: str) -> frozenset[int]:
        """The pictures whose source captions hold `phrase`."""
        needle = _normalised(phrase) if self.spaced else _normalised(phrase).strip()
        if not needle.strip():
            return frozenset()
        if self.spaced and " " not in needle.strip():  # one word: the index, not a scan of every caption
            return self.word_pictures.get(needle.strip(), frozenset())
        return frozenset(i for i, text in enumerate(self.sources) if needle in text)

    def template_word(self, word: str) -> bool:
        """Whether `word` is in more than `TEMPLATE_WORD_SHARE` of the pictures' English captions:
        a word of the captions' template ("a", "and", "on", "background"), not of a name."""
        return len(self.english.get(word, ())) > TEMPLATE_WORD_SHARE * len(self.phrases)

    def name_phrase(self, phrase: str) -> bool:
        """Whether `phrase` starts and ends with a name's word (no template word at either end)."""
        ends = phrase.split()[0], phrase.split()[-1]
        return not any(self.template_word(w) for w in ends)

    def claims(self) -> dict[str, frozenset[str]]:
        """Each source word of `CLAIM_PICTURES` or more pictures (and at most the template's share) whose
        best English phrase has a Dice of at least 0.5, no template word at either end, and no other
        such word with a higher Dice for the same phrase (the noun, not the Chinese classifier that
        comes with it), with that phrase's words that are not template words: the names the frequent
        words already explain."""
        if self._claims is None:
            most = TEMPLATE_WORD_SHARE * len(self.phrases)
            best: dict[str, tuple[str, float]] = {}
            for word, pictures in self.word_pictures.items():
                if CLAIM_PICTURES <= len(pictures) <= most and (top := self.candidates(pictures, k=1)):
                    if top[0][1] >= 0.5 and self.name_phrase(top[0][0]):
                        best[word] = top[0]
            strongest: dict[str, float] = defaultdict(float)
            for phrase, dice in best.values():
                strongest[phrase] = max(strongest[phrase], dice)
            self._claims = {word: frozenset(w for w in phrase.split() if not self.template_word(w))
                            for word, (phrase, dice) in best.items() if dice == strongest[phrase]}
        return self._claims

    def _unexplained(self, picture: int, own: frozenset[str]) -> Iterator[str]:
        """The English phrases of `picture` that share no word with a claim of its source words other
        than `own` (and, where the language writes no spaces, other than a word inside `own`'s text or
        holding it: a name the segmenter cuts in two, or writes as part of a longer word, is still the
        name — the pictures of a name are found as a substring there)."""
        claims, text = self.claims(), "" if self.spaced else "".join(own)
        others = (w for w in self.source_words[picture] - own if not (text and (w in text or text in w)))
        named = set().union(*(claims.get(w, ()) for w in others))
        return (p for p in self.phrases[picture] if named.isdisjoint(p.split()))

    def candidates(self, pictures: frozenset[int], k: int = 20, *,
                   explain: frozenset[str] | None = None) -> list[tuple[str, float]]:
        """The `k` English phrases whose pictures agree best with `pictures`, by Dice. Phrases that
        share the same pictures tie; among them the name is the phrase with no template word at
        either end ("joker", not "a joker"; "japanese vacancy button", not "... button and"), and
        the longest such ("waxing crescent moon", not "waxing"); then fewer pictures, then
        alphabetical, so that the order is reproducible (docs/lexicon.md). With `explain` (the
        looked-up phrase's own source words, lower case), a phrase counts in a picture only where it
        shares no word with what the picture's other source words claim (`claims`)."""
        if not pictures:
            return []
        counts: dict[str, int] = defaultdict(int)
        for i in pictures:
            for p in (self.phrases[i] if explain is None else self._unexplained(i, explain)):
                counts[p] += 1
        scored = [(2 * n / (len(self.english[p]) + len(pictures)), p) for p, n in counts.items()]

        def order(item: tuple[float, str]) -> tuple:
            dice, phrase = item
            words = phrase.split()
            padded = self.template_word(words[0]) or self.template_word(words[-1])
            return -dice, padded, -len(words), len(self.english[phrase]), phrase

        scored.sort(key=order)
        return [(p, d) for d, p in scored[:k]]


@dataclass(frozen=True)
class WordPair:
    """A source word or phrase and the English phrase the pictures say it names."""
    source: str  # as the captions write it
    english: str
    dice: float  # of the two picture sets
    pictures: int  # whose source captions hold the word
    words: tuple[str, ...] = ()  # a source phrase's words (`data_prep.words`); () for one word

    @property
    def key(self) -> str:
        """The source's words, lower-cased, joined by one space: how a segmented source is searched for it."""
        return " ".join(self.words or (self.source,)).lower()


def word_pairs(lexicon: PhraseLexicon, source_words: Iterable[str], *, min_pictures: int = 2,
               min_dice: float = 0.5, explain: bool = False) -> list[WordPair]:
    """The best English phrase (`PhraseLexicon.candidates`) of each of `source_words` that at least
    `min_pictures` pictures show, kept when its Dice is at least `min_dice` and it starts and ends
    with a name's word. A source word of the template (in more than `TEMPLATE_WORD_SHARE` of the
    pictures, "de", "con") names no object and gets no pair; one seen in a single picture ties with
    every phrase of that picture's captions, so it is left out by the default `min_pictures` — unless
    `explain`: then its phrase is the best of those the picture's other source words leave unexplained
    (`PhraseLexicon.candidates(explain=...)`)."""
    most = TEMPLATE_WORD_SHARE * len(lexicon.phrases)
    pairs = []
    for word in sorted(set(source_words)):
        pictures = lexicon.pictures_of(word)
        single = explain and len(pictures) == 1
        if not (single or min_pictures <= len(pictures)) or len(pictures) > most:
            continue
        best = lexicon.candidates(pictures, k=1, explain=frozenset({word.lower()}) if single else None)
        if best and best[0][1] >= min_dice and lexicon.name_phrase(best[0][0]):
            pairs.append(WordPair(word, best[0][0], best[0][1], len(pictures)))
    return pairs


def runs(words: Sequence[str], longest: int) -> Iterator[tuple[str, ...]]:
    """The runs of 2 to `longest` consecutive `words`."""
    for n in range(2, longest + 1):
        for start in range(len(words) - n + 1):
            yield tuple(words[start:start + n])


def phrase_pairs(lexicon: PhraseLexicon, captions: Sequence[Sequence[Sequence[str]]], shown: Iterable[Sequence[str]],
                 *, longest: int, joiner: str, min_pictures: int = 2, min_dice: float = 0.5) -> list[WordPair]:
    """Pairs of source phrases — runs of 2 to `longest` words of `captions` (per picture of `lexicon`,
    its source captions as lower-cased words) that no caption of `shown` (the human-translated
    captions, as words) holds — with the best English phrase of their pictures, by the rules of
    `word_pairs`: at least `min_pictures` pictures and at most the template's share, Dice at least
    `min_dice`, no template word at either end of either side. A phrase is dropped where a longer one
    holding it has the same pictures and the same English phrase (it is part of that name:
    "revoloteando al" of "hojas revoloteando al viento"). `joiner` writes the words as the captions do
    (" ", or "" in a language written without spaces). In the order the phrases first occur."""
    most = TEMPLATE_WORD_SHARE * len(lexicon.phrases)
    pictures: dict[tuple[str, ...], set[int]] = defaultdict(set)
    word_pictures: dict[str, set[int]] = defaultdict(set)
    for picture, texts in enumerate(captions):
        for words in texts:
            for word in words:
                word_pictures[word].add(picture)
            for run in runs(words, longest):
                pictures[run].add(picture)
    template = {w for w, p in word_pictures.items() if len(p) > most or not any(c.isalnum() for c in w)}
    known = {run for words in shown for run in runs(words, longest)}
    found: dict[tuple[str, ...], tuple[WordPair, frozenset[int]]] = {}
    for run, where in pictures.items():
        if not min_pictures <= len(where) <= most or run in known or run[0] in template or run[-1] in template:
            continue
        best = lexicon.candidates(frozenset(where), k=1)
        if best and best[0][1] >= min_dice and lexicon.name_phrase(best[0][0]):
            phrase, dice = best[0]
            found[run] = (WordPair(joiner.join(run), phrase, dice, len(where), run), frozenset(where))

    def part_of_a_longer_name(run: tuple[str, ...], pair: WordPair, where: frozenset[int]) -> bool:
        return any(len(other) > len(run) and where == other_where and pair.english == other_pair.english
                   and any(other[i:i + len(run)] == run for i in range(len(other) - len(run) + 1))
                   for other, (other_pair, other_where) in found.items())
    return [pair for run, (pair, where) in found.items() if not part_of_a_longer_name(run, pair, where)]
