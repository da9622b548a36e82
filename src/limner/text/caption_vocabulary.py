"""Captions <-> the captioner's token ids, through the text encoder's own tokenizer."""

from __future__ import annotations

from typing import Sequence

import torch

from limner.errors import ConfigError, DependencyError
from limner.text.huggingface import resolve_model_path

PAD, BOS, EOS = 0, 1, 2  # the captioner's special token ids; a tokenizer id t becomes local id position(t) + SPECIALS
SPECIALS = 3


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    except OSError as err:
        raise DependencyError(f"cannot load the tokenizer of {name_or_path!r}: {err}") from err


class CaptionVocabulary:
    """The tokenizer ids a captioner can write (local id = position + 3; 0, 1, 2 = pad, start, end)."""

    def __init__(self, tokenizer, vocabulary: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.vocabulary = tuple(vocabulary)
        self.local = {token: i + SPECIALS for i, token in enumerate(self.vocabulary)}

    @staticmethod
    def collect(tokenizer, captions: Sequence[str]) -> tuple[int, ...]:
        """Every tokenizer id the captions use, sorted."""
        ids = tokenizer(list(captions), add_special_tokens=False)["input_ids"]
        return tuple(sorted({token for row in ids for token in row}))

    def encode(self, captions: Sequence[str], max_length: int) -> torch.Tensor:
        """(B, max_length + 1) local ids: start, the caption (cut to max_length - 1 tokens), end, padding."""
        rows = self.tokenizer(list(captions), add_special_tokens=False)["input_ids"]
        out = torch.full((len(rows), max_length + 1), PAD, dtype=torch.long)
        for i, (caption, row) in enumerate(zip(captions, rows)):
            try:
                local = [self.local[token] for token in row[: max_length - 1]]
            except KeyError as err:
                raise ConfigError(f"caption {caption!r} uses a token the captioner's vocabulary lacks ({err})") from err
            out[i, : len(local) + 2] = torch.tensor([BOS, *local, EOS])
        return out

    def decode(self, local_ids: Sequence[int]) -> str:
        ids = [self.vocabulary[t - SPECIALS] for t in local_ids if t >= SPECIALS]
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()
