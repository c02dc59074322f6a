"""Spanish grammar of the long-tail world: articles, gender and number of CLDR noun phrases.

CLDR gives Spanish names without gender. The head of a Spanish name is its first word ("manzana
roja", "cara con gafas de sol"); its gender is decided by the ending of that word (-a, -ión,
-dad, -tad, -tud, -umbre, -ez: feminine; anything else: masculine) unless the word is in
`GENDER` (a list written by reading every head word of the inventory: "mano", "flor", "nube" are
feminine, "mapa", "avión", "pez" masculine), and its number by a final -s unless the word is in
`SINGULAR_S` ("paraguas", "autobús"). The article agrees: un/una/unos/unas, and "un" before a
feminine singular noun with a stressed first a ("un águila", `STRESSED_A`). A size is an
adjective before the noun, agreeing too: "una pequeña manzana roja", "unos pequeños libros",
"un gran delfín", "unas grandes gafas". The copula agrees in number: "está"/"están".
Names that are not noun phrases (verbs such as "cocinar", adjectives such as "radiactivo",
names led by a numeral such as "dos corazones", mass nouns and sports such as "niebla" and
"béisbol", proper names such as "leo") are said as emoji: 'un emoji de «radiactivo»'; clock
faces as 'un emoji de las ocho y media'; prohibitions as 'una señal de prohibido fumar'.
Accuracy measured on a sample: docs/longtail.md.
"""
from __future__ import annotations

import re

from .descriptions import Description, Mention

FRAMES = ("bare", "there", "picture", "relation", "copula", "row")
RELATIONS = {"left": "a la izquierda de", "right": "a la derecha de", "above": "encima de", "below": "debajo de",
             "beside": "junto a"}
COLORS = {"red": "rojo", "orange": "naranja", "yellow": "amarillo", "green": "verde", "blue": "azul",
          "purple": "morado", "pink": "rosado", "grey": "gris", "white": "blanco"}
# size -> (masc sg, fem sg, masc pl, fem pl), before the noun
SIZES = {"small": ("pequeño", "pequeña", "pequeños", "pequeñas"), "large": ("gran", "gran", "grandes", "grandes")}

FEMININE_ENDINGS = ("a", "ión", "dad", "tad", "tud", "umbre", "ez")
# head words whose gender the ending rule gets wrong (read from the whole inventory)
GENDER = {
    # masculine though ending in -a / -ión / -ez
    "alienígena": "m", "emblema": "m", "fantasma": "m", "fotograma": "m", "gorila": "m", "ideograma": "m",
    "koala": "m", "mapa": "m", "ninja": "m", "panda": "m", "pentagrama": "m", "planeta": "m", "tranvía": "m",
    "guardia": "m", "busca": "m", "golfista": "m", "khanda": "m", "libra": "m", "avión": "m", "camión": "m",
    "escorpión": "m", "pez": "m", "día": "m",
    # feminine though not ending in -a
    "mano": "f", "manos": "f", "moto": "f", "radio": "f", "flor": "f", "sal": "f", "señal": "f", "red": "f",
    "noche": "f", "nube": "f", "llave": "f", "fuente": "f", "torre": "f", "carne": "f", "serpiente": "f",
    "nariz": "f", "raíz": "f", "cruz": "f", "luz": "f", "luces": "f", "mujer": "f", "mujeres": "f", "mamá": "f",
    "menorá": "f", "baguete": "f",
}
# whole names whose head decides wrongly
NAME_GENDER = {"cometa espacial": "m"}
SINGULAR_S = {"paraguas", "paracaídas", "salvavidas", "marcapáginas", "portapapeles", "pintalabios", "arcoíris",
              "autobús", "minibús", "trolebús", "cactus", "tenis", "bíceps", "aries", "géminis", "piscis", "menos",
              "más", "ciempiés", "lunes", "virus", "compás", "as", "gas", "dios", "país"}
STRESSED_A = {"águila", "ancla", "hacha", "hada", "arpa", "ala", "ánfora", "agua", "alma", "arma", "aula", "ave",
              "haba", "hambre"}
NUMERALS = {"dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez", "cien", "mil"}
# heads that are not nouns, and whole names that are not count noun phrases
NOT_NOUN_HEADS = {"borrar", "cocinar", "detener", "expulsar", "grabar", "repetir", "reproducir", "salir",
                  "pintarse", "radiactivo", "más", "menos", "m"}
EMOJI_NAMES = {
    "acuario", "aries", "cáncer", "capricornio", "géminis", "leo", "libra", "ofiuco", "piscis", "sagitario",
    "escorpio", "tauro", "virgo", "beicon", "bádminton", "béisbol", "críquet", "hockey sobre hierba",
    "hockey sobre hielo", "lacrosse", "tenis de mesa", "camping", "mantequilla", "niebla", "bruma", "madera",
    "agua potable", "agua no potable", "arroz cocido", "arroz con curry", "comida enlatada", "sal", "fondue",
    "lactancia materna", "construcción", "coral", "espagueti", "equipaje", "alto voltaje", "riesgo biológico",
    "vía láctea", "monte fuji", "torre de tokio", "estatua de la libertad", "kaaba", "copyright", "adn",
    "información", "wifi", "om", "infinito", "obras", "fuego", "cien puntos", "marca registrada",
    "carne con hueso", "ropa interior", "ropa de mujer",
}
CLOCK = re.compile(r"(?P<hour>\d+|una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce)"
                   r" (?:y media|en punto)")
