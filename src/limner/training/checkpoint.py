"""Atomic training checkpoints: a kill at any moment leaves the last good one intact.

A checkpoint is a folder `checkpoint-{step}` holding generator/, ema/ and
discriminator/ (each config.json + model.safetensors) and training_state.pt
(optimisers, step, RNG states; tensors and plain Python only, loaded with
weights_only=True). It is written under a hidden temporary name and renamed
into place, so a folder named `checkpoint-*` is always complete.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from limner.errors import ConfigError
from limner.models import Discriminator, Generator
from limner.training.gan_step import GANModels, GANOptimizers

_NAME = re.compile(r"^checkpoint-(\d+)$")


def save_checkpoint(root: Path, step: int, models: GANModels, optimizers: GANOptimizers, sampler_rng: torch.Generator) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"checkpoint-{step}"
    staging = root / f".checkpoint-{step}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    models.generator.save_pretrained(staging / "generator")
    models.ema.save_pretrained(staging / "ema")
    models.discriminator.save_pretrained(staging / "discriminator")
    state = {
        "step": step,
        "generator_optimizer": optimizers.generator.state_dict(),
        "discriminator_optimizer": optimizers.discriminator.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "sampler_rng": sampler_rng.get_state(),
        "python_rng": _python_rng_state(),
        "numpy_rng": _numpy_rng_state(),
    }
    torch.save(state, staging / "training_state.pt")
    _fsync_tree(staging)
    if final.exists():  # re-saving the same step: replace the old copy
        old = root / f".checkpoint-{step}.old"
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(staging, final)
    return final


def load_checkpoint(folder: Path, models: GANModels, optimizers: GANOptimizers, sampler_rng: torch.Generator) -> int:
    """Restore everything in place; returns the step the checkpoint was taken at."""
    models.generator.load_state_dict(Generator.from_pretrained(folder / "generator").state_dict())
    models.ema.load_state_dict(Generator.from_pretrained(folder / "ema").state_dict())
    models.discriminator.load_state_dict(Discriminator.from_pretrained(folder / "discriminator").state_dict())
    state = torch.load(folder / "training_state.pt", weights_only=True)
    optimizers.generator.load_state_dict(state["generator_optimizer"])
    optimizers.discriminator.load_state_dict(state["discriminator_optimizer"])
    torch.set_rng_state(state["torch_rng"])
    sampler_rng.set_state(state["sampler_rng"])
    random.setstate(_to_tuple(state["python_rng"]))
    np.random.set_state(_numpy_state_from(state["numpy_rng"]))
    return int(state["step"])


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def resolve_checkpoint(root: Path, spec: str) -> Path | None:
    """`spec` is "latest" (None when there is none yet) or a checkpoint folder."""
    if spec == "latest":
        checkpoints = list_checkpoints(root)
        return checkpoints[-1][1] if checkpoints else None
    folder = Path(spec)
    if not folder.is_absolute() and not folder.exists():
        folder = root / spec
    if not (folder / "training_state.pt").is_file():
        raise ConfigError(f"--resume-from-checkpoint: {spec!r} is not a checkpoint folder")
    return folder


def prune_checkpoints(root: Path, keep: int) -> None:
    for _, folder in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(folder, ignore_errors=True)


def _python_rng_state() -> Any:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _to_tuple(state: Any) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _numpy_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from(state: dict[str, Any]) -> tuple:
    return (state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"], state["cached"])


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
