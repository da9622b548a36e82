"""Trains the output checker (`limner train --model safety-checker`): a small classifier over a
frozen evaluator's image features, from a folder of unwanted images and a folder of allowed ones.
A share of each folder is held out, and the checker's precision and recall on it are reported and saved."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from limner.config import config_from_dict
from limner.data.imagefolder import load_image_array
from limner.errors import ConfigError, DataError
from limner.models.safety_checker import SafetyHead, SafetyHeadConfig
from limner.pipelines.dual_encoder import load_evaluator
from limner.pipelines.safety_checker import SafetyChecker
from limner.utils.images import from_uint8

log = logging.getLogger("limner.train")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


@dataclass
class SafetyTrainConfig:
    evaluator_dir: str                    # from `limner train --model evaluator`: whose features the head reads
    unwanted_images: str                  # a folder (searched recursively) of pictures to flag
    allowed_images: str                   # and one of pictures to let through
    output_dir: str = "outputs/safety-checker"
    held_out_fraction: float = 0.25       # of each folder, kept out of training to measure precision and recall
    hidden: int = 64                      # the head's hidden width (0: linear)
    steps: int = 600
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    threshold: float = 0.5
    seed: int = 0
    skip_invalid_images: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ConfigError(f"held_out_fraction must be in (0, 1), got {self.held_out_fraction}")
        if self.steps < 1 or self.learning_rate <= 0:
            raise ConfigError(f"steps and learning_rate must be positive, got {self.steps} and {self.learning_rate}")


@dataclass
class SafetyResult:
    output_dir: Path
    held_out: dict      # precision, recall, counts on the held-out images
    train_images: dict  # {"unwanted": n, "allowed": n}
    skipped: int


def image_files(folder: str | Path, role: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{role} images: {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{role} images: {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files


def load_images(files: list[Path], resolution: int, *, skip_invalid: bool, progress: bool, role: str) -> tuple[torch.Tensor, int]:
    """uint8 (N, 3, R, R) of the files that can be read, and how many were skipped (a bad file stops
    the run, naming it, unless skip_invalid)."""
    arrays, skipped = [], 0
    for path in tqdm(files, desc=f"reading {role} images", disable=not progress, leave=False):
        try:
            arrays.append(load_image_array(path, resolution, where=str(path.parent)))
        except DataError as err:
            if not skip_invalid:
                raise DataError(f"{err} (pass --skip-invalid-images to skip and count bad images)") from err
            log.warning("skipped: %s", err)
            skipped += 1
    if not arrays:
        raise DataError(f"{role} images: none of {len(files)} files could be read")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), skipped


def split_held_out(count: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, held out) of `count` items, at least one of each."""
    if count < 2:
        raise DataError(f"needs at least 2 images of each kind (one to train on, one to hold out), got {count}")
    order = torch.randperm(count, generator=generator)
    held = min(count - 1, max(1, round(count * fraction)))
    return order[held:], order[:held]


def fit_head(head: SafetyHead, features: torch.Tensor, labels: torch.Tensor, *, steps: int, learning_rate: float,
             weight_decay: float) -> float:
    """Full-batch AdamW on class-balanced logistic loss (unwanted images are usually few); the final loss."""
    head.fit_standardizer(features)
    positives = labels.sum().clamp(min=1)
    pos_weight = (labels.numel() - positives) / positives
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    loss = torch.zeros(())
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(head(features), labels, pos_weight=pos_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def precision_recall(flags: torch.Tensor, labels: torch.Tensor) -> dict:
    true_positive = int((flags & labels).sum())
    flagged, unwanted = int(flags.sum()), int(labels.sum())
    return {"precision": true_positive / flagged if flagged else float("nan"), "recall": true_positive / unwanted if unwanted else float("nan"),
            "flagged": flagged, "unwanted": unwanted, "allowed": int((~labels).sum()), "false_positives": flagged - true_positive}


def train_safety_checker(config: SafetyTrainConfig, *, progress: bool = True) -> SafetyResult:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    evaluator, _, _ = load_evaluator(config.evaluator_dir)
    resolution = evaluator.config.resolution
    features, labels, held_out, skipped, counts = [], [], [], 0, {}
    for role, folder, label in (("unwanted", config.unwanted_images, 1.0), ("allowed", config.allowed_images, 0.0)):
        images, bad = load_images(image_files(folder, role), resolution, skip_invalid=config.skip_invalid_images, progress=progress, role=role)
        skipped += bad
        train_rows, held_rows = split_held_out(images.shape[0], config.held_out_fraction, generator)
        role_features = evaluator.pooled_features(from_uint8(images))
        features.append(role_features)
        labels.append(torch.full((images.shape[0],), label))
        held_out.append(torch.zeros(images.shape[0], dtype=torch.bool).index_fill_(0, held_rows, True))
        counts[role] = int(train_rows.numel())
    features, labels, held_out = torch.cat(features), torch.cat(labels), torch.cat(held_out)
    head = SafetyHead(SafetyHeadConfig(feature_dim=evaluator.num_features, hidden=config.hidden, threshold=config.threshold))
    loss = fit_head(head, features[~held_out], labels[~held_out], steps=config.steps, learning_rate=config.learning_rate,
                    weight_decay=config.weight_decay)
    head.eval()
    with torch.no_grad():
        flags = torch.sigmoid(head(features[held_out])) >= config.threshold
    scores = precision_recall(flags, labels[held_out].bool())
    info = {"held_out": scores, "train_images": counts, "final_loss": loss, "skipped_images": skipped, "config": asdict(config)}
    output = Path(config.output_dir)
    SafetyChecker(evaluator, head, info).save_pretrained(output)
    log.info("safety checker: held-out precision %.3f, recall %.3f", scores["precision"], scores["recall"])
    return SafetyResult(output, scores, counts, skipped)


def build_safety_config(values: dict) -> SafetyTrainConfig:
    """From JSON-like values (unknown keys refused, as every limner config)."""
    return config_from_dict(SafetyTrainConfig, values, where="SafetyTrainConfig")


__all__ = ["SafetyTrainConfig", "SafetyResult", "build_safety_config", "train_safety_checker", "precision_recall"]