SIGN = re.compile(r"prohibido(?: .+)?")

KINDS = ("np", "emoji", "clock", "sign")


def name_of(cldr: str) -> str:
    """The Spanish name of a CLDR short name: colons off, `_` as a space."""
    return cldr.strip(":").replace("_", " ")


def gender(name: str) -> str:
    """"m" or "f": the gender of the name's head word (module docstring)."""
    if name in NAME_GENDER:
        return NAME_GENDER[name]
    head = name.split()[0].lower()
    if head in GENDER:
        return GENDER[head]
    stem = singular(head)
    if stem != head and stem.endswith("ion"):
        return "f"  # "estaciones" -> "estacion": the plural drops the accent of -ión
    return "f" if stem.endswith(FEMININE_ENDINGS) else "m"


def singular(word: str) -> str:
    """The singular of a head word, as far as its ending goes: "-s" off after a vowel ("gafas"),
    "-es" off after a consonant ("pantalones" -> "pantalon")."""
    if word in SINGULAR_S or not word.endswith("s"):
        return word
    if word.endswith("es") and len(word) > 3 and word[-3] not in "aeiouáéíóú":
        return word[:-2]
    return word[:-1]


def is_plural(name: str) -> bool:
    head = name.split()[0].lower()
    return head.endswith("s") and head not in SINGULAR_S


def kind(name: str) -> str:
    """How the Spanish name enters a caption (module docstring)."""
    if CLOCK.fullmatch(name):
        return "clock"
    if SIGN.fullmatch(name):
        return "sign"
    head = name.split()[0].lower()
    if name in EMOJI_NAMES or head in NOT_NOUN_HEADS or head in NUMERALS or head.isdigit():
        return "emoji"
    return "np"


def article(gender_: str, plural: bool, next_word: str) -> str:
    """un/una/unos/unas, and "un" before a stressed a- feminine singular noun ("un águila")."""
    if plural:
        return "unas" if gender_ == "f" else "unos"
    if gender_ == "f" and next_word.lower() not in STRESSED_A:
        return "una"
    return "un"


def size_word(size: str, gender_: str, plural: bool) -> str:
    masc_sg, fem_sg, masc_pl, fem_pl = SIZES[size]
    if plural:
        return fem_pl if gender_ == "f" else masc_pl
    return fem_sg if gender_ == "f" else masc_sg


class Grammar:
    """Realises descriptions in Spanish over the concept names `names` (id -> Spanish name)."""

    lang = "es"
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
        return [self.names[concept]]

    def agreement(self, concept: str) -> tuple[str, bool]:
        """(gender, plural) of the noun phrase a mention of `concept` makes (an emoji or a clock
        face is "un emoji", masculine singular; a sign "una señal", feminine singular)."""
        k, name = self.kinds[concept], self.names[concept]
        if k == "np":
            return gender(name), is_plural(name)
        return ("f" if k == "sign" else "m"), False

    def mention(self, m: Mention) -> str:
        name, k = self.names[m.concept], self.kinds[m.concept]
        g, plural = self.agreement(m.concept)
        if k == "np":
            noun = name
        elif k == "sign":
            noun = f"señal de {name}"
        elif k == "clock":
            hour = CLOCK.fullmatch(name)["hour"]
            noun = f"emoji de {'la' if hour in ('una', '1') else 'las'} {name}"
        else:
            noun = f"emoji de «{name}»"
        words = ([size_word(m.size, g, plural)] if m.size else []) + [noun]
        return " ".join([article(g, plural, words[0].split()[0]), *words])

    def realise(self, d: Description) -> str:
        parts = [self.mention(m) for m in d.mentions]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " y " + parts[-1]
        ground = f" con fondo {COLORS[d.background]}" if d.background else ""
        if d.frame == "bare":
            return listed + ground
        if d.frame == "there":
            return f"hay {listed}{ground}"
        if d.frame == "picture":
            return f"una imagen de {listed}{ground}"
        if d.frame == "row":
            return f"de izquierda a derecha: {listed}" + (f",{ground}" if ground else "")
        rel = RELATIONS[d.relation]
        if d.frame == "relation":
            return f"{parts[0]} {rel} {parts[1]}{ground}"
        if d.frame == "copula":
            be = "están" if self.agreement(d.mentions[0].concept)[1] else "está"
            return f"{parts[0]} {be} {rel} {parts[1]}{ground}"
        raise ValueError(f"unknown frame {d.frame!r}")
