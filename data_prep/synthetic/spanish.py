"""Spanish grammar: realise a `Description` with gender and number agreement.

Noun phrases are article/number + noun + colour + size ("dos círculos rojos pequeños",
"una estrella azul grande"); adjectives agree in gender and number; the copula agrees with the
subject ("está"/"están"); "hay" is invariant.
"""
from __future__ import annotations

from .descriptions import Description, Mention

# noun: (singular, plural, gender)
NOUNS = {
    "circle": ("círculo", "círculos", "m"),
    "square": ("cuadrado", "cuadrados", "m"),
    "triangle": ("triángulo", "triángulos", "m"),
    "star": ("estrella", "estrellas", "f"),
    "cross": ("cruz", "cruces", "f"),
}
# adjective: (masc sg, fem sg, masc pl, fem pl)
ADJECTIVES = {
    "red": ("rojo", "roja", "rojos", "rojas"),
    "green": ("verde", "verde", "verdes", "verdes"),
    "blue": ("azul", "azul", "azules", "azules"),
    "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"),
    "purple": ("morado", "morada", "morados", "moradas"),
    "black": ("negro", "negra", "negros", "negras"),
    "small": ("pequeño", "pequeña", "pequeños", "pequeñas"),
    "large": ("grande", "grande", "grandes", "grandes"),
}
NUMBERS = {2: "dos", 3: "tres", 4: "cuatro"}
RELATIONS = {"left": "a la izquierda de", "right": "a la derecha de", "above": "encima de", "below": "debajo de"}


def agree(adjective: str, gender: str, plural: bool) -> str:
    masc_sg, fem_sg, masc_pl, fem_pl = ADJECTIVES[adjective]
    if plural:
        return fem_pl if gender == "f" else masc_pl
    return fem_sg if gender == "f" else masc_sg


def mention(m: Mention) -> str:
    singular, plural_form, gender = NOUNS[m.shape]
    plural = m.count > 1
    determiner = NUMBERS[m.count] if plural else ("una" if gender == "f" else "un")
    words = [determiner, plural_form if plural else singular]
    words += [agree(a, gender, plural) for a in (m.color, m.size) if a]
    return " ".join(words)


def join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " y " + items[-1]


def realise(d: Description) -> str:
    parts = [mention(m) for m in d.mentions]
    if d.frame == "bare":
        return join(parts)
    if d.frame == "there":
        return f"hay {join(parts)}"
    if d.frame == "picture":
        return f"una imagen de {join(parts)}"
    rel = RELATIONS[d.relation]
    if d.frame == "relation":
        return f"{parts[0]} {rel} {parts[1]}"
    if d.frame == "copula":
        be = "está" if d.mentions[0].count == 1 else "están"
        return f"{parts[0]} {be} {rel} {parts[1]}"
    raise ValueError(f"unknown frame {d.frame!r}")
