"""Models: generators and discriminators, each saved as config.json + model.safetensors."""

from limner.models.gan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, generator_noise, truncated_noise
from limner.models.latent_encoder import LatentEncoder, LatentEncoderConfig
from limner.models.modeling import PretrainedModel

__all__ = ["Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "LatentEncoder", "LatentEncoderConfig", "PretrainedModel", "generator_noise", "truncated_noise"]
