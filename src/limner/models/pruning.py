"""Structured channel pruning of the generator: whole channels out, a smaller dense network left.

Channels are removed together wherever one tensor's channels must agree: a block whose shortcut
is the identity adds its input to its output, so those two share one choice. Within each such
group a channel's importance is the L1 norm of the weights that write it (each writer's norms
divided by their mean, so a stem row and a conv filter count alike), the smallest go, and the
survivors keep their order. The pruned generator then needs a short distillation from the
original to win back its quality (limner.training.distill).

Hand-written rather than a pruning library: the generator's couplings are few and known (the
stem's 4x4 layout, the identity shortcuts, the per-channel affines of the fusion blocks), and the
result must stay a plain `Generator` that saves, loads and exports as any other.
"""

from __future__ import annotations

import dataclasses

import torch

from limner.errors import ConfigError
from limner.models.gan import Generator, UpBlock, generator_channels


def prune_generator(generator: Generator, amount: float) -> Generator:
    """A new Generator with round((1 - amount) * C) of the C channels of every stage and every
    block's inner convolution (at least one), carrying the surviving weights."""
    if not 0.0 < amount < 1.0:
        raise ConfigError(f"the pruning amount is the share of channels removed, between 0 and 1 (exclusive), got {amount}")
    channels = generator_channels(generator.config)
    stage_groups = _stage_groups(generator)
    kept_stages: list[torch.Tensor | None] = [None] * len(channels)
    for members in stage_groups:
        count = _kept_count(channels[members[0]], amount)
        scores = sum(_normalised(_stage_importance(generator, stage)) for stage in members)
        kept = scores.topk(count).indices.sort().values
        for stage in members:
            kept_stages[stage] = kept
    kept_inner = []
    for block, stage_out in zip(generator.blocks, kept_stages[1:]):
        scores = block.conv1.weight.detach().abs().flatten(1).sum(1)
        kept_inner.append(scores.topk(len(stage_out)).indices.sort().values)  # UpBlock's inner width is its output's
    sizes = tuple(len(kept) for kept in kept_stages)
    for i, block in enumerate(generator.blocks):  # a conv shortcut must stay one: keep the widths apart
        if not isinstance(block.shortcut, torch.nn.Identity) and sizes[i] == sizes[i + 1]:
            raise ConfigError(f"pruning by {amount} makes stages {i} and {i + 1} equally wide ({sizes[i]}); choose another amount")
    config = dataclasses.replace(generator.config, stage_channels=sizes)
    pruned = Generator(config)
    pruned.load_state_dict(_sliced_state(generator, kept_stages, kept_inner))
    return pruned.eval()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _kept_count(channels: int, amount: float) -> int:
    return max(1, round(channels * (1.0 - amount)))


def _stage_groups(generator: Generator) -> list[list[int]]:
    """Stages whose channels must be chosen together (joined by identity shortcuts)."""
    groups: list[list[int]] = [[0]]
    for i, block in enumerate(generator.blocks):
        if isinstance(block.shortcut, torch.nn.Identity):
            groups[-1].append(i + 1)
        else:
            groups.append([i + 1])
    return groups


def _stage_importance(generator: Generator, stage: int) -> torch.Tensor:
    """L1 norm of the weights that write each channel of `stage` (C,)."""
    if stage == 0:
        rows = generator.stem.weight.detach().abs().sum(1) + generator.stem.bias.detach().abs()
        return rows.view(-1, 16).sum(1)  # the stem writes 4x4 = 16 values per channel
    block: UpBlock = generator.blocks[stage - 1]
    scores = block.conv2.weight.detach().abs().flatten(1).sum(1)
    if not isinstance(block.shortcut, torch.nn.Identity):
        scores = scores + block.shortcut.weight.detach().abs().flatten(1).sum(1)
    return scores


def _normalised(scores: torch.Tensor) -> torch.Tensor:
    return scores / scores.mean().clamp(min=1e-12)


def _sliced_state(generator: Generator, kept_stages: list[torch.Tensor], kept_inner: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    state = {name: tensor.detach().clone() for name, tensor in generator.state_dict().items()}
    stem_rows = (kept_stages[0][:, None] * 16 + torch.arange(16)).flatten()
    state["stem.weight"], state["stem.bias"] = state["stem.weight"][stem_rows], state["stem.bias"][stem_rows]
    for i, block in enumerate(generator.blocks):
        into, inner, out = kept_stages[i], kept_inner[i], kept_stages[i + 1]
        prefix = f"blocks.{i}."
        _slice_fusion(state, prefix + "fuse1.", into)
        _slice_fusion(state, prefix + "fuse2.", inner)
        _slice_conv(state, prefix + "conv1.", inner, into)
        _slice_conv(state, prefix + "conv2.", out, inner)
        if not isinstance(block.shortcut, torch.nn.Identity):
            _slice_conv(state, prefix + "shortcut.", out, into)
    state["to_rgb.weight"] = state["to_rgb.weight"][:, kept_stages[-1]]
    return state


def _slice_conv(state: dict, prefix: str, out: torch.Tensor, into: torch.Tensor) -> None:
    state[prefix + "weight"] = state[prefix + "weight"][out][:, into]
    state[prefix + "bias"] = state[prefix + "bias"][out]


def _slice_fusion(state: dict, prefix: str, kept: torch.Tensor) -> None:
    """The last layer of each scale and shift MLP writes one value per channel."""
    for affine in ("affine1.", "affine2."):
        for part in ("scale.2.", "shift.2."):
            name = prefix + affine + part
            state[name + "weight"], state[name + "bias"] = state[name + "weight"][kept], state[name + "bias"][kept]
