"""The latent encoder: a small training-only network that reads a real image and proposes the
generator noise that draws it (BicycleGAN's encoder; Zhu et al. 2017).

Where several real images share a caption (an emoji name drawn in six styles), the caption
alone cannot say which one to draw; a plain pixel loss then pulls every sample onto their blurred
mean. With the encoder, the generator is shown which noise belongs to which image, and a KL term
keeps those noises distributed as the prior, so that noise drawn at random later picks one of
the real looks. Only the first `latent_dims` noise entries are encoded; the rest stay random.
The encoder reads a coarse copy of the image (`input_size` pixels a side): enough to tell a
palette and an outline apart, too little to carry the whole picture past the caption.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from limner.errors import ConfigError
from limner.models.modeling import PretrainedModel


@dataclass
class LatentEncoderConfig:
    latent_dims: int = 8   # noise entries it proposes (the generator's first ones)
    input_size: int = 16   # side of the coarse copy it reads
    channels: int = 32

    def __post_init__(self) -> None:
        if self.latent_dims < 1 or self.input_size < 8 or self.input_size & (self.input_size - 1):
            raise ConfigError(f"latent encoder: latent_dims must be at least 1 and input_size a power of two of 8 or more, "
                              f"got {self.latent_dims} and {self.input_size}")


class LatentEncoder(PretrainedModel):
    config_class = LatentEncoderConfig

    def __init__(self, config: LatentEncoderConfig) -> None:
        super().__init__(config)
        c = config.channels
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1), nn.LeakyReLU(0.2)]
        size = config.input_size
        while size > 4:
            layers += [nn.Conv2d(c, c * 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c, size = c * 2, size // 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c * 4 * 4, 2 * config.latent_dims)
        # start with narrow proposals: at the prior's spread the draw would drown the sign of its image
        nn.init.constant_(self.head.bias[config.latent_dims:], -4.0)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [-1, 1] -> mean and log-variance (B, latent_dims) of the proposed noise."""
        coarse = F.adaptive_avg_pool2d(images, self.config.input_size)
        mean, log_var = self.head(self.body(coarse).flatten(1)).chunk(2, dim=1)
        return mean, log_var.clamp(-10.0, 10.0)


def encoded_noise(mean: torch.Tensor, log_var: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The generator noise for each image: its first entries drawn from the encoder's posterior by
    reparameterisation (the standard normal `noise` entries there serve as the draw), the rest as given."""
    dims = mean.shape[1]
    head = mean + (0.5 * log_var).exp() * noise[:, :dims]
    return torch.cat([head, noise[:, dims:]], dim=1)
