"""One GAN training step: a discriminator update, then a generator update, then EMA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from limner.models import Discriminator, Generator
from limner.training.losses import (
    alignment_loss, caption_loss, contrastive_loss, hinge_d_loss, hinge_g_loss, matching_aware_gp, diversity_loss,
    reconstruction_loss,
)


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
    generator_sentence: torch.Tensor | None = None  # what the generator conditions on, if not `sentence`
    caption_tokens: torch.Tensor | None = None      # (B, L + 1) the captioner's tokens of each caption (cycle loss)
    pair_noise: torch.Tensor | None = None          # (P, Z) second noises for the first P captions (mode seeking)
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None  # what the discriminator sees (DiffAugment)


@dataclass
class Guides:
    """Frozen models that judge the generator's images (text -> image -> text), each with its weight."""

    aligner: torch.nn.Module | None = None     # score(images, sentence): cosine of image and caption
    alignment_weight: float = 0.0
    captioner: torch.nn.Module | None = None   # captioner(images, tokens[:, :-1]) -> next-token logits
    cycle_weight: float = 0.0


def gan_train_step(
    models: GANModels,
    optimizers: GANOptimizers,
    batch: GANBatch,
    *,
    gp_weight: float = 2.0,
    gp_power: float = 6.0,
    ema_decay: float = 0.999,
    contrastive_weight: float = 0.0,
    contrastive_temperature: float = 0.1,
    image_contrastive_weight: float = 0.0,
    reconstruction_weight: float = 0.0,
    reconstruction_pool: int = 1,
    diversity_weight: float = 0.0,
    diversity_target: float = 0.05,
    sync_gradients: Callable[[torch.nn.Module], None] | None = None,
    guides: Guides | None = None,
) -> dict[str, float]:
    """With contrastive_weight > 0 the discriminator also learns to match real images to their
    captions across the batch, and the generator is asked to make its images match theirs.
    With image_contrastive_weight > 0 each generated image is also asked to sit, in that
    space, next to the real images of its caption and away from the others.
    With reconstruction_weight > 0 the generator is also pulled, pixel by pixel, towards
    the real image it shares a caption with (batch.images[i] for batch.sentence[i]), on
    reconstruction_pool-sized cells. With diversity_weight > 0 the first P captions are drawn
    a second time from batch.pair_noise and each pair is asked to differ by diversity_target (diversity_loss).
    batch.augment, when given, transforms real and generated images alike before the
    discriminator sees them (DiffAugment), in both steps.
    `sync_gradients(module)` runs between each backward and its optimiser step (data-parallel
    training averages the gradients over the processes there). `guides` add the bidirectional
    terms to the generator's loss: a frozen aligner's 1 - cosine of each image with its caption,
    and a frozen captioner's cross-entropy for the true caption given the generated image."""
    sync = sync_gradients or (lambda module: None)
    augment = batch.augment or (lambda images: images)
    generator, discriminator = models.generator, models.discriminator
    stats: dict[str, float] = {}
    same_caption = (batch.sentence[:, None, :] == batch.sentence[None, :, :]).all(-1)  # (B, B)
    condition = batch.sentence if batch.generator_sentence is None else batch.generator_sentence
    fake = generator(batch.noise, condition)  # (B, 3, H, W), judged against batch.sentence

    images = augment(batch.images).detach().requires_grad_(True)  # the penalty is on what D sees
    # The penalty is on the text as the discriminator sees it (standardised), not the raw embedding.
    sentence = discriminator.text_norm(batch.sentence).detach().requires_grad_(True)
    real_features = discriminator.features(images)
    real_logits = discriminator.logits(real_features, sentence, standardized=True)
    mismatched_logits = discriminator.logits(real_features, batch.mismatched)
    fake_logits = discriminator(augment(fake.detach()), batch.sentence)
    d_hinge = hinge_d_loss(real_logits, fake_logits, mismatched_logits)
    gp = matching_aware_gp(real_logits, images, sentence, weight=gp_weight, power=gp_power)
    d_total = d_hinge + gp
    real_image_embedding = None
    if contrastive_weight > 0:
        real_image_embedding, real_text_embedding = discriminator.contrastive_embeddings(real_features, batch.sentence)
        real_match = contrastive_loss(real_image_embedding, real_text_embedding, same_caption, temperature=contrastive_temperature)
        d_total = d_total + contrastive_weight * real_match
        stats["contrastive_real"] = real_match.item()
    optimizers.discriminator.zero_grad(set_to_none=True)
    d_total.backward()
    sync(discriminator)
    optimizers.discriminator.step()

    discriminator.requires_grad_(False)  # the generator step needs no discriminator weight grads
    fake_features = discriminator.features(augment(fake))
    g_loss = hinge_g_loss(discriminator.logits(fake_features, batch.sentence))
    g_total = g_loss
    if contrastive_weight > 0:
        fake_image_embedding, text_embedding = discriminator.contrastive_embeddings(fake_features, batch.sentence)
        fake_match = contrastive_loss(fake_image_embedding, text_embedding, same_caption, temperature=contrastive_temperature)
        g_total = g_total + contrastive_weight * fake_match
        stats["contrastive_fake"] = fake_match.item()
        if image_contrastive_weight > 0:
            fake_to_real = contrastive_loss(
                fake_image_embedding, real_image_embedding.detach(), same_caption, temperature=contrastive_temperature
            )
            g_total = g_total + image_contrastive_weight * fake_to_real
            stats["contrastive_image"] = fake_to_real.item()
    if reconstruction_weight > 0:
        reconstruction = reconstruction_loss(fake, batch.images, pool=reconstruction_pool)
        g_total = g_total + reconstruction_weight * reconstruction
        stats["reconstruction"] = reconstruction.item()
    if diversity_weight > 0 and batch.pair_noise is not None:
        pairs = batch.pair_noise.shape[0]
        second = generator(batch.pair_noise, condition[:pairs])
        spread = diversity_loss(fake[:pairs], second, batch.noise[:pairs], batch.pair_noise, target=diversity_target)
        g_total = g_total + diversity_weight * spread
        stats["diversity"] = spread.item()
    if guides is not None and guides.alignment_weight > 0:
        alignment = alignment_loss(guides.aligner.score(fake, batch.sentence))
        g_total = g_total + guides.alignment_weight * alignment
        stats["alignment"] = alignment.item()
    if guides is not None and guides.cycle_weight > 0:
        tokens = batch.caption_tokens
        cycle = caption_loss(guides.captioner(fake, tokens[:, :-1]), tokens[:, 1:])
        g_total = g_total + guides.cycle_weight * cycle
        stats["cycle"] = cycle.item()
    optimizers.generator.zero_grad(set_to_none=True)
    g_total.backward()
    discriminator.requires_grad_(True)
    sync(generator)
    optimizers.generator.step()
    update_ema(models.ema, generator, ema_decay)
    return {
        "d_loss": d_hinge.item(),
        "gp": gp.item(),
        "g_loss": g_loss.item(),
        "real_logit": real_logits.mean().item(),
        "fake_logit": fake_logits.mean().item(),
        **stats,
    }


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters()):
        ema_param.lerp_(param, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)
