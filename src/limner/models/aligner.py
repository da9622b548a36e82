"""The aligner: a CLIP-style dual encoder that scores how well an image and a caption match.

It has the evaluator's interface (image_embedding, text_embedding, temperature) and is
trained the same way (InfoNCE with a learnt temperature, limner.training.dual_encoder),
but it is a separate model with a separate role: the evaluator judges generators and
must never be a training signal; the aligner exists to be one (`score` is differentiable)
and to rank captions and images (`limner rank`). Its image side flattens the 4x4 grid
instead of pooling it, so where things are still counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from limner.errors import ConfigError
from limner.models.layers import TextStandardizer, check_resolution, down_channel_plan, down_path
from limner.models.modeling import PretrainedModel

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp: a temperature no lower than 0.01


@dataclass
class AlignerConfig:
    resolution: int = 32
    text_dim: int = 384
    base_channels: int = 32
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 8, 8, 8, 8)  # fine to coarse, as the discriminator
    embed_dim: int = 128
    text_hidden: int = 512
    initial_temperature: float = 0.07  # CLIP's starting value

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        if self.embed_dim < 1 or self.text_hidden < 1:
            raise ConfigError("embed_dim and text_hidden must be positive")
        if not 0.01 <= self.initial_temperature <= 1.0:
            raise ConfigError(f"initial_temperature must be in [0.01, 1], got {self.initial_temperature}")


class Aligner(PretrainedModel):
    config_class = AlignerConfig

    def __init__(self, config: AlignerConfig) -> None:
        super().__init__(config)
        blocks = check_resolution(config.resolution)
        channels = down_channel_plan(config.base_channels, config.channel_multipliers, blocks)
        self.text_norm = TextStandardizer(config.text_dim)
        self.from_rgb, self.blocks = down_path(channels)
        self.image_head = nn.Linear(channels[-1] * 16, config.embed_dim)
        self.text_head = nn.Sequential(nn.Linear(config.text_dim, config.text_hidden), nn.GELU(), nn.Linear(config.text_hidden, config.embed_dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.initial_temperature)))

    def temperature(self) -> torch.Tensor:
        """The learnt softmax temperature (a scalar tensor), at least 1/100 as in CLIP."""
        return 1.0 / self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] (resized if they are not at the aligner's resolution) -> (B, E), unit length."""
        if images.shape[-2:] != (self.config.resolution,) * 2:
            images = F.interpolate(images, size=(self.config.resolution,) * 2, mode="bilinear", antialias=True, align_corners=False)
        grid = F.leaky_relu(self.blocks(self.from_rgb(images)), 0.2)  # (B, C, 4, 4)
        return F.normalize(self.image_head(grid.flatten(1)), dim=-1)

    def text_embedding(self, sentence: torch.Tensor) -> torch.Tensor:
        """sentence embeddings (B, D) -> (B, E), unit length."""
        return F.normalize(self.text_head(self.text_norm(sentence)), dim=-1)

    def score(self, images: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """The cosine of each image with its own caption (B,), in [-1, 1]; differentiable."""
        return (self.image_embedding(images) * self.text_embedding(sentence)).sum(-1)

    def forward(self, images: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """Similarities of every image with every caption (B_images, B_captions), cosines over the temperature."""
        return self.image_embedding(images) @ self.text_embedding(sentence).T / self.temperature()
