"""Words of a caption, for counting: the same rule for every corpus the coverage table reads.

Text written with spaces is split into runs of letters/digits and single punctuation marks
("una manzana, roja" -> una | manzana | , | roja); words are kept as written (no case folding,
like the counts of the real COCO-CN text). Text written without spaces is
segmented by a segmenter from the ecosystem: `jieba` for Chinese, `janome` for Japanese (the
real COCO-CN text comes already segmented, by BosonNLP). docs/longtail.md, "Stats".
"""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

UNSPACED = {"zh": "jieba", "ja": "janome"}
_WORD = re.compile(r"\w+|[^\w\s]")


@cache
def _segmenter(lang: str) -> Callable[[str], list[str]]:
    if lang == "zh":
        import jieba

        jieba.setLogLevel(60)  # no "Building prefix dict" chatter
        return lambda text: jieba.lcut(text)
    if lang == "ja":
        from janome.tokenizer import Tokenizer

        tokenizer = Tokenizer(wakati=True)
        return lambda text: list(tokenizer.tokenize(text))
    return lambda text: _WORD.findall(text)


def words(text: str, lang: str) -> list[str]:
    """The words of `text` in language `lang` (an ISO 639 code; the module docstring says how)."""
    return [w for w in _segmenter(lang.split("-")[0].lower())(text) if w.strip()]


def segmenter_name(lang: str) -> str:
    """Which segmenter `words` uses for `lang` (for reports)."""
    return UNSPACED.get(lang.split("-")[0].lower(), "runs of letters/digits and punctuation marks")
