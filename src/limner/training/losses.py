"""GAN losses as pure functions of logits and tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor, mismatched: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss with a mismatched-caption term (real image, wrong caption is 'fake').

    real, fake, mismatched: logits (B,). The two negative terms share the weight of one.
    """
    return F.relu(1.0 - real).mean() + 0.5 * (F.relu(1.0 + fake).mean() + F.relu(1.0 + mismatched).mean())


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: raise the discriminator's logits on generated images (B,)."""
    return -fake.mean()


def reconstruction_loss(fake: torch.Tensor, real: torch.Tensor, *, pool: int = 1, shift: int = 0, subpixel: int = 1) -> torch.Tensor:
    """Mean absolute pixel error between generated images and the real images of their captions.

    pix2pix's L1 term: a dense, supervised signal that teaches layout, colour and
    size in a few hundred steps, where the adversarial terms alone take thousands;
    they still decide the fine detail that a per-pixel mean would blur. With `pool` > 1
    both sides are first averaged over pool x pool cells: the term then teaches the
    coarse layout only and no longer pulls every sample onto one pixel-exact mean. With `shift`
    > 0 each image is compared with the real one moved by up to `shift` pixels either way, and
    the nearest placement counts: the outline is still taught sharply while the place is free
    within the data's jitter. With `subpixel` k > 1 the real image is also tried at every phase
    of 1/k pixel (moved by a phase ramp of its Fourier transform, which keeps its edges as sharp
    as they are), so a sample placed between two pixels has a target as sharp as itself.
    """
    return reconstruction_errors(fake, real, pool=pool, shift=shift, subpixel=subpixel).mean()


def best_of_reconstruction_loss(fakes: list[torch.Tensor], real: torch.Tensor, *, pool: int = 1, shift: int = 0,
                                subpixel: int = 1) -> torch.Tensor:
    """reconstruction_loss of the closest of several samples drawn for each caption (from
    different noises): the best-of-many loss (Bhattacharyya et al. 2018). Only the sample nearest
    the real image is pulled towards it, so the samples of a caption whose real images differ
    (an emoji name drawn in six styles) may each settle on a different one instead of all on
    their blurred mean. fakes: list of (B, 3, H, W); real (B, 3, H, W)."""
    errors = torch.stack([reconstruction_errors(fake, real, pool=pool, shift=shift, subpixel=subpixel) for fake in fakes])  # (K, B)
    return errors.min(0).values.mean()


def reconstruction_errors(fake: torch.Tensor, real: torch.Tensor, *, pool: int = 1, shift: int = 0, subpixel: int = 1) -> torch.Tensor:
    """Per-image mean absolute error (B,), on pool x pool cell means when pool > 1; with shift > 0
    the least error over the real image moved by -shift..shift pixels in each direction (its edge
    pixels repeated into the uncovered border), and with subpixel k > 1 at every 1/k pixel phase
    of those moves too (see subpixel_phases). The nearest placement is found without gradients
    and the error taken again against it, which gives the min's value and gradient at a fraction
    of the memory."""
    if shift > 0:
        return pixel_errors(fake, nearest_placement(fake, real, pool=pool, shift=shift, subpixel=subpixel), pool=pool)
    return pixel_errors(fake, real, pool=pool)


def pixel_errors(fake: torch.Tensor, real: torch.Tensor, *, pool: int = 1) -> torch.Tensor:
    """Per-image mean absolute error (B,), on pool x pool cell means when pool > 1."""
    if pool > 1:
        fake, real = F.avg_pool2d(fake, pool), F.avg_pool2d(real, pool)
    return (fake - real).abs().flatten(1).mean(1)


@torch.no_grad()
def nearest_placement(fake: torch.Tensor, real: torch.Tensor, *, pool: int, shift: int, subpixel: int) -> torch.Tensor:
    """real (B, 3, H, W) moved, image by image, to the placement (integer moves within -shift..shift,
    at every 1/subpixel phase) whose pixel_errors against fake is least."""
    best, best_errors = real, torch.full(real.shape[:1], float("inf"), dtype=real.dtype, device=real.device)
    for phased in subpixel_phases(real, subpixel):
        for moved in shifted(phased, shift):
            errors = pixel_errors(fake, moved, pool=pool)
            closer = errors < best_errors
            best = torch.where(closer[:, None, None, None], moved, best)
            best_errors = torch.where(closer, errors, best_errors)
    return best


