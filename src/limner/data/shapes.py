"""The compositional shapes dataset and its judge.

Specification (a benchmark relies on it, so it is fixed):
  square RGB canvas of side S (multiple of 16, at least 32), black background;
  one filled object, no outline, in one of 6 colours, 3 shapes, 2 sizes and 5 positions;
  size = side of the object's box: small 0.30*S, large 0.55*S, each +-5%;
  position = box centre: corners at 0.28S / 0.72S, or the centre 0.5S, each +-0.04S in x and y;
  caption "a {size} {color} {shape} in the {position}".
Of the 6*3*2*5 = 180 compositions, 36 (20%, chosen by HELD_OUT_SEED) never appear in
train; the test split holds only those.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from limner.errors import ConfigError

COLORS = {
    "red": (230, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 50),
    "purple": (160, 70, 220),
    "orange": (250, 150, 30),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.30, "large": 0.55}
POSITIONS = {
    "top left": (0.28, 0.28),
    "top right": (0.72, 0.28),
    "bottom left": (0.28, 0.72),
    "bottom right": (0.72, 0.72),
    "center": (0.5, 0.5),
}
ATTRIBUTES = ("color", "shape", "size", "position")
HELD_OUT_SEED = 2024
HELD_OUT_FRACTION = 0.2
_SUPERSAMPLE = 4  # draw at 4x and downsample, for clean antialiased edges


@dataclass(frozen=True)
class Composition:
    size: str
    color: str
    shape: str
    position: str

    @property
    def caption(self) -> str:
        return f"a {self.size} {self.color} {self.shape} in the {self.position}"

    def attributes(self) -> dict[str, str]:
        return {"color": self.color, "shape": self.shape, "size": self.size, "position": self.position}


def all_compositions() -> list[Composition]:
    return [
        Composition(size, color, shape, position)
        for size, color, shape, position in itertools.product(SIZES, COLORS, SHAPES, POSITIONS)
    ]


def held_out_compositions() -> list[Composition]:
    """The fixed 36 compositions that never appear in the train split."""
    compositions = all_compositions()
    count = round(len(compositions) * HELD_OUT_FRACTION)
    return sorted(random.Random(HELD_OUT_SEED).sample(compositions, count), key=all_compositions().index)


def train_compositions() -> list[Composition]:
    held_out = set(held_out_compositions())
    return [c for c in all_compositions() if c not in held_out]


def parse_caption(caption: str) -> Composition:
    """The composition a canonical shapes caption names; ValueError otherwise."""
    for composition in all_compositions():
        if composition.caption == caption.strip().lower():
            return composition
    raise ConfigError(f"not a shapes caption: {caption!r}")


def render(composition: Composition, resolution: int, rng: random.Random) -> Image.Image:
    """One image of `composition` with the spec's jitter drawn from `rng`."""
    if resolution < 32 or resolution % 16:
        raise ConfigError(f"shapes resolution must be a multiple of 16 and at least 32, got {resolution}")
    big = resolution * _SUPERSAMPLE
    side = SIZES[composition.size] * rng.uniform(0.95, 1.05) * big
    cx, cy = POSITIONS[composition.position]
    cx = (cx + rng.uniform(-0.04, 0.04)) * big
    cy = (cy + rng.uniform(-0.04, 0.04)) * big
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    image = Image.new("RGB", (big, big), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    fill = COLORS[composition.color]
    if composition.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif composition.shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        left, top, right, bottom = box
        draw.polygon([(cx, top), (right, bottom), (left, bottom)], fill=fill)
    return image.resize((resolution, resolution), Image.Resampling.LANCZOS)


def generate_split(
    compositions: list[Composition], count: int, resolution: int, seed: int
) -> Iterator[tuple[Image.Image, Composition]]:
    """`count` images cycling through `compositions` in a seeded random order."""
    rng = random.Random(seed)
    for i in range(count):
        if i % len(compositions) == 0:
            order = list(compositions)
            rng.shuffle(order)
        composition = order[i % len(compositions)]
        yield render(composition, resolution, rng), composition


# ----------------------------------------------------------------------------- judge

_FOREGROUND_THRESHOLD = 70  # max channel value above which a pixel belongs to the object


def read_attributes(image: Image.Image) -> dict[str, str | None]:
    """What the image shows, attribute by attribute; None where it shows none of the options.

    The object is the set of bright pixels; its largest connected blob decides.
    Colour is the nearest palette colour to the blob's core pixels; size and
    position come from the blob's box; shape from how much of that box it fills
    and how its width grows from top to bottom.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    side = pixels.shape[0]
    mask = _largest_blob(pixels.max(axis=2) > _FOREGROUND_THRESHOLD)
    result: dict[str, str | None] = {name: None for name in ATTRIBUTES}
    if mask.sum() < 4:
        return result
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    width, height = right - left, bottom - top
    box_side = (width + height) / 2 / side
    # One object only: scattered bright pixels (noise) fill little of a large box.
    fill = mask[top:bottom, left:right].mean()
    if fill < 0.35 or abs(width - height) > max(2, 0.25 * max(width, height)):
        return result
    result["size"] = _nearest_size(box_side)
    if result["size"] is None:  # no object of a plausible size: nothing else is trusted
        return result
    result["position"] = _nearest_position((left + right) / 2 / side, (top + bottom) / 2 / side)
    result["color"] = _nearest_color(pixels[mask])
    result["shape"] = _shape_from_mask(mask[top:bottom, left:right])
    return result


def judge(image: Image.Image, caption: str | Composition) -> dict[str, bool]:
    """Per attribute, whether `image` matches `caption`; key "all" for all four."""
    target = caption if isinstance(caption, Composition) else parse_caption(caption)
    seen = read_attributes(image)
    verdict = {name: seen[name] == value for name, value in target.attributes().items()}
    verdict["all"] = all(verdict.values())
    return verdict


def _largest_blob(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of `mask`; stray specks elsewhere are not the object."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def _nearest_size(box_side: float) -> str | None:
    if 0.20 <= box_side < 0.425:
        return "small"
    if 0.425 <= box_side <= 0.70:
        return "large"
    return None


def _nearest_position(x: float, y: float) -> str | None:
    name, (px, py) = min(POSITIONS.items(), key=lambda item: (item[1][0] - x) ** 2 + (item[1][1] - y) ** 2)
    return name if abs(px - x) < 0.14 and abs(py - y) < 0.14 else None


def _nearest_color(foreground: np.ndarray) -> str | None:
    # Antialiased edge pixels are darker; the brightest half is the true fill colour.
    brightness = foreground.max(axis=1)
    core = foreground[brightness >= np.median(brightness)]
    mean = core.mean(axis=0)
    distances = {name: float(np.linalg.norm(mean - np.array(rgb))) for name, rgb in COLORS.items()}
    name = min(distances, key=distances.get)
    return name if distances[name] < 70 else None


def _shape_from_mask(box: np.ndarray) -> str | None:
    """Square: all four corners of its box filled; circle: none; triangle: only the bottom two."""
    k = max(1, min(box.shape) // 6)
    top = (box[:k, :k].mean() + box[:k, -k:].mean()) / 2
    bottom = (box[-k:, :k].mean() + box[-k:, -k:].mean()) / 2
    filled_top, filled_bottom = top >= 0.5, bottom >= 0.5
    if filled_top and filled_bottom:
        return "square"
    if not filled_top and filled_bottom:
        return "triangle"
    if not filled_top and not filled_bottom and box.mean() >= 0.55:
        return "circle"
    return None
