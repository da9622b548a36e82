"""The Noto Color Emoji dataset: each glyph rendered in colour, captioned by its English name.

Needs Debian's `fonts-noto-color-emoji` (the font) and the PyPI package `emoji` (the names).
Pillow draws this bitmap font at size 109 only.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageDraw, ImageFont

from limner.errors import DependencyError

FONT_PATHS = (
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),
    Path("/usr/share/fonts/noto/NotoColorEmoji.ttf"),
    Path("/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf"),
)
FONT_SIZE = 109
TEST_FRACTION_PERCENT = 10
_SKIN_TONES = r"(?:light|medium-light|medium|medium-dark|dark) skin tone"
_TONE_SUFFIX = re.compile(rf" ((?:{_SKIN_TONES})(?: {_SKIN_TONES})*)$")


def find_font(path: str | Path | None = None) -> Path:
    candidates = (Path(path),) if path else FONT_PATHS
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DependencyError(
        "the Noto Color Emoji font was not found "
        f"(looked in {', '.join(str(c) for c in candidates)}); install it with: "
        "sudo apt-get install fonts-noto-color-emoji"
    )


def caption_of(short_name: str) -> str:
    """':thumbs_up_medium_skin_tone:' -> 'thumbs up: medium skin tone'."""
    name = short_name.strip(":").replace("_", " ")
    match = _TONE_SUFFIX.search(name)
    if match:
        tones = re.findall(_SKIN_TONES, match.group(1))
        name = name[: match.start()] + ": " + ", ".join(tones)
    return name


def is_test_name(caption: str) -> bool:
    """Deterministic ~10% hold-out, by a hash of the name (stable across runs and machines)."""
    digest = hashlib.sha1(caption.encode("utf-8")).digest()
    return digest[0] * 256 + digest[1] < 65536 * TEST_FRACTION_PERCENT // 100


def emoji_names() -> list[tuple[str, str]]:
    """(character, caption) for every fully-qualified emoji, in the package's order."""
    try:
        import emoji
    except ImportError as err:
        raise DependencyError("the emoji dataset needs the package 'emoji': pip install emoji") from err
    fully_qualified = emoji.STATUS["fully_qualified"]
    return [
        (char, caption_of(data["en"]))
        for char, data in emoji.EMOJI_DATA.items()
        if data.get("status") == fully_qualified
    ]


def render_glyph(char: str, font: ImageFont.FreeTypeFont, resolution: int) -> Image.Image | None:
    """The glyph cropped, centred on a white square and resized; None if the font lacks it."""
    canvas = Image.new("RGBA", (FONT_SIZE * 4, FONT_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((8, 8), char, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    width, height = box[2] - box[0], box[3] - box[1]
    if width > 1.4 * height:  # the font drew a sequence as several glyphs: not one emoji
        return None
    glyph = canvas.crop(box)
    side = max(width, height)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - width) // 2, (side - height) // 2))
    return square.convert("RGB").resize((resolution, resolution), Image.Resampling.LANCZOS)


def generate_emoji(resolution: int, split: str, font_path: str | Path | None = None) -> Iterator[tuple[Image.Image, str]]:
    font = ImageFont.truetype(str(find_font(font_path)), FONT_SIZE)
    want_test = split == "test"
    for char, caption in emoji_names():
        if is_test_name(caption) != want_test:
            continue
        image = render_glyph(char, font, resolution)
        if image is not None:
            yield image, caption
