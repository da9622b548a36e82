"""A CLIP-style image-text dual encoder, in one of two roles.

- **evaluator**: trained on real data only, with its own seed, and never a generator's loss. It
  supplies the feature network for FID and KID (its mean-pooled image features), the joint space
  for R-precision, retrieval and the alignment score, and, where the data has a "style" column,
  a style head. Scores measured in its space are not scores a generator was optimised to please.
- **aligner**: the same kind of model with the opposite role: a training signal for generators
  (`score` is differentiable) and the ranker behind `limner rank`. It flattens the 4x4 feature
  grid instead of pooling it, so where things are still counts.

Both learn symmetric InfoNCE with a learnt temperature (limner.training.dual_encoder). The role is
part of the config, so a saved model says which it is and loaders refuse the wrong one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from limner.errors import ConfigError
from limner.models.layers import check_resolution, down_channel_plan, down_path, TextStandardizer
from limner.models.modeling import PretrainedModel

ROLES = ("evaluator", "aligner")
POOLINGS = ("mean", "flatten")
MAX_LOGIT_SCALE = 100.0  # CLIP's clamp: a temperature no lower than 0.01


@dataclass
class DualEncoderConfig:
    role: str = "evaluator"
    resolution: int = 32
    text_dim: int = 384
    base_channels: int = 32
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 8, 8, 8, 8)  # fine to coarse, as the discriminator
    embedding_dim: int = 128  # the joint image-text space
    text_hidden: int = 0      # hidden width of the text side's two-layer projection (0: twice embedding_dim)
    # "mean": the 4x4 feature grid averaged (what FID and KID read); "flatten": kept whole, so position counts
    image_pooling: str = "mean"
    initial_temperature: float = 0.07  # CLIP's starting value
    # the dataset's styles (its metadata's "style" column), read by a linear head on the pooled
    # features, trained on real images only (never a generator's loss): with style_weight > 0 the style
    # cross-entropy joins the contrastive loss (the features then learn what tells styles apart); either
    # way the head is refitted at the end as a linear probe on the frozen final features
    styles: tuple[str, ...] = ()
    style_weight: float = 1.0

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        if self.role not in ROLES:
            raise ConfigError(f"role must be one of {list(ROLES)}, got {self.role!r}")
        if self.image_pooling not in POOLINGS:
            raise ConfigError(f"image_pooling must be one of {list(POOLINGS)}, got {self.image_pooling!r}")
        if self.embedding_dim < 1 or self.text_hidden < 0:
            raise ConfigError(f"embedding_dim must be positive and text_hidden 0 (twice embedding_dim) or positive, got "
                              f"{self.embedding_dim} and {self.text_hidden}")
        if not 0.01 <= self.initial_temperature <= 1.0:
            raise ConfigError(f"initial_temperature must be in [0.01, 1], got {self.initial_temperature}")


def aligner_config(**values) -> DualEncoderConfig:
    """The aligner's defaults: flattened grid, a wider text side."""
    return DualEncoderConfig(**{"role": "aligner", "image_pooling": "flatten", "text_hidden": 512, **values})


class DualEncoder(PretrainedModel):
    config_class = DualEncoderConfig

    def __init__(self, config: DualEncoderConfig) -> None:
        super().__init__(config)
        blocks = check_resolution(config.resolution)
        channels = down_channel_plan(config.base_channels, config.channel_multipliers, blocks)
        self.num_features = channels[-1] * (16 if config.image_pooling == "flatten" else 1)  # what FID and KID read
        self.text_norm = TextStandardizer(config.text_dim)
        self.from_rgb, self.blocks = down_path(channels)
        self.image_projection = nn.Linear(self.num_features, config.embedding_dim)
        hidden = config.text_hidden or 2 * config.embedding_dim
        self.text_projection = nn.Sequential(nn.Linear(config.text_dim, hidden), nn.GELU(), nn.Linear(hidden, config.embedding_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.initial_temperature)))
        self.style_head = nn.Linear(self.num_features, len(config.styles)) if config.styles else None

    @property
    def role(self) -> str:
        return self.config.role

    def check_can_judge(self, resolution: int) -> None:
        """Images above the model's resolution are downsampled (antialiased) before it reads them,
        real and generated alike, so it judges any resolution from its own up; never below it."""
        if resolution < self.config.resolution:
            raise ConfigError(f"the {self.role} works at {self.config.resolution} px and cannot judge {resolution} px images: "
                              f"train one at {resolution} px or below")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] (resized if not at the model's resolution) -> features (B, num_features)."""
        if images.shape[-2:] != (self.config.resolution,) * 2:
            images = F.interpolate(images, size=(self.config.resolution,) * 2, mode="bilinear", antialias=True, align_corners=False)
        grid = F.leaky_relu(self.blocks(self.from_rgb(images)), 0.2)  # (B, C, 4, 4)
        return grid.flatten(1) if self.config.image_pooling == "flatten" else grid.mean(dim=(2, 3))

    @torch.no_grad()
    def pooled_features(self, images: torch.Tensor, *, chunk: int = 512) -> torch.Tensor:
        """forward over (N, 3, H, W) in [-1, 1] in chunks, without gradients -> (N, num_features)."""
        return torch.cat([self(part) for part in images.split(chunk)])

    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> unit vectors (B, E) in the joint space."""
        return self.embed_features(self(images))

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, num_features) -> unit vectors (B, E) in the joint space."""
        return F.normalize(self.image_projection(features), dim=-1)

    def text_embedding(self, sentence: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings (B, D) of the model's text encoder -> unit vectors (B, E)."""
        return F.normalize(self.text_projection(self.text_norm(sentence)), dim=-1)

    def score(self, images: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """The cosine of each image with its own caption (B,), in [-1, 1]; differentiable."""
        return (self.image_embedding(images) * self.text_embedding(sentence)).sum(-1)

    def style_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, num_features) -> logits (B, len(config.styles))."""
        if self.style_head is None:
            raise ConfigError(f"this {self.role} has no style head: its training data had no 'style' column")
        return self.style_head(features)

    def temperature(self) -> torch.Tensor:
        """The learnt softmax temperature (a scalar tensor), at least 1/100 as in CLIP."""
        return 1.0 / self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    @classmethod
    def from_pretrained(cls, folder) -> "DualEncoder":
        """Also reads the folders of the separate Evaluator and Aligner classes of earlier releases."""
        from limner.models.legacy import is_legacy_dual_encoder, load_legacy_dual_encoder

        if is_legacy_dual_encoder(folder):
            return load_legacy_dual_encoder(cls, folder)
        return super().from_pretrained(folder)


__all__ = ["DualEncoder", "DualEncoderConfig", "ROLES", "aligner_config"]
