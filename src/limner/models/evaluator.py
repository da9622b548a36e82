"""The evaluator: an independent image-text dual encoder trained on real data only.

It supplies the feature network for FID and KID (its pooled image features) and
the joint space for R-precision, retrieval and the alignment score. It is
trained with its own seed, on real images and captions, and no generator ever
uses it as a loss, so scores measured in its space are not scores a generator
was optimised to please.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from limner.models.layers import RESOLUTIONS, TextStandardizer, check_resolution, down_channel_plan, down_path
from limner.errors import ConfigError
from limner.models.modeling import PretrainedModel


@dataclass
class EvaluatorConfig:
    resolution: int = 32
    text_dim: int = 384
    base_channels: int = 32
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 8, 8, 8, 8)  # fine to coarse, as the discriminator
    embedding_dim: int = 128  # the joint image-text space
    # the dataset's styles (its metadata's "style" column), read by a linear head on the pooled
    # features, trained on real images only (never a generator's loss): with style_weight > 0 the style
    # cross-entropy joins the contrastive loss (the features then learn what tells styles apart); either
    # way the head is refitted at the end as a linear probe on the frozen final features
    styles: tuple[str, ...] = ()
    style_weight: float = 1.0

    def __post_init__(self) -> None:
        check_resolution(self.resolution)


class Evaluator(PretrainedModel):
    config_class = EvaluatorConfig

    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__(config)
        blocks = check_resolution(config.resolution)
        channels = down_channel_plan(config.base_channels, config.channel_multipliers, blocks)
        self.num_features = channels[-1]  # what torchmetrics' FID and KID read
        self.text_norm = TextStandardizer(config.text_dim)
        self.from_rgb, self.blocks = down_path(channels)
        self.image_projection = nn.Linear(channels[-1], config.embedding_dim)
        self.text_projection = nn.Sequential(
            nn.Linear(config.text_dim, 2 * config.embedding_dim), nn.GELU(), nn.Linear(2 * config.embedding_dim, config.embedding_dim)
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's starting temperature
        self.style_head = nn.Linear(channels[-1], len(config.styles)) if config.styles else None

    def check_can_judge(self, resolution: int) -> None:
        """Images above the evaluator's resolution are downsampled (antialiased) before it reads them,
        real and generated alike, so it judges any resolution from its own up; never below it."""
        if resolution < self.config.resolution:
            raise ConfigError(f"the evaluator works at {self.config.resolution} px and cannot judge {resolution} px images: "
                              f"train an evaluator at {resolution} px or below")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> pooled features (B, num_features): the FID/KID features."""
        if images.shape[-1] != self.config.resolution or images.shape[-2] != self.config.resolution:
            images = F.interpolate(images, size=(self.config.resolution,) * 2, mode="bilinear", antialias=True, align_corners=False)
        x = self.blocks(self.from_rgb(images))
        return F.leaky_relu(x, 0.2).mean(dim=(2, 3))

    @torch.no_grad()
    def pooled_features(self, images: torch.Tensor, *, chunk: int = 512) -> torch.Tensor:
        """forward over (N, 3, H, W) in [-1, 1] in chunks, without gradients -> (N, num_features)."""
        return torch.cat([self(part) for part in images.split(chunk)])

    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> unit vectors (B, E) in the joint space."""
        return self.embed_features(self(images))

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, num_features) -> unit vectors (B, E) in the joint space."""
        return F.normalize(self.image_projection(features), dim=-1)

    def text_embedding(self, sentence: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings (B, D) of the evaluator's text encoder -> unit vectors (B, E)."""
        return F.normalize(self.text_projection(self.text_norm(sentence)), dim=-1)

    def style_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, num_features) -> logits (B, len(config.styles))."""
        if self.style_head is None:
            raise ConfigError("this evaluator has no style head: its training data had no 'style' column")
        return self.style_head(features)

    def temperature(self) -> torch.Tensor:
        """The learnt softmax temperature (a scalar tensor), at least 1/100 as in CLIP."""
        return 1.0 / self.logit_scale.clamp(max=math.log(100.0)).exp()


__all__ = ["Evaluator", "EvaluatorConfig", "RESOLUTIONS"]
