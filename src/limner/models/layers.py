"""The layers limner's models share: resolution checks, the down-sampling image path of
every model that reads images (discriminator, evaluator, aligner, captioner, VAE encoder),
and the text standardiser of every model that reads sentence embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from limner.errors import ConfigError

RESOLUTIONS = (32, 64, 128, 256)


def check_resolution(resolution: int) -> int:
    """The number of x2 blocks between 4x4 and `resolution`; ConfigError unless it is one of RESOLUTIONS."""
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
    return int(math.log2(resolution // 4))  # number of up- or down-blocks


def down_channel_plan(base: int, multipliers: tuple[int, ...], blocks: int) -> list[int]:
    """Channels of a down-sampling stack, full resolution to 4x4: the first `blocks + 1` multipliers."""
    if len(multipliers) < blocks + 1:
        raise ConfigError(f"channel_multipliers needs at least {blocks + 1} entries for this resolution")
    return [base * m for m in multipliers[: blocks + 1]]


def down_path(channels: list[int]) -> tuple[nn.Conv2d, nn.Sequential]:
    """The image side every discriminating model shares: a 3x3 conv from RGB to channels[0], then
    DownBlocks through the plan (see down_channel_plan), ending on a 4x4 grid."""
    return nn.Conv2d(3, channels[0], 3, padding=1), nn.Sequential(*(DownBlock(c_in, c_out) for c_in, c_out in zip(channels, channels[1:])))


class DownBlock(nn.Module):
    """Strided conv down x2 with a learned-gain residual over an avg-pooled shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.gain = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.shortcut(x), 2) + self.gain * self.residual(x)




class TextStandardizer(nn.Module):
    """Centres sentence embeddings on the training captions' mean and scales them to unit spread.

    Captions of one domain share most of their embedding (all shapes captions
    sit close together); what tells them apart is a small offset. Subtracting the
    shared part and rescaling makes that offset the whole signal from step one,
    instead of a 0.1-sized wrinkle next to the unit-variance noise.

    With `components` > 0 the offset is also projected onto the top principal
    directions of the training captions. A new wording of a known idea ("upper
    right" for "top right", a different sentence frame) moves the embedding partly
    along directions the training captions never vary in; a network has learnt
    nothing there and may answer anything, so those directions are dropped (a
    linear probe does the same implicitly: its weights lie in the span of its
    training inputs). With `whiten` each kept direction is also scaled to the same
    spread. Identity until `fit` is called; the statistics are buffers, so they
    travel with the weights.
    """

    def __init__(self, text_dim: int, components: int = 0, *, whiten: bool = False) -> None:
        super().__init__()
        if components < 0 or components > text_dim:
            raise ConfigError(f"text_components must be between 0 (off) and the text size {text_dim}, got {components}")
        if whiten and not components:
            raise ConfigError("text_whiten needs text_components (the directions to whiten): a count or \"auto\"")
        self.register_buffer("mean", torch.zeros(text_dim))
        self.register_buffer("inv_std", torch.ones(()))
        # (k, D) orthonormal rows and (k,) spread along each; absent when off, so models saved without them still load
        self.register_buffer("basis", torch.zeros(components, text_dim) if components else None)
        self.register_buffer("direction_std", torch.ones(components) if whiten else None)

    @torch.no_grad()
    def fit(self, sentences: torch.Tensor) -> None:
        """sentences (N, D): the embeddings of the training captions."""
        self.mean.copy_(sentences.mean(0))
        offsets = sentences - self.mean
        if self.basis is not None:
            components = self.basis.shape[0]
            if components > min(offsets.shape):
                raise ConfigError(f"text_components={components} needs at least {components} distinct training captions, got {len(offsets)}")
            _, _, directions = torch.linalg.svd(offsets.double(), full_matrices=False)
            self.basis.copy_(directions[:components].to(self.basis.dtype))
            coordinates = offsets @ self.basis.T  # (N, k)
            if self.direction_std is not None:
                self.direction_std.copy_(coordinates.pow(2).mean(0).sqrt().clamp(min=1e-6))
                coordinates = coordinates / self.direction_std
            offsets = coordinates @ self.basis
        spread = offsets.pow(2).mean().sqrt()
        self.inv_std.copy_(1.0 / spread.clamp(min=1e-6))

    def noise_like(self, sentence: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gaussian noise in the encoder's space (B, D), to add to `sentence`: within the kept
        principal directions when there are some, else in all; `scale` 1 means a standard
        deviation per direction equal to the training captions' average spread per direction
        (whitened: to that direction's own spread)."""
        spread = 1.0 / self.inv_std  # RMS per coordinate of the training offsets (after projection)
        device = self.inv_std.device  # drawn from the (CPU) generator, then moved where the weights are
        if self.basis is None:
            return torch.randn(sentence.shape, generator=generator).to(device) * spread * scale
        components, dim = self.basis.shape
        per_direction = self.direction_std if self.direction_std is not None else spread * math.sqrt(dim / components)
        coordinates = torch.randn(sentence.shape[0], components, generator=generator).to(device) * per_direction * scale
        return coordinates @ self.basis

    def forward(self, sentence: torch.Tensor) -> torch.Tensor:
        offset = sentence - self.mean
        if self.basis is not None:
            coordinates = offset @ self.basis.T  # (B, k)
            if self.direction_std is not None:
                coordinates = coordinates / self.direction_std
            offset = coordinates @ self.basis  # (B, D), kept in the encoder's coordinates
        return offset * self.inv_std
