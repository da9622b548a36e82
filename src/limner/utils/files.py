"""Small file helpers shared across limner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from limner.errors import ModelLoadError


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json_object(path: str | Path, *, missing: str | None = None) -> dict:
    """A JSON object from a model folder's file; ModelLoadError naming the file when it is missing
    (with `missing` as the message, if given), unreadable, or not an object."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(missing or f"{path} is missing") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(values, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return values
