"""On-disk cache of caption embeddings, keyed by encoder fingerprint and caption text.

Layout: `{cache_dir}/{encoder fingerprint}/shard-*.safetensors`. Each call that
meets new captions encodes only those and writes them as one new shard, written
to a temporary name and renamed, so a crash never leaves a half-written shard.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from limner.text.base import TextEmbeddings, TextEncoder


def caption_key(caption: str) -> str:
    return hashlib.sha1(caption.encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("LIMNER_CACHE", Path.home() / ".cache" / "limner")) / "embeddings"


class CachedTextEncoder:
    """Wraps an encoder; `sentence_table(captions)` returns (N, D) from cache or fresh.

    Token states are stored per caption, trimmed to the caption's length.
    """

    def __init__(self, encoder: TextEncoder, cache_dir: Path | None = None, *, batch_size: int = 256):
        self.encoder = encoder
        self.folder = Path(cache_dir or default_cache_dir()) / encoder.fingerprint
        self.batch_size = batch_size
        self._sentence: dict[str, torch.Tensor] = {}
        self._tokens: dict[str, torch.Tensor] = {}
        self.encoded_count = 0  # captions this object actually ran through the encoder
        self._load_shards()

    def _load_shards(self) -> None:
        if not self.folder.is_dir():
            return
        for shard in sorted(self.folder.glob("shard-*.safetensors")):
            for name, tensor in load_file(shard).items():
                kind, key = name.split(".", 1)
                (self._sentence if kind == "sentence" else self._tokens)[key] = tensor

    def __contains__(self, caption: str) -> bool:
        return caption_key(caption) in self._sentence

    def ensure(self, captions: Sequence[str], *, progress: bool = True) -> None:
        """Encode and persist whichever of `captions` the cache does not hold yet."""
        missing = sorted({c for c in captions if caption_key(c) not in self._sentence})
        if not missing:
            return
        new: dict[str, torch.Tensor] = {}
        batches = range(0, len(missing), self.batch_size)
        for start in tqdm(batches, desc="encoding captions", disable=not progress or len(batches) < 2):
            chunk = missing[start : start + self.batch_size]
            out = self.encoder.encode(chunk)
            for i, caption in enumerate(chunk):
                key = caption_key(caption)
                self._sentence[key] = out.sentence[i].clone()
                self._tokens[key] = out.tokens[i][out.mask[i]].clone()
                new[f"sentence.{key}"] = self._sentence[key]
                new[f"tokens.{key}"] = self._tokens[key]
        self.encoded_count += len(missing)
        self._write_shard(new)

    def _write_shard(self, tensors: dict[str, torch.Tensor]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{uuid.uuid4().hex}.safetensors"
        tmp = self.folder / f".{name}.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, self.folder / name)

    def sentence_table(self, captions: Sequence[str], *, progress: bool = True) -> torch.Tensor:
        """(N, D) sentence embeddings, in the order of `captions`."""
        self.ensure(captions, progress=progress)
        return torch.stack([self._sentence[caption_key(c)] for c in captions])

    def encode(self, captions: Sequence[str]) -> TextEmbeddings:
        """Same result as the wrapped encoder's `encode`, served from the cache."""
        self.ensure(captions, progress=False)
        keys = [caption_key(c) for c in captions]
        length = max(self._tokens[k].shape[0] for k in keys)
        tokens = torch.zeros(len(keys), length, self.encoder.dim)
        mask = torch.zeros(len(keys), length, dtype=torch.bool)
        for b, key in enumerate(keys):
            n = self._tokens[key].shape[0]
            tokens[b, :n] = self._tokens[key]
            mask[b, :n] = True
        sentence = torch.stack([self._sentence[k] for k in keys])
        return TextEmbeddings(sentence=sentence, tokens=tokens, mask=mask)
