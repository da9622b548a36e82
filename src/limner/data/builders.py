"""Builders for limner's builtin datasets, written as imagefolders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import limner.data.emoji as emoji_data
import limner.data.shapes as shapes
from limner.data.imagefolder import write_imagefolder
from limner.errors import ConfigError

BUILTIN_DATASETS = ("shapes", "emoji", "emoji-styles")


def build_shapes(out: str | Path, *, resolution: int = 32, train_size: int = 20_000, test_size: int = 2_000, seed: int = 0) -> dict:
    if resolution < 32 or resolution % 16:
        raise ConfigError(f"--resolution must be a multiple of 16 and at least 32, got {resolution}")
    out = Path(out)
    counts = {
        "train": write_imagefolder(out, "train", _captioned(shapes.generate_split(shapes.train_compositions(), train_size, resolution, seed)), total=train_size),
        "test": write_imagefolder(out, "test", _captioned(shapes.generate_split(shapes.held_out_compositions(), test_size, resolution, seed + 1)), total=test_size),
    }
    info = {
        "name": "shapes",
        "resolution": resolution,
        "seed": seed,
        "splits": counts,
        "held_out_seed": shapes.HELD_OUT_SEED,
        "held_out_captions": [c.caption for c in shapes.held_out_compositions()],
    }
    _write_info(out, info)
    return info


def build_emoji(out: str | Path, *, resolution: int = 64, font_path: str | None = None) -> dict:
    if resolution < 8 or resolution > 1024:
        raise ConfigError(f"--resolution must be between 8 and 1024, got {resolution}")
    emoji_data.find_font(font_path)  # fail before writing anything
    out = Path(out)
    counts = {split: write_imagefolder(out, split, emoji_data.generate_emoji(resolution, split, font_path)) for split in ("train", "test")}
    info = {"name": "emoji", "resolution": resolution, "splits": counts, "test_rule": "sha1(name) in the lowest 10%"}
    _write_info(out, info)
    return info


def builtin_data_dir(name: str, resolution: int, cache_root: Path | None = None) -> Path:
    """The folder of a builtin dataset at `resolution`, built on first use."""
    if name not in BUILTIN_DATASETS:
        raise ConfigError(f"unknown builtin dataset {name!r}; builtin datasets are {list(BUILTIN_DATASETS)}")
    root = Path(cache_root or os.environ.get("LIMNER_DATA", Path.home() / ".cache" / "limner" / "datasets"))
    folder = root / f"{name}-{resolution}"
    if not (folder / "dataset_info.json").is_file():
        from limner.data.emoji_styles import build_emoji_styles

        builder = {"shapes": build_shapes, "emoji": build_emoji, "emoji-styles": build_emoji_styles}[name]
        builder(folder, resolution=resolution)
    return folder


def _captioned(pairs):
    for image, composition in pairs:
        yield image, composition.caption


def _write_info(out: Path, info: dict) -> None:
    (out / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
