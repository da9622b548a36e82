"""Colour names read as the known colour word nearest them in colour.

A language model does not know what most colour names look like: mean-pooled MiniLM reads "a
small emerald circle" and "a small navy circle" nearest the orange one among the six shapes
colours, and WordNet does not list "sage" or "amethyst" as kinds of any colour. A colour name's meaning is a colour,
so it can be measured: the xkcd colour survey named 949 colours by what people called them
(public domain; matplotlib ships the table as `matplotlib.colors.XKCD_COLORS`), which gives
each name an sRGB value.

`nearest_colour_names(known)` finds the known words that are basic colour terms (BASIC_COLOURS:
the eleven that Berlin and Kay found across languages; a caption's "rose" or "lemon" is an object
as often as a colour, so only these are targets) and reads every other name in the survey as the
known colour nearest it in OKLab (a perceptual colour space whose hue stays straight from blue to
purple, where CIELAB bends blue towards purple), lightness counted at
LIGHTNESS_WEIGHT: people name a dark or a pale colour by its hue ("navy" is a blue, "lilac" a
purple). A name whose last word is a known colour word is that word ("greenish blue" is a blue).
Greys (chroma under ACHROMATIC_CHROMA) are read only as a known grey, white or black, and
colours only as a known colour. The result is a plain {name: known word} table, saved with the
model like the WordNet lexicon's (limner.text.lexicon.rewrite reads prompts with it).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from limner.text.lexicon import AS_WRITTEN

LIGHTNESS_WEIGHT = 0.25  # chosen on the colour words of the wording sets already read (see the README)
BASIC_COLOURS = ("white", "black", "red", "green", "yellow", "blue", "brown", "purple", "pink", "orange", "grey", "gray")
ACHROMATIC_CHROMA = 0.04  # OKLab chroma under which a colour is a grey (slate 0.032, taupe 0.053)
# Single names in the survey that are first of all other things a prompt may name (a place, the
# weather, a body's product, a mood, a word for light or dark): read as themselves, never as a colour
NOT_COLOURS = frozenset({
    "dark", "pale", "royal", "bland", "drab", "dusk", "twilight", "midnight", "sky", "sea", "ocean", "marine",
    "forest", "leaf", "grass", "earth", "desert", "ice", "stone", "sand", "dust", "dirt", "mud", "velvet",
    "leather", "barney", "camo", "shit", "poo", "poop", "puke", "vomit", "snot", "booger", "diarrhea", "bile",
    "bruise",
})
# linear sRGB -> cone-like responses, and their cube roots -> L, a, b (OKLab, Ottosson 2020)
OKLAB_LMS = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                      [0.2119034982, 0.6806995451, 0.1073969566],
                      [0.0883024619, 0.2817188376, 0.6299787005]])
OKLAB_LAB = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                      [1.9779984951, -2.4285922050, 0.4505937099],
                      [0.0259040371, 0.7827717662, -0.8086757660]])


def survey_colours() -> dict[str, tuple[float, float, float]]:
    """{name: sRGB in [0, 1]} for the xkcd colour survey's names ("blue/green" as "blue green", 940 in all)."""
    from matplotlib.colors import XKCD_COLORS, to_rgb

    colours = {name.removeprefix("xkcd:").replace("/", " "): to_rgb(value) for name, value in XKCD_COLORS.items()}
    colours.setdefault("gray", colours["grey"])  # the survey spells it one way
    return colours


def oklab(srgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in [0, 1] -> (..., 3) OKLab (L in [0, 1])."""
    srgb = np.asarray(srgb, dtype=np.float64)
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return np.cbrt(linear @ OKLAB_LMS.T) @ OKLAB_LAB.T


def chroma(lab: np.ndarray) -> np.ndarray:
    return np.hypot(lab[..., 1], lab[..., 2])


def hue_distance(lab: np.ndarray, to: np.ndarray, *, lightness_weight: float = LIGHTNESS_WEIGHT) -> np.ndarray:
    """Distances (..., K) from colours (..., 3) to K colours (K, 3) in OKLab, lightness scaled down."""
    scale = np.array([lightness_weight, 1.0, 1.0])
    return np.linalg.norm((lab[..., None, :] - to) * scale, axis=-1)


def nearest_colour_names(known: Iterable[str], colours: dict[str, tuple[float, float, float]] | None = None, *,
                         lightness_weight: float = LIGHTNESS_WEIGHT) -> dict[str, str]:
    """{colour name: known colour word} for every name in `colours` (default: the xkcd survey)
    that is not itself a known word; {} when no known word is a basic colour term."""
    colours = survey_colours() if colours is None else colours
    known = set(known)
    targets = sorted(word for word in known if word in BASIC_COLOURS and word in colours)
    if not targets:
        return {}
    target_lab = oklab(np.array([colours[word] for word in targets]))
    target_grey = chroma(target_lab) < ACHROMATIC_CHROMA
    table = {}
    for name, srgb in sorted(colours.items()):
        words = name.split()
        if name in known or name in AS_WRITTEN or name in NOT_COLOURS:
            continue
        if words[-1] in targets:  # "greenish blue", "cherry red": the last word names the colour
            table[name] = words[-1]
            continue
        lab = oklab(np.array(srgb))
        allowed = target_grey == (chroma(lab) < ACHROMATIC_CHROMA)
        if allowed.any():
            distances = np.where(allowed, hue_distance(lab, target_lab, lightness_weight=lightness_weight), np.inf)
            table[name] = targets[int(distances.argmin())]
    return table
