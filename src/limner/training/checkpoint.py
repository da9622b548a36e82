"""Atomic training checkpoints: a kill at any moment leaves the last good one intact.

A checkpoint is a folder `checkpoint-{step}` holding generator/, ema/ and
discriminator/ (each config.json + model.safetensors) and training_state.pt
(optimisers, step, RNG states; tensors and plain Python only, loaded with
weights_only=True), and manifest.json with the SHA-256 of every other file.
It is written under a hidden temporary name, fsynced and renamed into place, so
a folder named `checkpoint-*` is complete unless the disk itself lost data; the
manifest catches that (or any later damage): resuming from "latest" checks the
newest checkpoint's checksums and falls back to the newest one that passes.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from limner.errors import CheckpointError, ConfigError
from limner.models import Discriminator, Generator, LatentEncoder
from limner.training.gan_step import GANModels, GANOptimizers
from limner.utils.files import file_sha256

_NAME = re.compile(r"^checkpoint-(\d+)$")
MANIFEST = "manifest.json"
log = logging.getLogger("limner.checkpoint")


class CheckpointPosition(NamedTuple):
    step: int
    trained_minutes: float  # wall-clock minutes of training so far, over every resume (for schedules in minutes)


def save_checkpoint(root: Path, step: int, models: GANModels, optimizers: GANOptimizers, sampler_rng: torch.Generator,
                    *, trained_minutes: float = 0.0) -> Path:
    """Write checkpoint-{step}; on any failure (a full disk) the staging copy is removed, earlier
    checkpoints are untouched, and a CheckpointError says what happened."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".checkpoint-{step}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write(staging, CheckpointPosition(step, trained_minutes), models, optimizers, sampler_rng)
    except Exception as err:  # OSError from Python's writes; writers in C++ or Rust raise their own kinds
        reason = "no space left on the device" if _disk_full(err, root) else f"{type(err).__name__}: {err}"
        shutil.rmtree(staging, ignore_errors=True)
        previous = list_checkpoints(root)
        kept = f"the previous checkpoint ({previous[-1][1].name}) is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"could not write checkpoint-{step} in {root}: {reason}; {kept}") from err
    return _publish(root, staging, step)


def _disk_full(err: Exception, root: Path) -> bool:
    """ENOSPC anywhere in the error's chain, or (for writers that hide errno) no space left on root's device."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(root).free < 1024 * 1024
    except OSError:
        return False


def _write(staging: Path, position: CheckpointPosition, models: GANModels, optimizers: GANOptimizers, sampler_rng: torch.Generator) -> None:
    models.generator.save_pretrained(staging / "generator")
    models.ema.save_pretrained(staging / "ema")
    models.discriminator.save_pretrained(staging / "discriminator")
    if models.latent_encoder is not None:
        models.latent_encoder.save_pretrained(staging / "latent_encoder")
    state = {
        "step": position.step,
        "trained_minutes": position.trained_minutes,
        "generator_optimizer": optimizers.generator.state_dict(),
        "discriminator_optimizer": optimizers.discriminator.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "sampler_rng": sampler_rng.get_state(),
        "python_rng": _python_rng_state(),
        "numpy_rng": _numpy_rng_state(),
    }
    buffer = io.BytesIO()  # serialised in memory, written by Python: a full disk then raises OSError(ENOSPC)
    torch.save(state, buffer)
    (staging / "training_state.pt").write_bytes(buffer.getvalue())
    files = {str(p.relative_to(staging)): file_sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
    (staging / MANIFEST).write_text(json.dumps({"step": position.step, "sha256": files}, indent=2) + "\n")
    _fsync_tree(staging)


def _publish(root: Path, staging: Path, step: int) -> Path:
    final = root / f"checkpoint-{step}"
    if final.exists():  # re-saving the same step: replace the old copy
        old = root / f".checkpoint-{step}.old"
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(staging, final)
    _fsync_directory(root)
    return final


def verify_checkpoint(folder: Path) -> None:
    """CheckpointError unless every file listed in the manifest is there with its checksum."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        expected = manifest["sha256"]
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {MANIFEST} (incomplete, or written by an older limner)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{folder}: {MANIFEST} is damaged ({err})") from err
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder}: {name} is missing")
        if file_sha256(path) != digest:
            raise CheckpointError(f"{folder}: {name} fails its checksum (truncated or corrupt)")


