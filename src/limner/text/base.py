"""The text-encoder interface every generator and captioner speaks."""

from __future__ import annotations

import hashlib
import json
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
        return None if tokenizer is None else len(tokenizer(caption)["input_ids"])

    def encode(self, captions: Sequence[str]) -> TextEmbeddings:
        captions = list(captions)
        if not captions:
            raise ConfigError("encode() needs at least one caption")
        with torch.no_grad():
            return self._encode(captions)

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
