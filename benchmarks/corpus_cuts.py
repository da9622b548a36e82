"""Cutting imagefolder datasets out of a built corpus for a benchmark: the chosen rows of a split,
their images hard-linked (or copied) into a new folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path


def concept_half(concept: str) -> str:
    """A concept's half, "development" or "blind", fixed by its name alone (so every style of a
    concept lands in one half)."""
    return "development" if hashlib.sha256(concept.encode()).digest()[0] % 2 == 0 else "blind"


def read_split_rows(folder: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / split / "metadata.jsonl").read_text().splitlines() if line.strip()]


def write_split(source: Path, split: str, rows: list[dict], target: Path, target_split: str) -> None:
    """An imagefolder split of `rows`, its images hard-linked (or copied) from `source` (an
    imagefolder refuses links that lead out of it)."""
    folder = target / target_split
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        copy = folder / row["file_name"]
        if not copy.exists():
            try:
                os.link(source / split / row["file_name"], copy)
            except OSError:
                shutil.copy2(source / split / row["file_name"], copy)
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def cut_halves(corpus: Path, out: Path) -> dict[str, Path]:
    """Two copies of the corpus that share its train split and each hold half of its test concepts."""
    train, test = read_split_rows(corpus, "train"), read_split_rows(corpus, "test")
    folders = {}
    for half in ("development", "blind"):
        folder = folders[half] = out / half
        write_split(corpus, "train", train, folder, "train")
        write_split(corpus, "test", [row for row in test if concept_half(row["concept"]) == half], folder, "test")
        for name in ("dataset_info.json", "README.md"):
            if (corpus / name).is_file():
                shutil.copy2(corpus / name, folder / name)
    return folders


def add_halves_arguments(parser, output_dir: str) -> None:
    """The arguments of a benchmark that reads a model on the two halves of emoji-styles' test concepts."""
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--evaluator-dir", required=True)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--output-dir", default=output_dir)


def emoji_halves(args) -> tuple[Path, dict[str, Path]]:
    """Prints the sgemm ceiling, then cuts emoji-styles into its two halves under args.output_dir/data:
    (the output folder, {"development": folder, "blind": folder})."""
    from limner.data.builders import builtin_data_dir
    from machine import sgemm_gflops

    out = Path(args.output_dir)
    print(f"sgemm ceiling: {sgemm_gflops():.0f} GFLOP/s (2 threads)", flush=True)
    return out, cut_halves(builtin_data_dir("emoji-styles", args.resolution), out / "data")
