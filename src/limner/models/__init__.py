"""Models: generators and discriminators, each saved as config.json + model.safetensors."""

from limner.models.gan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, truncated_noise
from limner.models.modeling import PretrainedModel

__all__ = ["Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "PretrainedModel", "truncated_noise"]
