"""One GAN training step: a discriminator update, then a generator update, then EMA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from limner.models import Discriminator, Generator, LatentEncoder
from limner.models.gan import noise_code, split_whole_pixels, warped, with_code
from limner.models.latent_encoder import encoded_noise
from limner.training.losses import (
    alignment_loss, best_of_reconstruction_loss, caption_loss, class_loss, contrastive_loss, gaussian_kl, hinge_d_loss, hinge_g_loss,
    matching_aware_gp, diversity_loss, reconstruction_errors, reconstruction_loss,
)


SEARCH_CHUNK = 32  # images per generator pass in the gradient-free search (nearest_noise)


@dataclass
class GANModels:
    generator: Generator
    discriminator: Discriminator
    ema: Generator  # averaged copy of the generator, used for sampling
    latent_encoder: LatentEncoder | None = None  # training only: proposes the noise of each real image


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
    shared_caption: torch.Tensor | None = None      # (B,) bool: the caption has several training images (latent encoder)
    search_noise: torch.Tensor | None = None        # (S, B, Z) further candidates for pair_noise: the nearest one is used
    search_rows: torch.Tensor | None = None         # (B,) bool: search only these captions (None: all)
    class_labels: torch.Tensor | None = None        # (B, H) long: each real image's value of each class column (-1: none)
    fake_class_labels: torch.Tensor | None = None   # (B, H) long: the values each generated image should show (-1: not known)


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
    reconstruction_shift: int = 0,
    reconstruction_subpixel: int = 1,
    reconstruction_follows_warp: bool = False,
    reconstruction_best_of_two: bool = False,
    diversity_weight: float = 0.0,
    diversity_target: float = 0.05,
    diversity_pool: int = 1,
    latent_kl_weight: float = 0.0,
    class_weight: float = 0.0,
    sync_gradients: Callable[[torch.nn.Module], None] | None = None,
    guides: Guides | None = None,
) -> dict[str, float]:
    """The discriminator's update (hinge, mismatched captions, matching-aware penalty; with
    contrastive_weight its image-text head), then the generator's: hinge, the head's matching
    (contrastive_terms), the pixel terms on a second sample per caption (second_samples, pixel_terms:
    reconstruction towards the real image of each caption, on reconstruction_pool cells, forgiving moves of
    up to reconstruction_shift pixels at 1/reconstruction_subpixel pixel steps, of the nearer
    of two samples with reconstruction_best_of_two, the real image moved by the sample's own warp with
    reconstruction_follows_warp; diversity between the two), and the frozen guides'
    terms (guide_terms); then the EMA. batch.augment transforms what the discriminator sees, real and
    generated alike, in both updates (DiffAugment). With class_weight > 0 and batch.class_labels the
    discriminator's class heads learn each real image's values, and the generator is asked to draw the
    values batch.fake_class_labels names (AC-GAN). `sync_gradients(module)` runs between each
    backward and its optimiser step (data-parallel training averages the gradients there)."""
    sync = sync_gradients or (lambda module: None)
    augment = batch.augment or (lambda images: images)
    same_caption = (batch.sentence[:, None, :] == batch.sentence[None, :, :]).all(-1)  # (B, B)
    condition = batch.sentence if batch.generator_sentence is None else batch.generator_sentence
    fake = models.generator(batch.noise, condition)  # (B, 3, H, W), judged against batch.sentence
    d_stats, real_image_embedding = discriminator_update(
        models.discriminator, optimizers.discriminator, batch, fake, augment, same_caption, sync, gp_weight=gp_weight,
        gp_power=gp_power, contrastive_weight=contrastive_weight, contrastive_temperature=contrastive_temperature,
        class_weight=class_weight)

    discriminator = models.discriminator
    # the generator step needs no discriminator weight grads; the trained ones (all, or an adapter's) are restored after
    trained_in_discriminator = [p for p in discriminator.parameters() if p.requires_grad]
    for parameter in trained_in_discriminator:
        parameter.requires_grad_(False)
    fake_features = discriminator.features(augment(fake))
    g_loss = hinge_g_loss(discriminator.logits(fake_features, batch.sentence))
    stats: dict[str, float] = {}
    g_total = g_loss
    if contrastive_weight > 0:
        g_total = g_total + contrastive_terms(discriminator, fake_features, batch.sentence, real_image_embedding, same_caption, stats,
                                              weight=contrastive_weight, image_weight=image_contrastive_weight,
                                              temperature=contrastive_temperature)
    if class_weight > 0 and batch.fake_class_labels is not None:
        fake_class = class_terms(discriminator, fake_features, batch.fake_class_labels)
        stats["class_fake"] = fake_class.item()
        g_total = g_total + class_weight * fake_class
    second, pair_noise, kl_term = second_samples(models, batch, condition, stats, pool=reconstruction_pool, latent_kl_weight=latent_kl_weight,
                                                 wanted=diversity_weight > 0 or reconstruction_best_of_two)
    targets = warped_like_samples(models.generator, batch, condition) if reconstruction_follows_warp else batch.images
    g_total = g_total + kl_term + pixel_terms(fake, second, targets, batch.noise, pair_noise, stats, reconstruction_weight=reconstruction_weight,
                                    reconstruction_pool=reconstruction_pool, reconstruction_shift=reconstruction_shift,
                                    reconstruction_subpixel=reconstruction_subpixel, reconstruction_of="best_of_two" if reconstruction_best_of_two else
                                    "second" if models.latent_encoder is not None else "first",
                                    diversity_weight=diversity_weight, diversity_target=diversity_target, diversity_pool=diversity_pool)
    g_total = g_total + guide_terms(fake, batch, guides, stats)
    optimizers.generator.zero_grad(set_to_none=True)
    g_total.backward()
    for parameter in trained_in_discriminator:
        parameter.requires_grad_(True)
    sync(models.generator)
    if models.latent_encoder is not None:
        sync(models.latent_encoder)
    optimizers.generator.step()
    update_ema(models.ema, models.generator, ema_decay)
    return {**d_stats, "g_loss": g_loss.item(), **stats}


def second_samples(models: GANModels, batch: GANBatch, condition: torch.Tensor, stats: dict, *, pool: int, latent_kl_weight: float,
                   wanted: bool) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """The second sample of the first captions (None when no term asks for one), its noise, and the
    latent encoder's weighted KL (0 without it). The noise is batch.pair_noise, or the latent encoder's
    proposal, or the nearest of the search's candidates (batch.search_noise)."""
    pair_noise, kl_term = batch.pair_noise, condition.new_zeros(())
    if models.latent_encoder is not None:
        pair_noise, kl = encoded_pair_noise(models.latent_encoder, batch)
        kl_term = latent_kl_weight * kl
        stats["latent_kl"] = kl.item()
    if batch.search_noise is not None and pair_noise is not None:
        pair_noise = searched_noise(models.generator, pair_noise, batch, condition, pool=pool)
    if pair_noise is None or not (wanted or models.latent_encoder is not None):
        return None, pair_noise, kl_term
    return models.generator(pair_noise, condition[: pair_noise.shape[0]]), pair_noise, kl_term


