"""The text-encoder interface every generator and captioner speaks."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from limner.errors import ConfigError


@dataclass
class TextEmbeddings:
    """What a text encoder returns for a batch of B captions.

    sentence: (B, D) float, one vector per caption (pooling stated by the encoder)
    tokens:   (B, T, D) float, one vector per token, padded to the longest caption
    mask:     (B, T) bool, True where `tokens` holds a real token
    """

    sentence: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor


def unit_sentences(encoder: "TextEncoder", texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(N, D) sentence embeddings of `texts` scaled to unit length (so a matrix product gives
    cosines), encoded `batch_size` at a time."""
    batches = [encoder.encode(list(texts[i:i + batch_size])).sentence.float() for i in range(0, len(texts), batch_size)]
    return torch.nn.functional.normalize(torch.cat(batches), dim=-1)


class TextEncoder:
    """A frozen map from captions to embeddings.

    Subclasses set `dim`, implement `_encode` and `config`. The encoder's
    `fingerprint` keys the on-disk embedding cache, so two encoders that could
    give different vectors never share cache entries.
    """

    dim: int
    kind: str
    max_length: int | None = None  # tokens read at most (longer captions are cut); None: no limit

    def token_count(self, caption: str) -> int | None:
        """Tokens in the caption before any cut (None where the encoder has no tokenizer)."""
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is None:
            return None
        with self._tokenizer_lock:
            return len(tokenizer(caption)["input_ids"])

    def reading(self, caption: str) -> str:
        """The caption as the encoder reads it (an encoder with a lexicon reads other names as known words)."""
        return caption

    def encode(self, captions: Sequence[str]) -> TextEmbeddings:
        captions = list(captions)
        if not captions:
            raise ConfigError("encode() needs at least one caption")
        with torch.no_grad(), self._tokenizer_lock:
            return self._encode(captions)

    @property
    def _tokenizer_lock(self) -> threading.RLock:
        """One caller at a time: a Hugging Face fast tokenizer keeps its padding and truncation
        settings on itself, so a call without padding (token_count, from a request handler) while
        another thread encodes a padded batch (the server's batch worker) breaks that batch."""
        return self.__dict__.setdefault("_lock", threading.RLock())

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "_lock"}  # a lock does not pickle

    def _encode(self, captions: list[str]) -> TextEmbeddings:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-ready description from which `load_text_encoder` rebuilds this encoder."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"
