"""Learned words (textual inversion): new tokens such as "<my-style>" whose input embeddings are
learnt while the language model and the generator stay frozen. Captions are read through the
frozen model as usual, with each learned word's vector in place of a word embedding, so a
learned word takes its meaning from its context like any other.

limner.training.finetune learns a word (`limner finetune --method textual-inversion`); a
pipeline loads it with `pipe.load_textual_inversion(folder)`.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import torch
import torch.nn.functional as F

from limner.errors import ConfigError
from limner.text.base import TextEmbeddings, TextEncoder
from limner.text.huggingface import HuggingFaceTextEncoder

LEARNED_WORDS = "learned_embeds.safetensors"  # {token: input-embedding vector}, the diffusers name


class LearnedWordsEncoder(TextEncoder):
    """A Hugging Face encoder that also reads `words` ({token: input-embedding vector})."""

    def __init__(self, base: TextEncoder, words: dict[str, torch.Tensor]) -> None:
        if isinstance(base, LearnedWordsEncoder):
            words, base = {**base.vectors, **words}, base.base
        if not isinstance(base, HuggingFaceTextEncoder):
            raise ConfigError(f"learned words need a Hugging Face language model as the text encoder; this model reads captions "
                              f"with {base.kind!r}")
        self.base, self.kind, self.dim, self.max_length = base, base.kind, base.dim, base.max_length
        self.model = base.model
        self.tokenizer = copy.deepcopy(base.tokenizer)  # the base's own tokenizer keeps its vocabulary
        table = self.model.get_input_embeddings()
        for word, vector in words.items():
            if not word.strip() or word != word.strip():
                raise ConfigError(f"a learned word must be one non-empty token without spaces around it, got {word!r}")
            if word in base.tokenizer.get_vocab():
                raise ConfigError(f"{word!r} is already a word of the language model; pick a new one such as '<my-style>'")
            if vector.shape != (table.embedding_dim,):
                raise ConfigError(f"the learned word {word!r} has a {tuple(vector.shape)} vector; this language model's "
                                  f"word embeddings are ({table.embedding_dim},)")
        self.tokenizer.add_tokens(list(words))
        self.vectors = dict(words)
        self.word_ids = {word: self.tokenizer.convert_tokens_to_ids(word) for word in words}

    def encode_live(self, captions: list[str]) -> TextEmbeddings:
        """encode() with gradients flowing into the learned vectors (for learning them)."""
        if not captions:
            raise ConfigError("encode() needs at least one caption")
        return self._encode(list(captions))

    def _encode(self, captions: list[str]) -> TextEmbeddings:
        base = self.base
        batch = self.tokenizer(captions, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        ids = batch["input_ids"]
        table = self.model.get_input_embeddings()
        embeds = table(ids.clamp(max=table.num_embeddings - 1))  # learned words' ids lie past the table: replaced below
        for word, token_id in self.word_ids.items():
            hit = (ids == token_id).unsqueeze(-1)
            if hit.any():
                embeds = torch.where(hit, self.vectors[word].to(embeds.dtype), embeds)
        output = self.model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], output_hidden_states=base.hidden_layer is not None)
        tokens = output.last_hidden_state if base.hidden_layer is None else output.hidden_states[base.hidden_layer]
        mask = batch["attention_mask"].bool()
        sentence = base._pool(output, tokens, mask)
        if base.normalize:
            sentence = F.normalize(sentence, dim=-1)
        return TextEmbeddings(sentence=sentence.float(), tokens=tokens.float(), mask=mask)

    def config(self) -> dict[str, Any]:
        """The base's config, and a digest of each learned vector: what keys the embedding cache. A
        pipeline holding learned words is not saved as a model (save the base and the words apart)."""
        digests = {word: hashlib.sha256(vector.detach().float().numpy().tobytes()).hexdigest()[:16] for word, vector in self.vectors.items()}
        return {**self.base.config(), "learned_words": digests}


def word_vector(encoder: HuggingFaceTextEncoder, word: str) -> torch.Tensor:
    """The input embedding of `word`'s first token: where a learned word starts."""
    ids = encoder.tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError(f"the initializer word {word!r} has no tokens")
    return encoder.model.get_input_embeddings().weight[ids[0]].detach().clone()
