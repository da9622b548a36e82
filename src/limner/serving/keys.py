"""API keys: random tokens, stored only as SHA-256 hashes, checked in constant time.

The key file is JSON: {"keys": [{"name": ..., "sha256": ..., "created": ..., "revoked": false}]};
a key may carry its own rate limit ("rate_limit_per_minute", "rate_limit_burst") in place of the server's.
The server re-reads it when it changes, so `limner keys revoke` takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

from limner.errors import ConfigError

KEY_PREFIX = "lmn-"


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    name: str
    sha256: str
    created: float
    revoked: bool = False
    rate_limit_per_minute: float | None = None  # None: the server's limit
    rate_limit_burst: int | None = None


def read_key_file(path: Path) -> list[KeyRecord]:
    try:
        data = json.loads(Path(path).read_text())
        records = [KeyRecord(**entry) for entry in data["keys"]]
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: API key file not found; create one with `limner keys create --file {path} NAME`") from err
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not a limner API key file ({err})") from err
    return records


def write_key_file(path: Path, records: list[KeyRecord]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"keys": [r.__dict__ for r in records]}, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def create_key(path: Path, name: str, *, rate_limit_per_minute: float | None = None, rate_limit_burst: int | None = None) -> str:
    """Add a key named `name` to the file (created if absent) and return the key itself, once."""
    path = Path(path)
    records = read_key_file(path) if path.exists() else []
    if any(r.name == name and not r.revoked for r in records):
        raise ConfigError(f"{path}: a live key named {name!r} already exists; revoke it first or pick another name")
    for label, value in (("rate_limit_per_minute", rate_limit_per_minute), ("rate_limit_burst", rate_limit_burst)):
        if value is not None and value <= 0:
            raise ConfigError(f"{label} must be positive, got {value}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = KeyRecord(name=name, sha256=hash_key(key), created=time.time(),
                       rate_limit_per_minute=rate_limit_per_minute, rate_limit_burst=rate_limit_burst)
    write_key_file(path, [*records, record])
    return key


def revoke_key(path: Path, name: str) -> int:
    """Mark every key named `name` revoked; returns how many were."""
    records = read_key_file(path)
    hits = sum(1 for r in records if r.name == name and not r.revoked)
    if not hits:
        raise ConfigError(f"{path}: no live key named {name!r}")
    write_key_file(path, [replace(r, revoked=r.revoked or r.name == name) for r in records])
    return hits


class KeyStore:
    """Answers "whose key is this?" from the key file, re-reading it when it changes."""

    def __init__(self, path: Path, *, recheck_seconds: float = 1.0) -> None:
        self.path = Path(path)
        self.recheck_seconds = recheck_seconds
        self._records = read_key_file(self.path)
        self._mtime = self.path.stat().st_mtime_ns
        self._checked = time.monotonic()

    def identify(self, presented: str) -> str | None:
        """The name of the live key equal to `presented`, else None."""
        record = self.lookup(presented)
        return record.name if record else None

    def lookup(self, presented: str) -> KeyRecord | None:
        """The live key equal to `presented`, else None. Every stored hash is compared,
        with compare_digest, so timing says nothing about which one nearly matched."""
        self._maybe_reload()
        digest = hash_key(presented)
        found = None
        for record in self._records:
            if hmac.compare_digest(record.sha256, digest) and not record.revoked:
                found = record
        return found

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck_seconds:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime != self._mtime:
                self._records, self._mtime = read_key_file(self.path), mtime
        except (OSError, ConfigError):
            pass  # keep the last good set rather than let everyone in or lock everyone out
