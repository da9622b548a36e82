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