def discriminator_update(discriminator: Discriminator, optimizer: torch.optim.Optimizer, batch: GANBatch, fake: torch.Tensor,
                         augment, same_caption: torch.Tensor, sync, *, gp_weight: float, gp_power: float,
                         contrastive_weight: float, contrastive_temperature: float,
                         class_weight: float = 0.0) -> tuple[dict[str, float], torch.Tensor | None]:
    """The discriminator's step: hinge with mismatched captions, the matching-aware penalty (skipped,
    with its second backward, where gp_weight is 0: lazy regularisation) and, optionally, the
    contrastive head on real pairs and the class head on real images. Returns its figures and the
    real images' contrastive embeddings (None without the head)."""
    penalised = gp_weight > 0
    images = augment(batch.images).detach().requires_grad_(penalised)  # the penalty is on what D sees
    # The penalty is on the text as the discriminator sees it (standardised), not the raw embedding.
    sentence = discriminator.text_norm(batch.sentence).detach().requires_grad_(penalised)
    real_features = discriminator.features(images)
    real_logits = discriminator.logits(real_features, sentence, standardized=True)
    mismatched_logits = discriminator.logits(real_features, batch.mismatched)
    fake_logits = discriminator(augment(fake.detach()), batch.sentence)
    d_hinge = hinge_d_loss(real_logits, fake_logits, mismatched_logits)
    d_total = d_hinge
    stats = {"d_loss": d_hinge.item(), "real_logit": real_logits.mean().item(), "fake_logit": fake_logits.mean().item()}
    if penalised:
        gp = matching_aware_gp(real_logits, images, sentence, weight=gp_weight, power=gp_power)
        d_total = d_total + gp
        stats["gp"] = gp.item()
    real_image_embedding = None
    if contrastive_weight > 0:
        real_image_embedding, real_text_embedding = discriminator.contrastive_embeddings(real_features, batch.sentence)
        real_match = contrastive_loss(real_image_embedding, real_text_embedding, same_caption, temperature=contrastive_temperature)
        d_total = d_total + contrastive_weight * real_match
        stats["contrastive_real"] = real_match.item()
    if class_weight > 0 and batch.class_labels is not None:
        # real images only: the head learns what the value looks like, never what the generator draws
        real_class = class_terms(discriminator, real_features, batch.class_labels)
        d_total = d_total + class_weight * real_class
        stats["class_real"] = real_class.item()
    optimizer.zero_grad(set_to_none=True)
    d_total.backward()
    sync(discriminator)
    optimizer.step()
    return stats, real_image_embedding


