"""A safety head: a small classifier over an evaluator's pooled image features that flags
unwanted pictures (limner.pipelines.safety_checker pairs it with its evaluator)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from limner.errors import ConfigError
from limner.models.modeling import PretrainedModel


@dataclass
class SafetyHeadConfig:
    feature_dim: int = 128   # the evaluator's pooled features (DualEncoder.num_features)
    hidden: int = 64         # 0: a linear classifier
    threshold: float = 0.5   # an image whose unwanted-probability reaches this is flagged
    # sha256 of the evaluator's weights the head was trained on: any other feature network is refused
    evaluator_sha256: str = ""

    def __post_init__(self) -> None:
        if self.feature_dim < 1 or self.hidden < 0:
            raise ConfigError(f"feature_dim must be positive and hidden 0 or more, got {self.feature_dim} and {self.hidden}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold is a probability in (0, 1), got {self.threshold}")


class SafetyHead(PretrainedModel):
    config_class = SafetyHeadConfig

    def __init__(self, config: SafetyHeadConfig) -> None:
        super().__init__(config)
        # the features are standardised by the training images' own statistics (set by `fit_standardizer`)
        self.register_buffer("feature_mean", torch.zeros(config.feature_dim))
        self.register_buffer("feature_std", torch.ones(config.feature_dim))
        if config.hidden:
            self.classifier = nn.Sequential(nn.Linear(config.feature_dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, 1))
        else:
            self.classifier = nn.Linear(config.feature_dim, 1)

    def fit_standardizer(self, features: torch.Tensor) -> None:
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp(min=1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, feature_dim) -> unwanted-logits (B,)."""
        if features.shape[-1] != self.config.feature_dim:
            raise ConfigError(f"this safety head reads {self.config.feature_dim} features, got {features.shape[-1]}")
        return self.classifier((features - self.feature_mean) / self.feature_std).squeeze(-1)


__all__ = ["SafetyHead", "SafetyHeadConfig"]
