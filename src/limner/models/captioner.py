"""The captioner: images to words.

An image encoder (the discriminator's residual down-blocks) turns the image into
a 4x4 grid of feature vectors; a Transformer decoder reads that grid through
cross-attention and writes the caption one token at a time, in the text encoder's
own tokenizer. The output layer covers only the tokens the training captions use
(`vocabulary`, tokenizer ids), which keeps the softmax small on a CPU; local ids
0, 1, 2 are padding, start and end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from limner.errors import ConfigError
from limner.models.layers import check_resolution, down_channel_plan, down_path
from limner.models.modeling import PretrainedModel
from limner.text.caption_vocabulary import BOS, EOS, PAD, SPECIALS


@dataclass
class CaptionerConfig:
    resolution: int = 32
    base_channels: int = 32
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 8, 8, 8, 8)  # fine to coarse, as the discriminator
    width: int = 128            # the decoder's model width
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    max_length: int = 24        # caption tokens, the end token included
    vocabulary: tuple[int, ...] = ()  # tokenizer ids the captioner can write; local id = position + 3

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        if self.width % self.heads:
            raise ConfigError(f"width ({self.width}) must be a multiple of heads ({self.heads})")
        if self.max_length < 2:
            raise ConfigError(f"max_length must be at least 2, got {self.max_length}")

    @property
    def vocab_size(self) -> int:
        return SPECIALS + len(self.vocabulary)


class Captioner(PretrainedModel):
    config_class = CaptionerConfig

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__(config)
        blocks = check_resolution(config.resolution)
        channels = down_channel_plan(config.base_channels, config.channel_multipliers, blocks)
        self.from_rgb, self.blocks = down_path(channels)
        self.to_memory = nn.Linear(channels[-1], config.width)
        self.memory_position = nn.Parameter(torch.zeros(16, config.width))  # the 4x4 grid, row by row
        self.token_embedding = nn.Embedding(config.vocab_size, config.width, padding_idx=PAD)
        self.token_position = nn.Parameter(torch.zeros(config.max_length, config.width))
        layer = nn.TransformerDecoderLayer(config.width, config.heads, 4 * config.width, config.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, config.layers)
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab_size)
        nn.init.normal_(self.memory_position, std=0.02)
        nn.init.normal_(self.token_position, std=0.02)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> memory (B, 16, width)."""
        if images.shape[-2:] != (self.config.resolution,) * 2:
            images = F.interpolate(images, size=(self.config.resolution,) * 2, mode="bilinear", antialias=True, align_corners=False)
        grid = F.leaky_relu(self.blocks(self.from_rgb(images)), 0.2)  # (B, C, 4, 4)
        return self.to_memory(grid.flatten(2).transpose(1, 2)) + self.memory_position

    def decode(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """memory (B, 16, width), tokens (B, T) local ids starting with BOS -> logits (B, T, V)."""
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.token_position[:length]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)  # True: may not attend
        x = self.decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=tokens == PAD)
        return self.head(self.norm(x))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images), tokens)

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, max_length: int | None = None) -> list[list[int]]:
        """The most likely token at each step; local ids without BOS/EOS, one list per image."""
        limit = min(max_length or self.config.max_length, self.config.max_length)
        memory = self.encode(images)
        tokens = torch.full((images.shape[0], 1), BOS, dtype=torch.long)
        done = torch.zeros(images.shape[0], dtype=torch.bool)
        for _ in range(limit):
            logits = self.decode(memory, tokens)[:, -1]
            logits[:, PAD] = logits[:, BOS] = float("-inf")
            chosen = logits.argmax(-1).masked_fill(done, PAD)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)
            done |= chosen == EOS
            if done.all():
                break
        return [row[: self._end(row)] for row in (r[1:] for r in tokens.tolist())]

    @torch.no_grad()
    def beam_search(self, images: torch.Tensor, beams: int = 3, max_length: int | None = None) -> list[list[int]]:
        """The `beams` best partial captions kept at every step, ranked by total log-probability;
        with beams=1 this is greedy decoding. Local ids without BOS/EOS, one list per image."""
        if beams < 1:
            raise ConfigError(f"beams must be at least 1, got {beams}")
        limit = min(max_length or self.config.max_length, self.config.max_length)
        batch = images.shape[0]
        memory = self.encode(images).repeat_interleave(beams, 0)  # (B*K, 16, width)
        tokens = torch.full((batch * beams, 1), BOS, dtype=torch.long)
        scores = torch.zeros(batch, beams)
        scores[:, 1:] = float("-inf")  # all beams start identical: keep one alive
        finished = torch.zeros(batch * beams, dtype=torch.bool)
        for _ in range(limit):
            logits = self.decode(memory, tokens)[:, -1].float()  # (B*K, V)
            log_probs = F.log_softmax(logits, dim=-1)
            log_probs[:, PAD] = log_probs[:, BOS] = float("-inf")
            # a finished beam may only extend itself with padding, at no cost
            log_probs[finished] = float("-inf")
            log_probs[finished, PAD] = 0.0
            vocab = log_probs.shape[1]
            total = (scores.view(-1, 1) + log_probs).view(batch, beams * vocab)
            scores, flat = total.topk(beams, dim=1)  # (B, K)
            origin = (flat // vocab) + torch.arange(batch)[:, None] * beams  # (B, K) rows of the previous step
            chosen = (flat % vocab).view(-1, 1)
            tokens = torch.cat([tokens[origin.view(-1)], chosen], dim=1)
            finished = finished[origin.view(-1)] | (chosen.view(-1) == EOS)
            if finished.all():
                break
        best = tokens.view(batch, beams, -1)[:, 0, 1:]  # topk keeps beam 0 as the best
        return [row[: self._end(row)] for row in best.tolist()]

    @staticmethod
    def _end(row: list[int]) -> int:
        """How many tokens come before the first end (or padding) token."""
        return next((i for i, t in enumerate(row) if t in (EOS, PAD)), len(row))


__all__ = ["BOS", "Captioner", "CaptionerConfig", "EOS", "PAD"]
