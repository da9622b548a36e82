"""Augmentations that keep a caption true, for the models that read real images (captioner,
evaluator, aligner): users' pictures come resized, compressed, re-rendered and shifted, and a
reader trained only on the dataset's own clean renders swings under such changes.

Policies are comma-separated names, each applied to every image of a batch with probability
`probability`, with its own random strength per image:

- "resample": down to 50-90% of the side and back, each way with or without anti-aliasing
  (without it, edges come back hard and blocky, as from another renderer);
- "jpeg": JPEG compression at quality 20-90;
- "blur": a Gaussian blur, sigma 0.3-1.0 px;
- "noise": Gaussian pixel noise, sigma up to 0.06 (in [-1, 1] units, about 8 of 255);
- "shift": a shift of up to `max_shift` pixels each way (edges repeat), within the jitter the
  shapes specification allows, so the caption's position stays true.

Unlike DiffAugment (limner.training.augment) these are not differentiable and are applied to the
real images a reader learns from, never to a discriminator's input.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from limner.config import parse_name_list

READ_POLICIES = ("resample", "jpeg", "blur", "noise", "shift")


def parse_read_policy(policy: str) -> tuple[str, ...]:
    """'jpeg,blur' -> ('jpeg', 'blur'); '' -> (); unknown names refused."""
    return parse_name_list(policy, READ_POLICIES, "read augmentation")


def read_augment(images: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator, *, probability: float = 0.5,
                 max_shift: int = 1) -> torch.Tensor:
    """images (B, 3, H, W) in [-1, 1] -> the same shape; each policy's transform on a random subset."""
    for name in policy:
        chosen = torch.rand(images.shape[0], generator=generator) < probability
        if chosen.any():
            images = images.clone()
            images[chosen] = TRANSFORMS[name](images[chosen], generator, max_shift=max_shift)
    return images


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def resample(images: torch.Tensor, generator: torch.Generator, **_) -> torch.Tensor:
    side = images.shape[-1]
    scales = _uniform(images.shape[0], 0.5, 0.9, generator)
    smooth_down, smooth_up = (torch.rand(images.shape[0], 2, generator=generator) < 0.5).unbind(1)
    out = []
    for image, scale, down, up in zip(images, scales.tolist(), smooth_down.tolist(), smooth_up.tolist()):
        small = max(2, round(side * scale))
        image = _resize(image[None], small, smooth=down)
        out.append(_resize(image, side, smooth=up)[0])
    return torch.stack(out)


def _resize(images: torch.Tensor, side: int, *, smooth: bool) -> torch.Tensor:
    if smooth:
        return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(images, size=(side, side), mode="nearest")


def jpeg(images: torch.Tensor, generator: torch.Generator, **_) -> torch.Tensor:
    qualities = torch.randint(20, 91, (images.shape[0],), generator=generator).tolist()
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for array, quality in zip(pixels, qualities):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1


def blur(images: torch.Tensor, generator: torch.Generator, **_) -> torch.Tensor:
    sigmas = _uniform(images.shape[0], 0.3, 1.0, generator)
    offsets = torch.arange(-2, 3, dtype=images.dtype)
    weights = torch.exp(-offsets[None] ** 2 / (2 * sigmas[:, None] ** 2))
    weights = weights / weights.sum(1, keepdim=True)  # (B, 5) one 1-D kernel per image
    padded = F.pad(images, (2, 2, 2, 2), mode="replicate")
    batch, channels = images.shape[:2]
    grouped = padded.reshape(1, batch * channels, *padded.shape[2:])
    kernel = weights.repeat_interleave(channels, 0)  # (B * C, 5)
    rows = F.conv2d(grouped, kernel[:, None, None, :], groups=batch * channels)
    both = F.conv2d(rows, kernel[:, None, :, None], groups=batch * channels)
    return both.reshape(images.shape)


def noise(images: torch.Tensor, generator: torch.Generator, **_) -> torch.Tensor:
    sigmas = _uniform(images.shape[0], 0.0, 0.06, generator)[:, None, None, None]
    return (images + sigmas * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def shift(images: torch.Tensor, generator: torch.Generator, *, max_shift: int = 1, **_) -> torch.Tensor:
    if max_shift < 1:
        return images
    pad = max_shift
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    side_h, side_w = images.shape[-2:]
    moves = torch.randint(-pad, pad + 1, (images.shape[0], 2), generator=generator).tolist()
    return torch.stack([p[:, pad + dy: pad + dy + side_h, pad + dx: pad + dx + side_w] for p, (dy, dx) in zip(padded, moves)])


def max_shift_for(resolution: int, jitter: float = 0.04) -> int:
    """The largest whole-pixel shift within a position jitter of `jitter` of the side (shapes: 0.04)."""
    return max(1, math.floor(jitter * resolution))


TRANSFORMS = {"resample": resample, "jpeg": jpeg, "blur": blur, "noise": noise, "shift": shift}