def shifted(images: torch.Tensor, shift: int) -> list[torch.Tensor]:
    """images (B, C, H, W) moved by every (dy, dx) in -shift..shift, edges repeated: (2 shift + 1)^2 tensors."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (shift, shift, shift, shift), mode="replicate")
    return [padded[..., shift + dy:shift + dy + height, shift + dx:shift + dx + width]
            for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]


def subpixel_phases(images: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """images (B, C, H, W) moved down and right by every (j / steps, i / steps) of a pixel, 0 <= i, j <
    steps: steps^2 tensors, the first the images themselves. Each move is a phase ramp on the Fourier
    transform (exact for an image without detail above the pixel's frequency, such as an anti-aliased
    drawing, so edges are not softened as bilinear resampling softens them), taken on a copy padded by
    repeating its edges so that what wraps round is border, not the far side."""
    if steps == 1:
        return [images]
    pad = 4
    height, width = images.shape[-2:]
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")
    spectrum = torch.fft.rfft2(padded)
    rows = torch.fft.fftfreq(height + 2 * pad, device=images.device)[:, None]
    columns = torch.fft.rfftfreq(width + 2 * pad, device=images.device)[None, :]
    moved = []
    for j in range(steps):
        for i in range(steps):
            ramp = torch.exp(-2j * torch.pi * (rows * (j / steps) + columns * (i / steps)))
            image = torch.fft.irfft2(spectrum * ramp, s=padded.shape[-2:])
            moved.append(image[..., pad:pad + height, pad:pad + width].to(images.dtype))
    return moved


def diversity_loss(fake_a: torch.Tensor, fake_b: torch.Tensor, noise_a: torch.Tensor, noise_b: torch.Tensor,
                   *, target: float, pool: int = 1) -> torch.Tensor:
    """Asks two images drawn for one caption from two noises to differ as much as real images of
    one caption do, and no more: mean over pairs of relu(1 - (image distance / noise distance) / target),
    1 when the pair is identical, 0 once its spread reaches `target`.

    The ratio is mode seeking's (MSGAN, Mao et al. 2019); MSGAN's own 1 / ratio grows without
    bound as samples collapse and, measured on shapes, drowned the caption (held-out 0.047).
    Capping the push at a target is DSGAN's remedy (Yang et al. 2019); limner takes the target
    from the data (see estimate_diversity_target). fake_a, fake_b (B, 3, H, W); noise_a, noise_b
    (B, Z); distances are mean absolute differences, of pool x pool cell means where pool > 1.
    """
    if pool > 1:
        fake_a, fake_b = F.avg_pool2d(fake_a, pool), F.avg_pool2d(fake_b, pool)
    images = (fake_a - fake_b).abs().flatten(1).mean(1)
    noises = (noise_a - noise_b).abs().mean(1).clamp(min=1e-6)
    return F.relu(1.0 - images / noises / target).mean()


def matching_aware_gp(
    logits: torch.Tensor, images: torch.Tensor, sentence: torch.Tensor, *, weight: float = 2.0, power: float = 6.0
) -> torch.Tensor:
    """Matching-aware gradient penalty: weight * E[ ||grad of D wrt (image, sentence)||^power ].

    Computed on real images with their own captions; `images` and `sentence`
    must require grad and `logits` must depend on both.
    """
    grad_images, grad_sentence = torch.autograd.grad(
        outputs=logits.sum(), inputs=(images, sentence), create_graph=True
    )
    grads = torch.cat([grad_images.flatten(1), grad_sentence.flatten(1)], dim=1)  # (B, HW*3 + D)
    norm = grads.pow(2).sum(dim=1).sqrt()
    return weight * norm.pow(power).mean()


def contrastive_loss(
    image: torch.Tensor, text: torch.Tensor, positives: torch.Tensor, *, temperature: float | torch.Tensor = 0.1
) -> torch.Tensor:
    """Symmetric InfoNCE between B images and their B captions.

    image, text: (B, E); positives: bool (B, B), True where image i and caption j
    belong together (the diagonal, and every pair sharing a caption, so that a
    repeated caption in the batch is never pushed away from its own image).
    temperature may be a tensor, to be learnt.
    """
    logits = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T / temperature  # (B, B)
    targets = positives.float()
    image_to_text = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    text_to_image = -(targets.T / targets.T.sum(1, keepdim=True) * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return 0.5 * (image_to_text + text_to_image)


def class_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits (B, K) for labels (B,) long, over the rows that have one (label >= 0);
    0 when none has."""
    known = labels >= 0
    if not known.any():
        return logits.new_zeros(())
    return F.cross_entropy(logits[known], labels[known])


def alignment_loss(scores: torch.Tensor) -> torch.Tensor:
    """1 - cosine, averaged: scores (B,) are a frozen aligner's image-caption cosines in [-1, 1]."""
    return (1.0 - scores).mean()


def caption_loss(logits: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float = 0.0, pad: int = 0) -> torch.Tensor:
    """Cross-entropy of next-token logits (B, T, V) against targets (B, T), padding (id `pad`) ignored."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad, label_smoothing=label_smoothing)


def gaussian_kl(mean_q: torch.Tensor, log_var_q: torch.Tensor, mean_p: torch.Tensor, log_var_p: torch.Tensor) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians, per latent dimension (B, Z); never negative."""
    return 0.5 * (log_var_p - log_var_q + (log_var_q.exp() + (mean_q - mean_p).pow(2)) / log_var_p.exp() - 1.0)


def elbo_loss(reconstruction: torch.Tensor, images: torch.Tensor, kl: torch.Tensor, *, beta: float = 1.0,
              free_bits: float = 0.0, sigma: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO per image: (total, reconstruction term, KL term).

    The reconstruction term is the Gaussian negative log-likelihood (up to a constant) with a
    fixed `sigma` (in the [-1, 1] pixel scale), summed over pixels. Free bits: each latent
    dimension's batch-mean KL counts as at least `free_bits` nats, so the posterior is not
    pushed onto the prior where a dimension carries little. `beta` weighs the KL (warm-up).
    """
    reconstruction_term = (reconstruction - images).pow(2).flatten(1).sum(1).mean() / (2 * sigma**2)
    kl_term = kl.mean(0).clamp(min=free_bits).sum()
    return reconstruction_term + beta * kl_term, reconstruction_term, kl_term


def preservation_loss(adapted: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel difference between the adapted generator's images and the frozen base's,
    from the same noise and captions of the base's own data (prior preservation, as DreamBooth keeps
    a class's look): what the adaptation is not about should stay as the base drew it."""
    return (adapted - base).abs().mean()
