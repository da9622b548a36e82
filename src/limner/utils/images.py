"""Tensor <-> PIL conversion, labelled grids and PNG text metadata."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> B PIL images."""
    array = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (B, 3, H, W)
    return [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in array]


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: alpha over white, 16-bit and float greys rescaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        grey = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "P", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def square_resize(image: Image.Image, resolution: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return image


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, H, W) in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def make_grid(images: Sequence[Image.Image], columns: int, *, row_labels: Sequence[str] | None = None, scale: int = 1, padding: int = 2) -> Image.Image:
    """Images in rows of `columns`, optionally with a text label left of each row."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    width, height = images[0].size
    width, height = width * scale, height * scale
    rows = (len(images) + columns - 1) // columns
    font = ImageFont.load_default()
    label_width = 0
    if row_labels:
        label_width = max(int(font.getlength(label)) for label in row_labels) + 8
    grid = Image.new("RGB", (label_width + columns * (width + padding) + padding, rows * (height + padding) + padding), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, image in enumerate(images):
        row, col = divmod(i, columns)
        tile = image.resize((width, height), Image.Resampling.NEAREST) if scale != 1 else image
        grid.paste(tile, (label_width + padding + col * (width + padding), padding + row * (height + padding)))
    for row, label in enumerate(row_labels or []):
        draw.text((4, padding + row * (height + padding) + height // 2 - 6), label, fill=(0, 0, 0), font=font)
    return grid


def save_png(image: Image.Image, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Save a PNG (with text metadata) atomically: written aside, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(key, str(value))
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)


def png_metadata(path: str | Path) -> dict[str, str]:
    with Image.open(path) as image:
        return dict(getattr(image, "text", {}))


def images_equal(a: Sequence[Image.Image], b: Sequence[Image.Image]) -> bool:
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
