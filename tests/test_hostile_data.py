"""A corpus of hostile dataset files, generated here: each loads correctly (modes that can be
converted) or is refused with limner's own error naming the file and line; with the skip flag
the rest of the dataset loads and the bad entries are counted. Nothing hangs or blows up."""

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from limner.data import ImageFolder
from limner.errors import DataError


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares width x height greyscale pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def convertible_images() -> dict[str, Image.Image]:
    rgb = Image.new("RGB", (24, 24), (200, 30, 30))
    sixteen = Image.fromarray(np.full((24, 24), 40000, dtype=np.uint16))
    return {
        "cmyk.jpg": rgb.convert("CMYK"),
        "palette.png": rgb.convert("P", palette=Image.Palette.ADAPTIVE),
        "grey.png": rgb.convert("L"),
        "rgba.png": Image.new("RGBA", (24, 24), (200, 30, 30, 128)),
        "sixteen_bit.png": sixteen,
        "bilevel.png": rgb.convert("1"),
    }


def broken_files() -> dict[str, bytes]:
    good = png_bytes(Image.new("RGB", (24, 24), (0, 90, 200)))
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 90, 200)).save(jpeg, format="JPEG")
    return {
        "zero.png": b"",
        "truncated.png": good[: len(good) // 2],
        "truncated.jpg": jpeg.getvalue()[:200],
        "not_an_image.png": b"hello, I am text",
        "bomb.png": bomb_png(10_000, 10_000),     # above limner's limit, below Pillow's own
        "giant.png": bomb_png(100_000, 100_000),  # above Pillow's limit too
    }


@pytest.fixture
def hostile(tmp_path):
    root = tmp_path / "data"
    split = root / "train"
    split.mkdir(parents=True)
    lines: list[bytes] = []
    for name, image in convertible_images().items():
        image.save(split / name)
        lines.append(json.dumps({"file_name": name, "text": f"a {name.split('.')[0]} image"}).encode())
    for name, data in broken_files().items():
        (split / name).write_bytes(data)
        lines.append(json.dumps({"file_name": name, "text": "broken"}).encode())
    Image.new("RGB", (24, 24)).save(split / "ok.png")
    outside = tmp_path / "secret.png"
    Image.new("RGB", (24, 24)).save(outside)
    os.symlink(outside, split / "link.png")
    bad_lines = [
        b'{"file_name": "ok.png", "text": "caf\xe9 in latin-1"}',       # not UTF-8
        b'{"file_name": "ok.png", "text": ',                              # malformed JSON
        b'{"file_name": "ok.png"}',                                      # missing column
        b'{"text": "no file"}',                                          # missing column
        json.dumps({"file_name": "ok.png", "text": ""}).encode(),        # empty caption
        json.dumps({"file_name": "../secret.png", "text": "escape"}).encode(),
        json.dumps({"file_name": str(outside), "text": "absolute"}).encode(),
        json.dumps({"file_name": "link.png", "text": "symlink out"}).encode(),
        json.dumps({"file_name": "missing.png", "text": "gone"}).encode(),
        b"[1, 2, 3]",                                                    # not an object
    ]
    accepted_lines = [
        json.dumps({"file_name": "ok.png", "text": "x" * 100_000, "extra": 1}).encode(),  # long caption, extra column
        json.dumps({"file_name": "ok.png", "text": "the same file again"}).encode(),     # duplicate name
    ]
    (split / "metadata.jsonl").write_bytes(b"\n".join(lines + bad_lines + accepted_lines) + b"\n")
    return root, len(convertible_images()) + len(accepted_lines), len(broken_files()), len(bad_lines)


def test_each_hostile_entry_is_refused_with_its_file_and_line(hostile):
    root, _, _, _ = hostile
    with pytest.raises(DataError, match=r"metadata.jsonl:\d+: "):
        ImageFolder(root, "train")  # the first bad metadata line stops a strict read


@pytest.mark.parametrize("name", sorted(broken_files()))
def test_each_broken_image_names_itself(tmp_path, name):
    split = tmp_path / "train"
    split.mkdir()
    (split / name).write_bytes(broken_files()[name])
    (split / "metadata.jsonl").write_text(json.dumps({"file_name": name, "text": "x"}) + "\n")
    folder = ImageFolder(tmp_path, "train")
    with pytest.raises(DataError, match=rf"metadata.jsonl:1: .*{name}"):
        folder.load_images(16, progress=False)


def test_with_the_skip_flag_the_good_entries_load_and_the_bad_are_counted(hostile, capsys):
    root, good, broken, bad_lines = hostile
    folder = ImageFolder(root, "train", skip_invalid=True)
    images = folder.load_images(16, progress=False)
    assert images.shape == (good, 3, 16, 16) and images.dtype == torch.uint8
    assert len(folder.skipped) == broken + bad_lines
    reasons = " ".join(reason for _, reason in folder.skipped)
    for expected in ("not UTF-8", "malformed line", "'text' must be", "'file_name' is missing", "leaves the dataset folder",
                     "not found", "declares 10000x10000 pixels", "decompression bomb", "cannot read image 'zero.png'", "cannot read image 'truncated.png'"):
        assert expected in reasons, expected
    by_file = {r.path.name: i for i, r in enumerate(folder.records)}
    sixteen = images[by_file["sixteen_bit.png"]]
    assert abs(int(sixteen[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1  # rescaled, not clipped to white
    cmyk = images[by_file["cmyk.jpg"]].float().mean((1, 2))
    assert cmyk[0] > 150 and cmyk[1] < 80  # still red after CMYK -> RGB
    print(f"hostile corpus: {good} loaded, {broken + bad_lines} refused and counted")
