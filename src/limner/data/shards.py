"""WebDataset-style tar shards: datasets larger than memory, read as a stream.

    SHARDS/train-000000.tar   00000000.png  00000000.txt  00000001.jpg  00000001.txt ...
    SHARDS/test-000000.tar

Each sample is an image member (`.png`, `.jpg`, `.jpeg` or `.webp`) next to a `.txt`
member of the same key (the name up to its first dot) holding its captions, one per
line; a sample's members are adjacent in the tar. `pack_shards` writes them from an
imagefolder; `ShardReader` streams them back, never holding more than one sample of
a shard in memory, with the shard order shuffled per epoch and the shards split
between processes. A broken tar, a sample without its image or caption, or an
unreadable image raises DataError naming the shard and member (or, with
skip_invalid, is counted in `skipped` and the stream goes on).
"""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from limner.data.imagefolder import ImageFolder, load_image_array
from limner.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_CAPTION_BYTES = 1024 * 1024


def shard_paths(root: str | Path, split: str = "train") -> list[Path]:
    """The split's shards in `root`, sorted; [] if there are none."""
    root = Path(root)
    return sorted(root.glob(f"{split}-*.tar")) if root.is_dir() else []


def pack_shards(root: str | Path, out: str | Path, *, split: str = "train", shard_size: int = 1000,
                skip_invalid: bool = False, progress: bool = True) -> list[Path]:
    """Write one imagefolder split as shards of `shard_size` samples; returns their paths.
    Each shard is written under a temporary name and renamed when complete."""
    if shard_size < 1:
        raise ConfigError(f"shard_size must be at least 1, got {shard_size}")
    folder = ImageFolder(root, split, skip_invalid=skip_invalid)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if shard_paths(out, split):
        raise DataError(f"{out}: already holds {split} shards; pack into an empty folder")
    written = []
    records = folder.records
    for start in tqdm(range(0, len(records), shard_size), desc=f"packing {split}", disable=not progress, leave=False):
        path = out / f"{split}-{start // shard_size:06d}.tar"
        partial = path.with_name(f".{path.name}.partial")
        with tarfile.open(partial, "w") as tar:
            for index, record in enumerate(records[start : start + shard_size], start):
                suffix = record.path.suffix.lower()
                if suffix not in IMAGE_SUFFIXES:
                    raise DataError(f"{record.where}: {record.path.name!r} is not a {'/'.join(IMAGE_SUFFIXES)} file")
                _add(tar, f"{index:08d}{suffix}", record.path.read_bytes())
                _add(tar, f"{index:08d}.txt", "\n".join(record.captions).encode("utf-8"))
        partial.rename(path)
        written.append(path)
    return written


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


class ShardReader:
    """Streams (uint8 image (H, W, 3), captions) from a split's shards.

    >>> reader = ShardReader("shards", resolution=32)
    >>> for image, captions in reader.samples(epoch=0): ...
    """

    def __init__(self, root: str | Path, split: str = "train", *, resolution: int, skip_invalid: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.root = Path(root)
        self.split = split
        self.resolution = resolution
        self.skip_invalid = skip_invalid
        self.seed = seed
        self.shards = shard_paths(root, split)
        if not self.shards:
            raise DataError(f"{self.root}: no {split}-*.tar shards")
        if world_size > len(self.shards):
            raise DataError(f"{self.root}: {len(self.shards)} {split} shard(s) cannot feed {world_size} processes; pack smaller shards")
        self.rank, self.world_size = rank, world_size
        self.skipped: list[tuple[str, str]] = []

    def captions(self) -> list[str]:
        """Every distinct caption of the split (this process's shards), sorted: a pass that reads the
        `.txt` members and steps over the images without decoding them."""
        found: set[str] = set()
        for shard in self._my_shards(epoch=None):
            for where, _, captions in self._samples_in(shard, decode=False):
                found.update(captions)
        return sorted(found)

    def samples(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, tuple[str, ...]]]:
        """One pass over this process's shards, in an order drawn from (seed, epoch)."""
        for shard in self._my_shards(epoch):
            for _, image, captions in self._samples_in(shard, decode=True):
                yield image, captions

    def _my_shards(self, epoch: int | None) -> list[Path]:
        shards = list(self.shards)
        if epoch is not None:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(shards)
        return shards[self.rank :: self.world_size]

    def _samples_in(self, shard: Path, *, decode: bool) -> Iterator[tuple[str, np.ndarray | None, tuple[str, ...]]]:
        """(where, image or None, captions) of each complete sample of one shard, in order."""
        key, parts = None, {}
        try:
            with tarfile.open(shard, "r|*") as tar:  # a stream: members are read once, in order
                for member in tar:
                    if not member.isfile():
                        continue
                    name = member.name.rsplit("/", 1)[-1]
                    member_key, _, suffix = name.partition(".")
                    if member_key != key:
                        if key is not None:
                            yield from self._complete(shard, key, parts, decode)
                        key, parts = member_key, {}
                    suffix = "." + suffix.lower()
                    limit = MAX_CAPTION_BYTES if suffix == ".txt" else MAX_IMAGE_BYTES
                    if member.size > limit:
                        self._reject(f"{shard}:{member.name}", DataError(f"{shard}: member {member.name!r} is {member.size} bytes, over {limit}"))
                        continue
                    if suffix == ".txt" or decode:
                        parts[suffix] = tar.extractfile(member).read()
                    elif suffix in IMAGE_SUFFIXES:
                        parts[suffix] = b""  # present; not read in a captions-only pass
            if key is not None:
                yield from self._complete(shard, key, parts, decode)
        except (tarfile.TarError, EOFError, OSError) as err:
            self._reject(str(shard), DataError(f"{shard}: broken tar shard ({type(err).__name__}: {err})"))

    def _complete(self, shard: Path, key: str, parts: dict[str, bytes], decode: bool):
        where = f"{shard}:{key}"
        images = [s for s in IMAGE_SUFFIXES if s in parts]
        try:
            if ".txt" not in parts:
                raise DataError(f"{where}: sample has no .txt caption")
            if not images:
                raise DataError(f"{where}: sample has no image ({'/'.join(IMAGE_SUFFIXES)})")
            try:
                text = parts[".txt"].decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{where}: caption is not UTF-8 ({err})") from None
            captions = tuple(line.strip() for line in text.splitlines() if line.strip())
            if not captions:
                raise DataError(f"{where}: caption is empty")
            image = None
            if decode:
                image = load_image_array(io.BytesIO(parts[images[0]]), self.resolution, where=where, name=key + images[0])
        except DataError as err:
            self._reject(where, err)
            return
        yield where, image, captions

    def _reject(self, where: str, err: DataError) -> None:
        if not self.skip_invalid:
            raise err
        self.skipped.append((where, str(err)))
