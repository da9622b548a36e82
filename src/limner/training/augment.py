"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) of the images the discriminator sees.

The same kind of transform is applied to real and generated images, in both the
discriminator's and the generator's step, and gradients flow through it; so the
discriminator cannot memorise a few thousand real images, and the generator is
not taught to draw the augmentations (they happen after it). Each transform draws
its own random values per image from `generator`.

Policies are comma-separated names: "translation", "cutout", "color". Colour
changes what a caption may name ("a red circle"): keep it out of a policy where
colour is an attribute the model must learn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from limner.config import parse_name_list

POLICIES = ("translation", "cutout", "color")


def parse_policy(policy: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> (); unknown names refused."""
    return parse_name_list(policy, POLICIES, "augmentation")


def diff_augment(images: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator | None = None, *,
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5) -> torch.Tensor:
    """images (B, 3, H, W) in [-1, 1] -> the same shape, each image transformed at random."""
    for name in policy:
        images = _TRANSFORMS[name](images, generator, translation_ratio=translation_ratio, cutout_ratio=cutout_ratio)
    return images


def _uniform(shape: tuple[int, ...], generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def color(images: torch.Tensor, generator=None, **_) -> torch.Tensor:
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5] (in the [-1, 1] scale: brightness +-1)."""
    batch = images.shape[0]
    images = images + (_uniform((batch, 1, 1, 1), generator, images) - 0.5) * 2.0
    mean = images.mean(dim=1, keepdim=True)
    images = (images - mean) * (_uniform((batch, 1, 1, 1), generator, images) * 2) + mean
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * (_uniform((batch, 1, 1, 1), generator, images) + 0.5) + mean


def translation(images: torch.Tensor, generator=None, *, translation_ratio: float = 0.125, **_) -> torch.Tensor:
    """Shift each image by up to `translation_ratio` of its side; what comes in repeats the border
    (the background: white for emoji, black for shapes)."""
    batch, _, height, width = images.shape
    pad = max(1, int(height * translation_ratio + 0.5))
    shifts = (torch.randint(-pad, pad + 1, (batch, 2), generator=generator)).tolist()
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    rows = [padded[i, :, pad - dy: pad - dy + height, pad - dx: pad - dx + width] for i, (dy, dx) in enumerate(shifts)]
    return torch.stack(rows)


def cutout(images: torch.Tensor, generator=None, *, cutout_ratio: float = 0.5, **_) -> torch.Tensor:
    """Blank (grey 0) one square of `cutout_ratio` of the side per image, at a random place."""
    batch, _, height, width = images.shape
    size_h, size_w = max(1, int(height * cutout_ratio + 0.5)), max(1, int(width * cutout_ratio + 0.5))
    top = torch.randint(0, height - size_h + 1, (batch, 1, 1), generator=generator)
    left = torch.randint(0, width - size_w + 1, (batch, 1, 1), generator=generator)
    ys = torch.arange(height).view(1, height, 1)
    xs = torch.arange(width).view(1, 1, width)
    inside = (ys >= top) & (ys < top + size_h) & (xs >= left) & (xs < left + size_w)  # (B, H, W)
    keep = (~inside).to(device=images.device, dtype=images.dtype).unsqueeze(1)
    return images * keep


_TRANSFORMS = {"translation": translation, "cutout": cutout, "color": color}
