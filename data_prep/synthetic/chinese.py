"""Chinese grammar: realise a `Description` with measure words.

Noun phrases are number + measure word + colour-的 + size + noun ("两个红色的圆",
"一颗蓝色的小星星"); 两 (not 二) counts objects; stars take 颗, other shapes 个.
"""
from __future__ import annotations

from .descriptions import Description, Mention

NOUNS = {"circle": "圆", "square": "正方形", "triangle": "三角形", "star": "星星", "cross": "十字"}
MEASURE_WORDS = {"star": "颗"}
DEFAULT_MEASURE_WORD = "个"
COLORS = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "black": "黑色"}
SIZES = {"small": "小", "large": "大"}
NUMBERS = {1: "一", 2: "两", 3: "三", 4: "四"}
RELATIONS = {"left": "左边", "right": "右边", "above": "上面", "below": "下面"}


def mention(m: Mention) -> str:
    text = NUMBERS[m.count] + MEASURE_WORDS.get(m.shape, DEFAULT_MEASURE_WORD)
    if m.color:
        text += COLORS[m.color] + "的"
    if m.size:
        text += SIZES[m.size]
    return text + NOUNS[m.shape]


def join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return "、".join(items[:-1]) + "和" + items[-1]


def realise(d: Description) -> str:
    parts = [mention(m) for m in d.mentions]
    if d.frame == "bare":
        return join(parts)
    if d.frame == "there":
        return f"图中有{join(parts)}"
    if d.frame == "picture":
        return f"一张图片，上面有{join(parts)}"
    rel = RELATIONS[d.relation]
    if d.frame == "relation":
        return f"{parts[1]}{rel}的{parts[0]}"
    if d.frame == "copula":
        return f"{parts[0]}在{parts[1]}的{rel}"
    raise ValueError(f"unknown frame {d.frame!r}")
