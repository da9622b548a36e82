"""Train the aligner (image-text matching) with InfoNCE on real images and their captions.

`limner train --model aligner` writes a DualEncoderPipeline folder (model_index.json
with role aligner, dual_encoder/, text_encoder/) and `aligner_scores.json`: on the test split, how often an
image's own caption is the aligner's first choice among all the split's captions
(image-to-caption recall@1 and @5), and the same from captions to images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from limner.config import save_config_json
from limner.models.dual_encoder import DualEncoder
from limner.pipelines.dual_encoder import DualEncoderPipeline
from limner.training.config import AlignerTrainConfig
from limner.training.data import load_training_data, resolve_data_dir
from limner.training.dual_encoder import fit, retrieval_scores

SCORES_NAME = "aligner_scores.json"


@dataclass
class AlignerResult:
    output_dir: Path
    steps: int
    train_seconds: float
    final_loss: float
    test_scores: dict | None


def train_aligner(config: AlignerTrainConfig, *, progress: bool = True) -> AlignerResult:
    torch.manual_seed(config.seed)
    data_dir = resolve_data_dir(config)
    text_encoder, data, _ = load_training_data(config, data_dir, progress=progress, streaming=False)
    aligner = DualEncoder(config.aligner_config(text_encoder.dim))
    aligner.text_norm.fit(data.sentence_table)
    ran = fit(aligner, data, config, learning_rate=config.aligner_learning_rate, name="aligner", progress=progress)
    step, train_seconds, loss_value = ran.steps, ran.seconds, ran.last_losses.get("loss", float("nan"))
    out = Path(config.output_dir)
    DualEncoderPipeline(aligner, text_encoder).save_pretrained(out)
    save_config_json(config, out / "training_config.json")
    scores = retrieval_scores(aligner, text_encoder, data_dir, config.resolution)
    report = {"steps": step, "train_seconds": round(train_seconds, 1), "final_loss": loss_value,
              "temperature": round(aligner.temperature().item(), 4), "test": scores, "train_data_dir": str(data_dir), "interrupted": ran.interrupted}
    (out / SCORES_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return AlignerResult(out, step, train_seconds, loss_value, scores)
