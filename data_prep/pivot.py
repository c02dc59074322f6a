"""Image-pivoted pseudo-parallel pairs: word-level first, then sentence-level.

A source caption and the English captions of the same image are noisy translations of each
other (independent descriptions: other objects, orders, phrasings). Used as targets unfiltered,
the noise wins (docs/design.md §11). Noise suppression here, in the spirit of progressive word → sentence
learning from images (Chen et al. 2019):

1. **Words.** A bilingual lexicon is induced from images alone: a source piece and an English
   word that occur in the captions of the same images more often than chance are associated,
   by normalised pointwise mutual information over images (NPMI ∈ [−1, 1]; function words that
   occur everywhere score ≈ 0). Counting is one sparse matrix product.
2. **Sentences.** Each English caption of the image is scored against the source caption by how
   much of each side the other explains through the lexicon: every content word on one side is
   credited with its best association on the other (clamped at 0), averaged per side, and the
   two sides combined into an F1. The best-scoring caption becomes the source caption's pivot
   target when the score reaches a threshold, with the score as its weight.

Source pieces come from the student's own source tokenizer (SentencePiece), so the method needs
no word segmentation for languages without spaces; English is split into lower-cased words.

3. **Taught words.** An English caption of the same picture is a noisy translation: its own
   phrasing, its own choice of sizes, places and background. With `taught_words`, a pivot target
   teaches only its words that the source caption explains — each English word whose Dice
   association (over images, rare words included) with some piece of the source reaches a
   threshold, and the words between two such words (inside a name: "meat *on* bone") — so the
   student learns the names the picture shares with the caption, not the other caption's template.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import datasets
import numpy as np
from scipy import sparse

from .targets import Key, Target

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MIN_NPMI = 0.2  # an explained word is associated with the source beyond chance (NPMI 0: independent)


def english_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class Lexicon:
    """Association between source pieces and English words, counted over images: NPMI and Dice."""

    source_vocab: dict[str, int]
    english_vocab: dict[str, int]
    npmi: np.ndarray  # [source pieces, English words]
    source_df: np.ndarray  # fraction of images whose source captions hold the piece
    english_df: np.ndarray
    joint: np.ndarray  # [source pieces, English words] fraction of images holding both

    def dice(self, s_idx: Sequence[int], e_idx: Sequence[int]) -> np.ndarray:
        """`[len(s_idx), len(e_idx)]` Dice coefficients 2·p(s, e) / (p(s) + p(e)) over images: 1 when
        the two always occur together, however rare — where NPMI needs many images to be sure."""
        s_idx, e_idx = np.asarray(s_idx, dtype=int), np.asarray(e_idx, dtype=int)
        return 2 * self.joint[np.ix_(s_idx, e_idx)] / (self.source_df[s_idx][:, None] + self.english_df[e_idx][None, :])

    def best_english(self, piece: str, k: int = 3) -> list[tuple[str, float]]:
        """The `k` English words most associated with a source piece (for inspection and docs)."""
        if piece not in self.source_vocab:
            return []
        row = self.npmi[self.source_vocab[piece]]
        words = list(self.english_vocab)
        return [(words[i], float(row[i])) for i in np.argsort(-row)[:k]]


def induce_lexicon(ds: datasets.Dataset, rows: Sequence[int], source_pieces: Callable[[str], list[str]], *,
                   min_images: int = 3) -> Lexicon:
    """Count, over the images `rows`, which source pieces and English words share an image.
    Pieces and words seen with fewer than `min_images` images are left out."""
    src_sets, eng_sets = [], []
    for item in ds.select(rows).select_columns(["source", "english"]):
        src_sets.append({p for s in item["source"] if s.strip() for p in source_pieces(s)})
        eng_sets.append({w for e in item["english"] if e.strip() for w in english_words(e)})

    def incidence(sets: list[set[str]]) -> tuple[dict[str, int], sparse.csr_matrix]:
        counts: dict[str, int] = {}
        for s in sets:
            for t in s:
                counts[t] = counts.get(t, 0) + 1
        vocab = {t: i for i, t in enumerate(sorted(t for t, c in counts.items() if c >= min_images))}
        data_rows = [i for i, s in enumerate(sets) for t in s if t in vocab]
        cols = [vocab[t] for s in sets for t in s if t in vocab]
        matrix = sparse.csr_matrix((np.ones(len(cols), dtype=np.float64), (data_rows, cols)),
                                   shape=(len(sets), len(vocab)))
        return vocab, matrix

    src_vocab, S = incidence(src_sets)
    eng_vocab, E = incidence(eng_sets)
    n = max(1, len(rows))
    joint = np.asarray((S.T @ E).todense()) / n  # p(s, e) over images
    p_s = np.asarray(S.sum(0)).ravel() / n
    p_e = np.asarray(E.sum(0)).ravel() / n
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(joint / np.outer(p_s, p_e))
        npmi = pmi / -np.log(joint)
    # never together: −1 (the limit); always together (p = 1): no information, 0
    npmi = np.where(joint <= 0, -1.0, np.where(joint >= 1, 0.0, npmi))
    return Lexicon(src_vocab, eng_vocab, npmi, p_s, p_e, joint)


def agreement(lexicon: Lexicon, pieces: Sequence[str], words: Sequence[str], *, max_df: float = 0.5) -> float:
    """F1 of how well each side's content (tokens in at most `max_df` of the images) is explained
    by its best lexicon association on the other side; 0 when either side has no content."""
    s_idx = [lexicon.source_vocab[p] for p in pieces
             if p in lexicon.source_vocab and lexicon.source_df[lexicon.source_vocab[p]] <= max_df]
    e_idx = [lexicon.english_vocab[w] for w in words
             if w in lexicon.english_vocab and lexicon.english_df[lexicon.english_vocab[w]] <= max_df]
    if not s_idx or not e_idx:
        return 0.0
    block = np.clip(lexicon.npmi[np.ix_(s_idx, e_idx)], 0.0, None)
    recall = float(block.max(1).mean())  # source content explained by the English caption
    precision = float(block.max(0).mean())  # English content explained by the source caption
    return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


def taught_words(lexicon: Lexicon, pieces: Sequence[str], english: str, *, threshold: float,
                 min_npmi: float = MIN_NPMI, gap: int = 2) -> tuple[bool, ...]:
    """Per whitespace-separated word of `english`: whether the source `pieces` explain it — some
    piece's Dice with one of its letter runs reaches `threshold` while their NPMI reaches
    `min_npmi` (Dice alone is high by chance for two words that are both everywhere: independent
    templates of the two languages) — or it lies between two explained words at most `gap` words
    apart."""
    s_idx = [lexicon.source_vocab[p] for p in dict.fromkeys(pieces) if p in lexicon.source_vocab]
    chunks = english.split()
    taught = [False] * len(chunks)
    if s_idx:
        for i, chunk in enumerate(chunks):
            e_idx = [lexicon.english_vocab[w] for w in english_words(chunk) if w in lexicon.english_vocab]
            if e_idx:
                associated = lexicon.npmi[np.ix_(s_idx, e_idx)] >= min_npmi
                taught[i] = bool(((lexicon.dice(s_idx, e_idx) >= threshold) & associated).any())
    marked = [i for i, t in enumerate(taught) if t]
    for a, b in zip(marked, marked[1:]):
        if b - a <= gap + 1:
            taught[a:b] = [True] * (b - a)
    return tuple(taught)


def explained_content(lexicon: Lexicon, taught: Sequence[bool], english: str, *, max_df: float = 0.5) -> int:
    """How many words of `english` flagged in `taught` are content: every letter run of the word is in
    at most `max_df` of the images (names and colours, not "a", "on", "background")."""
    count = 0
    for flag, chunk in zip(taught, english.split()):
        runs = [lexicon.english_vocab.get(w) for w in english_words(chunk)]
        count += flag and bool(runs) and all(i is not None and lexicon.english_df[i] <= max_df for i in runs)
    return count


def pivot_targets(ds: datasets.Dataset, rows: Sequence[int], lexicon: Lexicon,
                  source_pieces: Callable[[str], list[str]], *, skip: set[Key], threshold: float,
                  weight: float = 1.0, taught: Lexicon | None = None, taught_units: Callable[[str], list[str]] | None = None,
                  taught_threshold: float = 0.3, every_name: bool = False) -> dict[Key, Target]:
    """For every training caption not in `skip` (those with a human translation): the English
    caption of its image that agrees best with it, when the agreement reaches `threshold`;
    its weight is `weight` × the agreement. With a `taught` lexicon (Dice over images, rare words
    kept; its source side counted in `taught_units`, default `source_pieces`), each target teaches
    only the words its source explains (`taught_words`). With `every_name` too, a caption whose
    agreement misses `threshold` — its content is rare, and the agreement's lexicon keeps only words
    of several images — still gets the English caption of its image with the most explained content
    words (`explained_content`, at least one), teaching those alone, at weight `weight` ×
    `threshold`: the rare names are the tail's words."""
    out: dict[Key, Target] = {}
    for row, item in zip(rows, ds.select(rows).select_columns(["source", "english"])):
        english = [(e, english_words(e)) for e in item["english"] if e.strip()]
        for j, source in enumerate(item["source"]):
            if not source.strip() or (row, j) in skip or not english:
                continue
            pieces = source_pieces(source)
            units = pieces if taught_units is None else taught_units(source)
            score, text = max((agreement(lexicon, pieces, words), e) for e, words in english)
            if score >= threshold:
                mask = None if taught is None else taught_words(taught, units, text, threshold=taught_threshold)
                out[(row, j)] = Target(text, weight * score, "pivot", mask)
            elif every_name and taught is not None:
                masks = [(taught_words(taught, units, e, threshold=taught_threshold), e) for e, _ in english]
                named, mask, text = max((explained_content(taught, m, e), m, e) for m, e in masks)
                if named:
                    out[(row, j)] = Target(text, weight * threshold, "pivot", mask)
    return out
