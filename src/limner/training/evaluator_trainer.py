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

from limner.errors import ModelLoadError
from limner.models.evaluator import Evaluator
from limner.text import TextEncoder, load_text_encoder
from limner.training.config import TrainConfig
from limner.training.dual_encoder import fit, retrieval_scores
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
    evaluator = Evaluator(config.evaluator_config(text_encoder.dim))
    evaluator.text_norm.fit(data.sentence_table)
    step, train_seconds, loss_value = fit(evaluator, data, config, learning_rate=config.evaluator_learning_rate, name="evaluator", progress=progress)
    retrieval = retrieval_scores(evaluator, text_encoder, data_dir, config.resolution)
    recall = None if retrieval is None else retrieval["image_to_caption_r1"]
    out = Path(config.output_dir)
    save_evaluator(out, evaluator, text_encoder, {
        "seed": config.seed, "steps": step, "train_data_dir": str(data_dir), "resolution": config.resolution,
        "final_loss": loss_value, "test_recall_at_1": recall,
    })
    return EvaluatorResult(out, step, train_seconds, loss_value, recall)


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
