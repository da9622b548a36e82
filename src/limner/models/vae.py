"""A conditional VAE: the second generator family.

    q(z | image, text)   the discriminator's down-blocks over the image, flattened, with the
                         standardised caption embedding, through an MLP to a mean and log-variance
    p(z | text)          a learnt, caption-dependent prior (an MLP from the caption embedding)
    p(image | z, text)   the GAN's generator, deep-fusion blocks and all, with z as its noise

Trained on the ELBO with KL warm-up and free bits (limner.training.losses.elbo_loss).
`forward(noise, sentence)` samples from the prior with standard normal `noise`, so a
ConditionalVAE drops into TextToImagePipeline where a Generator goes (truncating the
noise then acts as a sampling temperature).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from limner.errors import ConfigError
from limner.models.gan import Generator, GeneratorConfig
from limner.models.layers import check_resolution, down_channel_plan, down_path
from limner.models.modeling import PretrainedModel


@dataclass
class VAEConfig:
    resolution: int = 32
    text_dim: int = 384
    latent_dim: int = 32
    # the decoder, as GeneratorConfig
    base_channels: int = 32
    channel_multipliers: tuple[int, ...] = (8, 8, 8, 8, 4, 2, 1)
    condition_hidden: int = 256
    text_components: int = 0
    text_whiten: bool = False
    # the posterior's image encoder, as the discriminator
    encoder_channels: int = 32
    encoder_multipliers: tuple[int, ...] = (1, 2, 4, 8, 8, 8, 8)
    hidden: int = 256  # width of the prior's and posterior's MLPs

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        if self.latent_dim < 1 or self.hidden < 1:
            raise ConfigError("latent_dim and hidden must be positive")

    @property
    def noise_dim(self) -> int:
        """What TextToImagePipeline draws per image: the latent."""
        return self.latent_dim

    def decoder_config(self) -> GeneratorConfig:
        return GeneratorConfig(resolution=self.resolution, text_dim=self.text_dim, noise_dim=self.latent_dim, base_channels=self.base_channels,
                               channel_multipliers=self.channel_multipliers, condition_hidden=self.condition_hidden,
                               text_components=self.text_components, text_whiten=self.text_whiten)


class ConditionalVAE(PretrainedModel):
    config_class = VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.decoder = Generator(config.decoder_config())
        blocks = check_resolution(config.resolution)
        channels = down_channel_plan(config.encoder_channels, config.encoder_multipliers, blocks)
        self.from_rgb, self.blocks = down_path(channels)
        self.posterior = nn.Sequential(nn.Linear(channels[-1] * 16 + config.text_dim, config.hidden), nn.LeakyReLU(0.2),
                                       nn.Linear(config.hidden, 2 * config.latent_dim))
        self.prior = nn.Sequential(nn.Linear(config.text_dim, config.hidden), nn.LeakyReLU(0.2), nn.Linear(config.hidden, 2 * config.latent_dim))

    @property
    def text_norm(self):
        """The decoder's caption standardiser, shared by prior and posterior (fit it once)."""
        return self.decoder.text_norm

    def encode(self, images: torch.Tensor, sentence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | image, text): mean and log-variance (B, Z) each."""
        grid = F.leaky_relu(self.blocks(self.from_rgb(images)), 0.2)  # (B, C, 4, 4)
        mean, log_var = self.posterior(torch.cat([grid.flatten(1), self.text_norm(sentence)], dim=1)).chunk(2, dim=1)
        return mean, log_var.clamp(-12, 6)

    def prior_params(self, sentence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z | text): mean and log-variance (B, Z) each."""
        mean, log_var = self.prior(self.text_norm(sentence)).chunk(2, dim=1)
        return mean, log_var.clamp(-12, 6)

    def decode(self, z: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """p(image | z, text): (B, 3, H, W) in [-1, 1]."""
        return self.decoder(z, sentence)

    def reconstruct(self, images: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """The decoded posterior mean of each image."""
        return self.decode(self.encode(images, sentence)[0], sentence)

    def forward(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """Samples from the prior: z = mean + std * noise, decoded."""
        mean, log_var = self.prior_params(sentence)
        return self.decode(mean + (0.5 * log_var).exp() * noise, sentence)
