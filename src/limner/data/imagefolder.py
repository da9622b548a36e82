"""Image folders in the Hugging Face imagefolder layout.

    DIR/
      train/metadata.jsonl    {"file_name": "0001.png", "text": "a red circle"}
      train/0001.png          ("text" may also be a list of captions; one is drawn per step)
      test/metadata.jsonl
A folder without split subfolders is a single "train" split. `metadata.csv`
with the columns file_name,text works too.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from limner.errors import DataError
from limner.utils.images import square_resize, to_rgb

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # far above any training image; a bomb declares more


@dataclass(frozen=True)
class Record:
    path: Path
    captions: tuple[str, ...]
    where: str  # "metadata.jsonl:12", for error messages
    columns: dict = field(default_factory=dict, compare=False)  # the line's other columns (style, concept, ...)


class ImageFolder:
    """One split of an imagefolder dataset, read and validated eagerly.

    With `skip_invalid=True`, bad metadata lines and unreadable images are skipped
    and listed in `self.skipped` as (where, reason); otherwise the first one
    raises DataError naming the file and line.
    """

    def __init__(self, root: str | Path, split: str = "train", *, skip_invalid: bool = False):
        self.root = Path(root)
        self.split = split
        self.skip_invalid = skip_invalid
        self.skipped: list[tuple[str, str]] = []
        self.folder = self._split_folder()
        self.records = self._read_metadata()
        if not self.records:
            raise DataError(f"{self.folder}: the {split!r} split has no usable images")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def captions(self) -> list[str]:
        """Every distinct caption of the split, sorted."""
        return sorted({c for record in self.records for c in record.captions})

    def _split_folder(self) -> Path:
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        if (self.root / self.split).is_dir():
            return self.root / self.split
        if self.split == "train" and _metadata_file(self.root) is not None:
            return self.root
        splits = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _metadata_file(p))
        raise DataError(f"{self.root}: no split {self.split!r} (splits found: {splits or 'none'})")

    def _read_metadata(self) -> list[Record]:
        metadata = _metadata_file(self.folder)
        if metadata is None:
            raise DataError(f"{self.folder}: no metadata.jsonl or metadata.csv")
        records = []
        for line_no, row in _read_rows(metadata):
            where = f"{metadata}:{line_no}"
            try:
                records.append(self._record(row, where))
            except DataError as err:
                self._reject(where, err)
        return records

    def _record(self, row: object, where: str) -> Record:
        if isinstance(row, _MalformedLine):
            raise DataError(f"{where}: malformed line ({row})")
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with 'file_name' and 'text'")
        file_name = row.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DataError(f"{where}: 'file_name' is missing or not a string")
        captions = _captions_of(row.get("text"), where)
        base = self.folder.resolve()
        path = (base / file_name).resolve()
        if base not in path.parents:
            raise DataError(f"{where}: file_name {file_name!r} leaves the dataset folder")
        if not path.is_file():
            raise DataError(f"{where}: image {file_name!r} not found")
        columns = {key: value for key, value in row.items() if key not in ("file_name", "text")}
        return Record(path=path, captions=captions, where=where, columns=columns)

    def _reject(self, where: str, err: Exception) -> None:
        if not self.skip_invalid:
            raise err
        self.skipped.append((where, str(err)))

    def load_images(self, resolution: int, *, progress: bool = True) -> torch.Tensor:
        """All images as uint8 (N, 3, resolution, resolution), centre-cropped and resized.

        Unreadable images raise DataError (or, with skip_invalid, are dropped from
        `records` and counted in `skipped`).
        """
        arrays, kept = [], []
        for record in tqdm(self.records, desc=f"loading {self.split}", disable=not progress, leave=False):
            try:
                arrays.append(load_image_array(record.path, resolution, where=record.where))
                kept.append(record)
            except DataError as err:
                self._reject(record.where, err)
        self.records = kept
        if not arrays:
            raise DataError(f"{self.folder}: no image of the {self.split!r} split could be read")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def load_image_array(source: Path | BinaryIO, resolution: int, *, where: str = "", name: str | None = None) -> np.ndarray:
    """uint8 (H, W, 3) of one image (a file, or an open binary stream); transparent areas become white.

    The declared size is checked before any pixel is decoded, so a small file that
    claims to be enormous (a decompression bomb) is refused without using the memory.
    """
    name = name or Path(source).name
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"{where or name}: image {name!r} declares {width}x{height} pixels, "
                                f"more than the limit of {MAX_IMAGE_PIXELS}")
            image.load()
            rgb = to_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise DataError(f"{where or name}: cannot read image {name!r} ({err})") from err
    return np.asarray(square_resize(rgb, resolution))


def write_imagefolder(root: str | Path, split: str, items: Iterable[tuple[Image.Image, str]], *, total: int | None = None) -> int:
    """Write (image, caption) pairs as `root/split/` with metadata.jsonl; returns the count.

    The split is built in a temporary folder and moved into place at the end, so
    an interrupted build never leaves a half-written split behind.
    """
    root = Path(root)
    final = root / split
    staging = root / f".{split}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    count = 0
    with open(staging / "metadata.jsonl", "w") as metadata:
        for count, (image, caption) in enumerate(tqdm(items, total=total, desc=f"writing {split}", leave=False), 1):
            file_name = f"{count:06d}.png"
            image.save(staging / file_name)
            metadata.write(json.dumps({"file_name": file_name, "text": caption}) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    return count


def _metadata_file(folder: Path) -> Path | None:
    for name in METADATA_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _read_rows(metadata: Path) -> Iterable[tuple[int, object]]:
    if metadata.suffix == ".csv":
        try:
            metadata.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{metadata}: not UTF-8 ({err})") from err
        with open(metadata, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"file_name", "text"} <= set(reader.fieldnames):
                raise DataError(f"{metadata}:1: the header must name the columns 'file_name' and 'text'")
            for row in reader:
                yield reader.line_num, row
        return
    with open(metadata, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield line_no, _MalformedLine(f"not UTF-8: {err}")
                continue
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                yield line_no, _MalformedLine(str(err))


class _MalformedLine(str):
    """A metadata line that is not valid JSON; `_record` reports it."""


def _captions_of(text: object, where: str) -> tuple[str, ...]:
    if isinstance(text, str) and text.strip():
        return (text.strip(),)
    if isinstance(text, list) and text and all(isinstance(t, str) and t.strip() for t in text):
        return tuple(t.strip() for t in text)
    raise DataError(f"{where}: 'text' must be a non-empty string or a list of them")
