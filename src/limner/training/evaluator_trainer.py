"""Train the evaluator (an image-text dual encoder) on real images and captions only.

`limner train --model evaluator` writes `{output_dir}/evaluator/` (config.json +
model.safetensors), `text_encoder/config.json` and `evaluator_index.json` (seed,
steps, data, the final loss and recall@1 on the test split's real images).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from limner.errors import DataError, ModelLoadError
from limner.models.evaluator import Evaluator
from limner.text import TextEncoder, load_text_encoder
from limner.training.config import TrainConfig
from limner.training.data import load_test_split
from limner.training.dual_encoder import fit, retrieval_scores
from limner.utils.images import from_uint8
from limner.training.trainer import load_training_data, resolve_data_dir

log = logging.getLogger("limner.evaluator")
INDEX_NAME = "evaluator_index.json"


@dataclass
class EvaluatorResult:
    output_dir: Path
    steps: int
    train_seconds: float
    final_loss: float
    test_recall_at_1: float | None


def train_evaluator(config: TrainConfig, *, progress: bool = True) -> EvaluatorResult:
    torch.manual_seed(config.seed)
    data_dir = resolve_data_dir(config)
    text_encoder, data, _ = load_training_data(config, data_dir, progress=progress, streaming=False)
    styles = column_values(data.columns, "style")
    evaluator = Evaluator(config.evaluator_config(text_encoder.dim, styles=styles))
    evaluator.text_norm.fit(data.sentence_table)
    step, train_seconds, loss_value = fit(evaluator, data, config, learning_rate=config.evaluator_learning_rate, name="evaluator", progress=progress)
    style_accuracy = None
    if styles:
        fit_style_head(evaluator, from_uint8(data.images), style_ids(data.columns, styles), seed=config.seed)
        style_accuracy = test_style_accuracy(evaluator, data_dir, config.resolution)
    retrieval = retrieval_scores(evaluator, text_encoder, data_dir, config.resolution)
    recall = None if retrieval is None else retrieval["image_to_caption_r1"]
    out = Path(config.output_dir)
    save_evaluator(out, evaluator, text_encoder, {
        "seed": config.seed, "steps": step, "train_data_dir": str(data_dir), "resolution": config.resolution,
        "final_loss": loss_value, "test_recall_at_1": recall, "test_style_accuracy": style_accuracy,
    })
    return EvaluatorResult(out, step, train_seconds, loss_value, recall)


def column_values(columns: list[dict] | None, name: str) -> tuple[str, ...]:
    """The distinct values of a metadata column, sorted; () when the data has no such column."""
    values = {row[name] for row in columns or () if isinstance(row.get(name), str)}
    return tuple(sorted(values))


def style_ids(columns: list[dict], styles: tuple[str, ...]) -> torch.Tensor:
    index = {style: i for i, style in enumerate(styles)}
    missing = [i for i, row in enumerate(columns) if row.get("style") not in index]
    if missing:
        raise DataError(f"{len(missing)} training images have no 'style' value (the first is image {missing[0]})")
    return torch.tensor([index[row["style"]] for row in columns])


def fit_style_head(evaluator: Evaluator, images: torch.Tensor, labels: torch.Tensor, *, steps: int = 500, seed: int = 0) -> float:
    """Fit the style head as a linear probe on the frozen evaluator's features of real images
    (full batch, Adam, weight decay); returns its training accuracy."""
    features = evaluator.pooled_features(images)
    torch.manual_seed(seed)
    head = evaluator.style_head
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    mean, std = features.mean(0), features.std(0).clamp(min=1e-6)
    normalized = (features - mean) / std
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(normalized), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # fold the normalisation into the head, so it reads raw features
        head.weight.div_(std)
        head.bias.sub_(head.weight @ mean)
        return (head(features).argmax(1) == labels).float().mean().item()


@torch.no_grad()
def test_style_accuracy(evaluator: Evaluator, data_dir: Path, resolution: int) -> float | None:
    """The style head's accuracy on the test split's real images (None without a test split)."""
    split = load_test_split(data_dir, resolution)
    if split is None:
        return None
    records, images = split
    labels = style_ids([r.columns for r in records], evaluator.config.styles)
    return round((evaluator.style_logits(evaluator.pooled_features(images)).argmax(1) == labels).float().mean().item(), 4)


def save_evaluator(folder: Path, evaluator: Evaluator, text_encoder: TextEncoder, info: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    evaluator.save_pretrained(folder / "evaluator")
    (folder / "text_encoder").mkdir(exist_ok=True)
    (folder / "text_encoder" / "config.json").write_text(json.dumps(text_encoder.config(), indent=2) + "\n")
    (folder / INDEX_NAME).write_text(json.dumps({"_class_name": "Evaluator", **info}, indent=2) + "\n")


def load_evaluator(folder: str | Path) -> tuple[Evaluator, TextEncoder, dict]:
    folder = Path(folder)
    if not (folder / INDEX_NAME).is_file():
        raise ModelLoadError(f"{folder}: no {INDEX_NAME}; train one with `limner train --model evaluator`")
    evaluator = Evaluator.from_pretrained(folder / "evaluator")
    text_encoder = load_text_encoder(json.loads((folder / "text_encoder" / "config.json").read_text()))
    if text_encoder.dim != evaluator.config.text_dim:
        raise ModelLoadError(f"{folder}: text encoder gives {text_encoder.dim}-d embeddings, the evaluator wants {evaluator.config.text_dim}")
    return evaluator, text_encoder, json.loads((folder / INDEX_NAME).read_text())
