"""Train the evaluator (an image-text dual encoder) on real images and captions only.

`limner train --model evaluator` writes the folder `limner.pipelines.dual_encoder` loads:
`dual_encoder/` (config.json + model.safetensors), `text_encoder/config.json` and
`model_index.json` (role evaluator, (seed, steps, data, the final loss, recall@1 and style accuracy
on the test split's real images).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from limner.config import save_config_json
from limner.errors import DataError
from limner.models.dual_encoder import DualEncoder
from limner.pipelines.dual_encoder import save_evaluator
from limner.training.config import EvaluatorTrainConfig
from limner.training.data import load_test_split, load_training_data, resolve_data_dir
from limner.training.dual_encoder import fit, pair_loss, retrieval_scores
from limner.utils.images import from_uint8

log = logging.getLogger("limner.evaluator")


@dataclass
class EvaluatorResult:
    output_dir: Path
    steps: int
    train_seconds: float
    final_loss: float
    test_recall_at_1: float | None


def train_evaluator(config: EvaluatorTrainConfig, *, progress: bool = True) -> EvaluatorResult:
    torch.manual_seed(config.seed)
    data_dir = resolve_data_dir(config)
    text_encoder, data, _ = load_training_data(config, data_dir, progress=progress, streaming=False)
    styles = column_values(data.columns, "style")
    evaluator = DualEncoder(config.evaluator_config(text_encoder.dim, styles=styles))
    evaluator.text_norm.fit(data.sentence_table)
    labels = style_ids(data.columns, styles) if styles else None
    weight = evaluator.config.style_weight
    step_fn = styled_contrastive_step(labels, weight) if styles and weight > 0 else None
    ran = fit(evaluator, data, config, learning_rate=config.evaluator_learning_rate, name="evaluator", progress=progress, step_fn=step_fn)
    step, train_seconds, loss_value = ran.steps, ran.seconds, ran.last_losses.get("loss", float("nan"))
    style_accuracy = None
    if styles:  # jointly trained or not, the head ends as a converged linear probe on the final features
        fit_style_head(evaluator, from_uint8(data.images), labels, seed=config.seed)
        style_accuracy = test_style_accuracy(evaluator, data_dir, config.resolution)
    retrieval = retrieval_scores(evaluator, text_encoder, data_dir, config.resolution)
    recall = None if retrieval is None else retrieval["image_to_caption_r1"]
    out = Path(config.output_dir)
    save_evaluator(out, evaluator, text_encoder, {
        "seed": config.seed, "steps": step, "train_data_dir": str(data_dir), "resolution": config.resolution,
        "final_loss": loss_value, "test_recall_at_1": recall, "test_style_accuracy": style_accuracy,
        "interrupted": ran.interrupted,
    })
    save_config_json(config, out / "training_config.json")
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


def styled_contrastive_step(labels: torch.Tensor, weight: float):
    """A training step for an evaluator with a style head: InfoNCE plus `weight` x the style
    cross-entropy on the same real images (labels: the style id of every training image)."""

    def step(evaluator: DualEncoder, optimizer: torch.optim.Optimizer, data, batch_size: int, rng: torch.Generator, *,
             augment=lambda images: images) -> float:
        index, own = data.draw(batch_size, rng)
        features = evaluator(augment(from_uint8(data.images[index])))
        style = torch.nn.functional.cross_entropy(evaluator.style_logits(features), labels[index])
        loss = pair_loss(evaluator, evaluator.embed_features(features), data.sentence_table[own]) + weight * style
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def fit_style_head(evaluator: DualEncoder, images: torch.Tensor, labels: torch.Tensor, *, steps: int = 500, seed: int = 0) -> float:
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
def test_style_accuracy(evaluator: DualEncoder, data_dir: Path, resolution: int) -> float | None:
    """The style head's accuracy on the test split's real images (None without a test split)."""
    split = load_test_split(data_dir, resolution)
    if split is None:
        return None
    records, images = split
    labels = style_ids([r.columns for r in records], evaluator.config.styles)
    return round((evaluator.style_logits(evaluator.pooled_features(images)).argmax(1) == labels).float().mean().item(), 4)
