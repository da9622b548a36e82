"""The output checker: an evaluator's image features read by a trained safety head. Saved as
`evaluator/` + `head/` + `safety_checker_index.json`, as `limner train --model safety-checker`
writes it; a text-to-image model folder with a `safety_checker/` inside loads it with the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from limner.errors import ModelLoadError
from limner.models.dual_encoder import DualEncoder
from limner.models.safety_checker import SafetyHead
from limner.utils.files import file_sha256

INDEX_NAME = "safety_checker_index.json"
WEIGHTS = "model.safetensors"


class SafetyChecker:
    """flags = checker(images): True where an image (B, 3, H, W) in [-1, 1] looks unwanted."""

    def __init__(self, evaluator: DualEncoder, head: SafetyHead, info: dict | None = None) -> None:
        self.evaluator, self.head = evaluator.eval(), head.eval()
        self.info = info or {}

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(B,) the probability that each image is one of the unwanted kind."""
        return torch.sigmoid(self.head(self.evaluator.pooled_features(images.float())))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(images) >= self.head.config.threshold

    def save_pretrained(self, folder: str | Path) -> None:
        """The evaluator is saved first: the head records the sha256 of those very weights."""
        folder = Path(folder)
        self.evaluator.save_pretrained(folder / "evaluator")
        self.head.config.evaluator_sha256 = file_sha256(folder / "evaluator" / WEIGHTS)
        self.head.save_pretrained(folder / "head")
        (folder / INDEX_NAME).write_text(json.dumps({"_class_name": type(self).__name__, **self.info}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "SafetyChecker":
        folder = Path(folder)
        if not (folder / INDEX_NAME).is_file():
            raise ModelLoadError(f"{folder}: no {INDEX_NAME}; train one with `limner train --model safety-checker`")
        evaluator, head = DualEncoder.from_pretrained(folder / "evaluator"), SafetyHead.from_pretrained(folder / "head")
        check_same_features(head, folder / "evaluator" / WEIGHTS)
        try:
            info = json.loads((folder / INDEX_NAME).read_text())
        except json.JSONDecodeError as err:
            raise ModelLoadError(f"{folder / INDEX_NAME}: not valid JSON ({err})") from err
        return cls(evaluator, head, info)


def check_same_features(head: SafetyHead, evaluator_weights: Path) -> None:
    """A head reads only the feature network it was trained on: another one's features mean other things."""
    digest = file_sha256(evaluator_weights)
    if head.config.evaluator_sha256 and head.config.evaluator_sha256 != digest:
        raise ModelLoadError(f"{evaluator_weights}: this safety head was trained on another evaluator's features "
                             f"(sha256 {head.config.evaluator_sha256[:12]}..., this one {digest[:12]}...): retrain it on this evaluator")


def blank_flagged(images: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """images (B, 3, H, W) in [-1, 1] with each flagged one replaced by black (the diffusers convention)."""
    return torch.where(flags[:, None, None, None], torch.full_like(images, -1.0), images)


__all__ = ["SafetyChecker", "blank_flagged", "check_same_features"]