def class_terms(discriminator: Discriminator, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The class heads' cross-entropies for labels (B, H), one column per head, summed."""
    logits = discriminator.class_logits(features)
    return sum(class_loss(head_logits, labels[:, head]) for head, head_logits in enumerate(logits))


def contrastive_terms(discriminator: Discriminator, fake_features: torch.Tensor, sentence: torch.Tensor,
                      real_image_embedding: torch.Tensor | None, same_caption: torch.Tensor, stats: dict, *,
                      weight: float, image_weight: float, temperature: float) -> torch.Tensor:
    """The generator's contrastive terms: its images matched to their captions by the discriminator's
    head (weight) and, with image_weight > 0, placed next to the real images of their caption."""
    fake_image_embedding, text_embedding = discriminator.contrastive_embeddings(fake_features, sentence)
    fake_match = contrastive_loss(fake_image_embedding, text_embedding, same_caption, temperature=temperature)
    stats["contrastive_fake"] = fake_match.item()
    total = weight * fake_match
    if image_weight > 0:
        fake_to_real = contrastive_loss(fake_image_embedding, real_image_embedding.detach(), same_caption, temperature=temperature)
        stats["contrastive_image"] = fake_to_real.item()
        total = total + image_weight * fake_to_real
    return total


def encoded_pair_noise(encoder: LatentEncoder, batch: GANBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The second noises with, for each caption several real images share, the encoder's proposal
    for its own image (batch.pair_noise's entries as the reparameterisation draw); and the KL of
    those proposals to the standard normal prior, summed over latent entries, averaged over those captions."""
    if batch.pair_noise is None or batch.pair_noise.shape[0] != batch.images.shape[0] or batch.shared_caption is None:
        raise ValueError("the latent encoder needs a second noise for every caption and batch.shared_caption")
    mean, log_var = encoder(batch.images)
    # proposals standardised over the batch: they keep the prior's spread whatever the encoder has
    # learnt, so they always tell the images apart and the generator cannot learn to ignore them
    # (left free they start near-equal, the generator settles on the mean image, and the encoder
    # then gets no gradient: posterior collapse)
    mean = (mean - mean.mean(0)) / mean.std(0).clamp(min=1e-4) if mean.shape[0] > 1 else mean
    shared = batch.shared_caption[:, None]
    pair_noise = torch.where(shared, encoded_noise(mean, log_var, batch.pair_noise), batch.pair_noise)
    # of the standardised proposal: its mean part is then fixed, and the term weighs only how narrow
    # each proposal is (how much it tells) against the prior's spread
    kl = gaussian_kl(mean, log_var, torch.zeros_like(mean), torch.zeros_like(log_var)).sum(1)  # (B,)
    kl = (kl * batch.shared_caption).sum() / batch.shared_caption.sum().clamp(min=1)
    return pair_noise, kl


def searched_noise(generator: Generator, pair_noise: torch.Tensor, batch: GANBatch, condition: torch.Tensor, *, pool: int) -> torch.Tensor:
    """pair_noise (P, Z) with, for each caption searched (batch.search_rows, or all), the nearest of
    it and its batch.search_noise candidates to the real image (nearest_noise)."""
    count = pair_noise.shape[0]
    rows = torch.ones(count, dtype=torch.bool, device=pair_noise.device) if batch.search_rows is None else batch.search_rows[:count]
    if not rows.any():
        return pair_noise
    candidates = torch.cat([pair_noise[None], batch.search_noise[:, :count]])[:, rows]  # (S + 1, R, Z)
    searched = pair_noise.clone()
    searched[rows] = nearest_noise(generator, candidates, condition[:count][rows], batch.images[:count][rows], pool=pool)
    return searched


@torch.no_grad()
def nearest_noise(generator: Generator, candidates: torch.Tensor, condition: torch.Tensor, images: torch.Tensor, *,
                  pool: int) -> torch.Tensor:
    """For each caption, the candidate noise whose image lies nearest its real image (reconstruction_errors
    on pool x pool cells): IMLE's search (Li and Malik 2018), without gradients.
    candidates (K, B, Z), condition (B, D), images (B, 3, H, W) -> noise (B, Z)."""
    count, batch = candidates.shape[:2]
    noise, conditions = candidates.flatten(0, 1), condition.repeat(count, 1)  # (K * B, Z), (K * B, D)
    # in chunks: one pass over K * B images is slower than the same work in batches of SEARCH_CHUNK
    # on a CPU (84 images at 64 px took 0.41 s in one pass, 0.21 s in three; their activations outgrow the caches)
    drawn = torch.cat([generator(part, part_condition) for part, part_condition
                       in zip(noise.split(SEARCH_CHUNK), conditions.split(SEARCH_CHUNK))])  # (K * B, 3, H, W)
    errors = reconstruction_errors(drawn, images.repeat(count, 1, 1, 1), pool=pool).view(count, batch)  # (K, B)
    best = errors.argmin(0)  # (B,)
    return candidates[best, torch.arange(batch, device=candidates.device)]


def other_codes(noise: torch.Tensor, codes: int) -> torch.Tensor:
    """noise (B, Z) -> (codes - 1, B, Z): each noise with every code but its own (see models.gan.coded_noise),
    the rest of it kept: the further candidates of the search when the generator has discrete codes."""
    own = noise_code(noise, codes)
    return torch.stack([with_code(noise, (own + shift) % codes, codes) for shift in range(1, codes)])


def tie_codes(batch: GANBatch, labels: torch.Tensor, rows: torch.Tensor, codes: int) -> torch.Tensor:
    """Ties the noise codes to labels (noise_code_column): each of `rows` (B,) bool (the captions
    several images share, or all) whose image has a label (labels (B,) long, -1: none) is drawn, in
    both its samples, from its label's code, and is no longer searched; the rest keep their drawn codes.
    Returns which rows were tied (B,) bool."""
    tied = rows & (labels >= 0)
    batch.noise[tied] = with_code(batch.noise[tied], labels[tied], codes)
    if batch.pair_noise is not None:
        pairs = batch.pair_noise.shape[0]
        batch.pair_noise[tied[:pairs]] = with_code(batch.pair_noise[tied[:pairs]], labels[:pairs][tied[:pairs]], codes)
    if batch.search_rows is not None:
        batch.search_rows = batch.search_rows & ~tied
    return tied


def warped_like_samples(generator: torch.nn.Module, batch: GANBatch, condition: torch.Tensor) -> torch.Tensor:
    """The batch's real images moved and scaled by the warp each of its samples (batch.noise) was drawn
    with: the reconstruction targets of reconstruction_follows_warp. Sample and target move together,
    so the term barely sees the warp, and where the warp puts things is the discriminator's to judge. With
    generator.noise_warp_whole_pixels only the whole-pixel moves are followed (copied exactly, so the
    target is as sharp as the data); the rest is left to reconstruction_shift."""
    config = generator.config
    moves = generator.warp_moves(batch.noise, condition).to(batch.images.dtype)
    if config.noise_warp_whole_pixels:  # follow the whole pixels only: an exact copy, so the target stays sharp
        return warped(batch.images, split_whole_pixels(moves, config.noise_warp, config.resolution)[1].detach(), config.noise_warp)
    return warped(batch.images, moves, config.noise_warp, config.noise_warp_resample)


def pixel_terms(fake: torch.Tensor, second: torch.Tensor | None, images: torch.Tensor, noise: torch.Tensor, pair_noise: torch.Tensor | None,
                stats: dict, *, reconstruction_weight: float, reconstruction_pool: int, reconstruction_of: str,
                diversity_weight: float, diversity_target: float, diversity_pool: int = 1, reconstruction_shift: int = 0,
                reconstruction_subpixel: int = 1) -> torch.Tensor:
    """The generator's reconstruction and diversity terms, weighted and summed (figures into `stats`);
    `second`: the images of pair_noise for the first captions, or None. reconstruction_of: which
    samples are pulled towards the real images: "first" (`fake`), "second", or "best_of_two" (the nearer)."""
    total = fake.new_zeros(())
    if reconstruction_weight > 0:
        if reconstruction_of != "first" and (second is None or second.shape[0] != fake.shape[0]):
            raise ValueError(f"reconstruction of {reconstruction_of!r} needs a second noise for every caption (pair noise of the batch's size)")
        if reconstruction_of == "best_of_two":
            reconstruction = best_of_reconstruction_loss([fake, second], images, pool=reconstruction_pool, shift=reconstruction_shift,
                                                         subpixel=reconstruction_subpixel)
        else:
            reconstruction = reconstruction_loss(second if reconstruction_of == "second" else fake, images, pool=reconstruction_pool,
                                                 shift=reconstruction_shift, subpixel=reconstruction_subpixel)
        total = total + reconstruction_weight * reconstruction
        stats["reconstruction"] = reconstruction.item()
    if diversity_weight > 0 and second is not None:
        pairs = second.shape[0]
        spread = diversity_loss(fake[:pairs], second, noise[:pairs], pair_noise, target=diversity_target, pool=diversity_pool)
        total = total + diversity_weight * spread
        stats["diversity"] = spread.item()
    return total


def guide_terms(fake: torch.Tensor, batch: GANBatch, guides: Guides | None, stats: dict) -> torch.Tensor:
    """The frozen guides' terms (aligner cosine, captioner cycle), weighted and summed."""
    total = fake.new_zeros(())
    if guides is not None and guides.alignment_weight > 0:
        alignment = alignment_loss(guides.aligner.score(fake, batch.sentence))
        total = total + guides.alignment_weight * alignment
        stats["alignment"] = alignment.item()
    if guides is not None and guides.cycle_weight > 0:
        tokens = batch.caption_tokens
        cycle = caption_loss(guides.captioner(fake, tokens[:, :-1]), tokens[:, 1:])
        total = total + guides.cycle_weight * cycle
        stats["cycle"] = cycle.item()
    return total


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters()):
        ema_param.lerp_(param, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)
