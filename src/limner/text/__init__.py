"""Text encoders: captions to sentence embeddings (B, D), token embeddings (B, T, D) and a mask."""

from __future__ import annotations

from typing import Any

from limner.errors import ConfigError
from limner.text.anchored import AnchoredWordEncoder
from limner.text.bag_of_words import BagOfWordsEncoder
from limner.text.base import TextEmbeddings, TextEncoder
from limner.text.cache import CachedTextEncoder
from limner.text.huggingface import DEFAULT_TEXT_ENCODER, HuggingFaceTextEncoder

__all__ = [
    "AnchoredWordEncoder",
    "BagOfWordsEncoder",
    "CachedTextEncoder",
    "DEFAULT_TEXT_ENCODER",
    "HuggingFaceTextEncoder",
    "TextEmbeddings",
    "TextEncoder",
    "load_text_encoder",
]


def load_text_encoder(config: dict[str, Any]) -> TextEncoder:
    """Rebuild an encoder from the dict its `config()` returned."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind == HuggingFaceTextEncoder.kind:
        return HuggingFaceTextEncoder(**config)
    if kind == BagOfWordsEncoder.kind:
        return BagOfWordsEncoder(**config)
    if kind == AnchoredWordEncoder.kind:
        return AnchoredWordEncoder(**config)
    kinds = sorted(k.kind for k in (AnchoredWordEncoder, BagOfWordsEncoder, HuggingFaceTextEncoder))
    raise ConfigError(f"unknown text encoder kind {kind!r}; valid kinds are {kinds}")
