"""Train the aligner (image-text matching) with InfoNCE on real images and their captions.

`limner train --model aligner` writes an AlignmentPipeline folder (model_index.json,
aligner/, text_encoder/) and `aligner_scores.json`: on the test split, how often an
image's own caption is the aligner's first choice among all the split's captions
(image-to-caption recall@1 and @5), and the same from captions to images.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from limner.models.aligner import Aligner
from limner.pipelines.alignment import AlignmentPipeline
from limner.training.config import TrainConfig
from limner.training.dual_encoder import contrastive_step, test_retrieval
from limner.training.trainer import load_training_data, resolve_data_dir

log = logging.getLogger("limner.aligner")
SCORES_NAME = "aligner_scores.json"


@dataclass
class AlignerResult:
    output_dir: Path
    steps: int
    train_seconds: float
    final_loss: float
    test_scores: dict | None


def train_aligner(config: TrainConfig, *, progress: bool = True) -> AlignerResult:
    torch.manual_seed(config.seed)
    rng = torch.Generator().manual_seed(config.seed)
    data_dir = resolve_data_dir(config)
    text_encoder, data, _ = load_training_data(config, data_dir, progress=progress, streaming=False)
    aligner = Aligner(config.aligner_config(text_encoder.dim))
    aligner.text_norm.fit(data.sentence_table)
    optimizer = torch.optim.AdamW(aligner.parameters(), lr=config.aligner_learning_rate, weight_decay=0.01)
    budget = config.max_train_minutes * 60 if config.max_train_minutes else float("inf")
    started, step, loss_value = time.perf_counter(), 0, float("nan")
    bar = tqdm(total=config.max_train_steps, desc="training aligner", disable=not progress, dynamic_ncols=True)
    aligner.train()
    try:
        while step < config.max_train_steps and time.perf_counter() - started < budget:
            loss_value = contrastive_step(aligner, optimizer, data, config.train_batch_size, rng)
            step += 1
            bar.update(1)
            if step % config.logging_steps == 0:
                bar.set_postfix(loss=f"{loss_value:.3f}", temperature=f"{aligner.temperature().item():.3f}")
    finally:
        bar.close()
    train_seconds = time.perf_counter() - started
    pipe = AlignmentPipeline(aligner.eval(), text_encoder)
    out = Path(config.output_dir)
    pipe.save_pretrained(out)
    scores = test_retrieval(aligner, text_encoder, data_dir, config.resolution)
    report = {"steps": step, "train_seconds": round(train_seconds, 1), "final_loss": loss_value,
              "temperature": round(aligner.temperature().item(), 4), "test": scores, "train_data_dir": str(data_dir)}
    (out / SCORES_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return AlignerResult(out, step, train_seconds, loss_value, scores)
