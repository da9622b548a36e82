"""One GAN training step: a discriminator update, then a generator update, then EMA."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from limner.models import Discriminator, Generator
from limner.training.losses import hinge_d_loss, hinge_g_loss, matching_aware_gp


@dataclass
class GANModels:
    generator: Generator
    discriminator: Discriminator
    ema: Generator  # averaged copy of the generator, used for sampling


@dataclass
class GANOptimizers:
    generator: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer


@dataclass
class GANBatch:
    images: torch.Tensor      # (B, 3, H, W) in [-1, 1]
    sentence: torch.Tensor    # (B, D) embeddings of each image's own caption
    mismatched: torch.Tensor  # (B, D) embeddings of other captions
    noise: torch.Tensor       # (B, Z)


def gan_train_step(
    models: GANModels,
    optimizers: GANOptimizers,
    batch: GANBatch,
    *,
    gp_weight: float = 2.0,
    gp_power: float = 6.0,
    ema_decay: float = 0.999,
) -> dict[str, float]:
    generator, discriminator = models.generator, models.discriminator
    fake = generator(batch.noise, batch.sentence)  # (B, 3, H, W)

    images = batch.images.detach().requires_grad_(True)
    # The penalty is on the text as the discriminator sees it (standardised), not the raw embedding.
    sentence = discriminator.text_norm(batch.sentence).detach().requires_grad_(True)
    real_features = discriminator.features(images)
    real_logits = discriminator.logits(real_features, sentence, standardized=True)
    mismatched_logits = discriminator.logits(real_features, batch.mismatched)
    fake_logits = discriminator(fake.detach(), batch.sentence)
    d_hinge = hinge_d_loss(real_logits, fake_logits, mismatched_logits)
    gp = matching_aware_gp(real_logits, images, sentence, weight=gp_weight, power=gp_power)
    optimizers.discriminator.zero_grad(set_to_none=True)
    (d_hinge + gp).backward()
    optimizers.discriminator.step()

    discriminator.requires_grad_(False)  # the generator step needs no discriminator weight grads
    g_loss = hinge_g_loss(discriminator(fake, batch.sentence))
    optimizers.generator.zero_grad(set_to_none=True)
    g_loss.backward()
    discriminator.requires_grad_(True)
    optimizers.generator.step()
    update_ema(models.ema, generator, ema_decay)
    return {
        "d_loss": d_hinge.item(),
        "gp": gp.item(),
        "g_loss": g_loss.item(),
        "real_logit": real_logits.mean().item(),
        "fake_logit": fake_logits.mean().item(),
    }


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters()):
        ema_param.lerp_(param, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)