def load_checkpoint(folder: Path, models: GANModels, optimizers: GANOptimizers, sampler_rng: torch.Generator) -> CheckpointPosition:
    """Restore everything in place; returns where the run was when the checkpoint was taken."""
    models.generator.load_state_dict(Generator.from_pretrained(folder / "generator").state_dict())
    models.ema.load_state_dict(Generator.from_pretrained(folder / "ema").state_dict())
    models.discriminator.load_state_dict(Discriminator.from_pretrained(folder / "discriminator").state_dict())
    if models.latent_encoder is not None:
        if not (folder / "latent_encoder").is_dir():
            raise CheckpointError(f"{folder}: has no latent_encoder/, but this run trains one (latent_encoder_dims > 0)")
        models.latent_encoder.load_state_dict(LatentEncoder.from_pretrained(folder / "latent_encoder").state_dict())
    state = torch.load(folder / "training_state.pt", weights_only=True, map_location="cpu")
    optimizers.generator.load_state_dict(state["generator_optimizer"])
    optimizers.discriminator.load_state_dict(state["discriminator_optimizer"])
    torch.set_rng_state(state["torch_rng"])
    sampler_rng.set_state(state["sampler_rng"])
    random.setstate(_to_tuple(state["python_rng"]))
    np.random.set_state(_numpy_state_from(state["numpy_rng"]))
    return CheckpointPosition(int(state["step"]), float(state.get("trained_minutes", 0.0)))  # older checkpoints kept none


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def resolve_checkpoint(root: Path, spec: str) -> Path | None:
    """`spec` is "latest" (None when there is none yet) or a checkpoint folder."""
    if spec == "latest":
        return latest_good_checkpoint(root)
    folder = Path(spec)
    if not folder.is_absolute() and not folder.exists():
        folder = root / spec
    if not (folder / "training_state.pt").is_file() and not (folder / MANIFEST).is_file():
        raise ConfigError(f"--resume-from-checkpoint: {spec!r} is not a checkpoint folder")
    verify_checkpoint(folder)
    return folder


def latest_good_checkpoint(root: Path) -> Path | None:
    """The newest checkpoint that passes its checksums; each bad one on the way is reported.
    None when there is no checkpoint yet; CheckpointError when there are some but none is good."""
    checkpoints = list_checkpoints(root)
    problems = []
    for _, folder in reversed(checkpoints):
        try:
            verify_checkpoint(folder)
        except CheckpointError as err:
            log.warning("skipping a bad checkpoint: %s", err)
            problems.append(str(err))
            continue
        if problems:
            log.warning("resuming from %s, the newest good checkpoint", folder.name)
        return folder
    if problems:
        raise CheckpointError(f"every checkpoint in {root} is damaged: " + "; ".join(problems))
    return None


def set_aside_checkpoints(root: Path) -> Path | None:
    """A run that starts afresh where an earlier run left checkpoints moves them into
    root/earlier-run-N/ (nothing is deleted), so that its own are never pruned in their favour and
    "latest" never resumes the other run. Returns where they went, or None when there were none."""
    found = list_checkpoints(root)
    if not found:
        return None
    number = 1
    while (root / f"earlier-run-{number}").exists():
        number += 1
    target = root / f"earlier-run-{number}"
    target.mkdir()
    for _, folder in found:
        folder.rename(target / folder.name)
    return target


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
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_directory(path)


def _fsync_directory(folder: Path) -> None:
    """Make a rename or a new entry in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
