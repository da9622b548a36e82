"""A from-scratch bag-of-words encoder: the baseline that shows what a language model buys.

Each caption becomes the L2-normalised count vector of its words over a
vocabulary fixed from the training captions; a word outside the vocabulary
contributes nothing. No pretraining, no knowledge of synonyms or word order.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from limner.errors import ConfigError
from limner.text.base import TextEmbeddings, TextEncoder

_WORD = re.compile(r"[a-z0-9]+")


def words_of(caption: str) -> list[str]:
    return _WORD.findall(caption.lower())


class BagOfWordsEncoder(TextEncoder):
    kind = "bag_of_words"

    def __init__(self, vocabulary: list[str]) -> None:
        if not vocabulary:
            raise ConfigError("a bag-of-words encoder needs a non-empty vocabulary")
        self.vocabulary = sorted(set(vocabulary))
        self.index = {word: i for i, word in enumerate(self.vocabulary)}
        self.dim = len(self.vocabulary)

    @classmethod
    def from_captions(cls, captions: Iterable[str]) -> "BagOfWordsEncoder":
        return cls(sorted({word for caption in captions for word in words_of(caption)}))

    def _encode(self, captions: list[str]) -> TextEmbeddings:
        ids = [[self.index[w] for w in words_of(c) if w in self.index] for c in captions]
        length = max(1, max(len(row) for row in ids))
        tokens = torch.zeros(len(captions), length, self.dim)  # (B, T, D) one-hot per word
        mask = torch.zeros(len(captions), length, dtype=torch.bool)
        for b, row in enumerate(ids):
            for t, word_id in enumerate(row):
                tokens[b, t, word_id] = 1.0
                mask[b, t] = True
        sentence = F.normalize(tokens.sum(1), dim=-1)  # all-zero for a caption of unknown words
        return TextEmbeddings(sentence=sentence, tokens=tokens, mask=mask)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocabulary": self.vocabulary}
