"""Train the captioner (image to text) with teacher forcing on real images and captions.

`limner train --model captioner` writes an ImageToTextPipeline folder
(model_index.json, captioner/) and `captioner_scores.json` with exact-match
accuracy of greedy captions on the test split's real images.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from limner.errors import ConfigError
from limner.models.captioner import PAD, Captioner
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.text.caption_vocabulary import CaptionVocabulary, load_tokenizer
from limner.training.config import TrainConfig
from limner.training.data import load_test_split, load_training_data, resolve_data_dir
from limner.training.losses import caption_loss
from limner.utils.images import from_uint8, to_pil

log = logging.getLogger("limner.captioner")
SCORES_NAME = "captioner_scores.json"
WARMUP_STEPS = 100


@dataclass
class CaptionerResult:
    output_dir: Path
    steps: int
    train_seconds: float
    final_loss: float
    test_exact_match: float | None


def train_captioner(config: TrainConfig, *, progress: bool = True) -> CaptionerResult:
    if config.text_encoder == "bag-of-words":
        raise ConfigError("the captioner writes in a Hugging Face tokenizer's tokens; pick a Hugging Face text encoder")
    torch.manual_seed(config.seed)
    rng = torch.Generator().manual_seed(config.seed)
    data_dir = resolve_data_dir(config)
    _, data, _ = load_training_data(config, data_dir, progress=progress, streaming=False)
    tokenizer = load_tokenizer(config.text_encoder)
    vocabulary = CaptionVocabulary(tokenizer, CaptionVocabulary.collect(tokenizer, data.captions))
    model_config = config.captioner_config(vocabulary.vocabulary)
    captioner = Captioner(model_config)
    targets = vocabulary.encode(data.captions, model_config.max_length)  # (U, L + 1), all captions at once
    optimizer = torch.optim.AdamW(captioner.parameters(), lr=config.captioner_learning_rate, weight_decay=0.01)
    budget = config.max_train_minutes * 60 if config.max_train_minutes else float("inf")
    started, step, loss_value = time.perf_counter(), 0, float("nan")
    bar = tqdm(total=config.max_train_steps, desc="training captioner", disable=not progress, dynamic_ncols=True)
    captioner.train()
    try:
        while step < config.max_train_steps and time.perf_counter() - started < budget:
            for group in optimizer.param_groups:
                group["lr"] = config.captioner_learning_rate * _schedule(step, config.max_train_steps, started, budget)
            index, own = data.draw(config.train_batch_size, rng)
            tokens = targets[own]
            length = int((tokens != PAD).sum(1).max())
            tokens = tokens[:, :length]
            logits = captioner(from_uint8(data.images[index]), tokens[:, :-1])
            loss = caption_loss(logits, tokens[:, 1:], label_smoothing=0.1, pad=PAD)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(captioner.parameters(), 1.0)
            optimizer.step()
            loss_value = loss.item()
            step += 1
            bar.update(1)
            if step % config.logging_steps == 0:
                bar.set_postfix(loss=f"{loss_value:.3f}")
    finally:
        bar.close()
    train_seconds = time.perf_counter() - started
    pipe = ImageToTextPipeline(captioner.eval(), config.text_encoder, tokenizer=tokenizer)
    out = Path(config.output_dir)
    pipe.save_pretrained(out)
    exact = test_exact_match(pipe, data_dir, config.resolution)
    scores = {"steps": step, "train_seconds": round(train_seconds, 1), "final_loss": loss_value,
              "test_exact_match": exact, "train_data_dir": str(data_dir)}
    (out / SCORES_NAME).write_text(json.dumps(scores, indent=2) + "\n")
    return CaptionerResult(out, step, train_seconds, loss_value, exact)


def _schedule(step: int, max_steps: int, started: float, budget: float) -> float:
    """Linear warm-up, then cosine decay to 10% over whichever runs out first: steps or time."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    progress = max(step / max_steps, (time.perf_counter() - started) / budget if math.isfinite(budget) else 0.0)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def test_exact_match(pipe: ImageToTextPipeline, data_dir: Path, resolution: int, *, max_images: int = 2000) -> float | None:
    """Share of the test split's real images whose greedy caption equals one of their captions."""
    split = load_test_split(data_dir, resolution, max_images=max_images)
    if split is None:
        return None
    records, images = split[0], to_pil(split[1])
    predicted = [p["generated_text"] for p in pipe(images)]
    normalise = lambda text: " ".join(text.lower().split())  # noqa: E731
    hits = [normalise(p) in {normalise(c) for c in r.captions} for p, r in zip(predicted, records)]
    return sum(hits) / len(hits)
