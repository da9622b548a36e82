"""Train the captioner (image to text) with teacher forcing on real images and captions.

`limner train --model captioner` writes an ImageToTextPipeline folder
(model_index.json, captioner/) and `captioner_scores.json` with exact-match
accuracy of greedy captions on the test split's real images.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from limner.config import save_config_json
from limner.errors import ConfigError
from limner.models.captioner import PAD, Captioner
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.text.caption_vocabulary import CaptionVocabulary, load_tokenizer
from limner.training.config import CaptionerTrainConfig
from limner.training.data import load_test_split, load_training_data, resolve_data_dir
from limner.training.loop import StepLoop
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


def train_captioner(config: CaptionerTrainConfig, *, progress: bool = True) -> CaptionerResult:
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
    augment = config.image_augmenter(torch.Generator().manual_seed(config.seed + 1))
    loop = StepLoop(max_steps=config.max_train_steps, max_minutes=config.max_train_minutes, name="training captioner",
                    progress=progress, logging_steps=config.logging_steps)

    def step() -> dict[str, float]:
        for group in optimizer.param_groups:
            group["lr"] = config.captioner_learning_rate * learning_rate_factor(loop.step, loop.fraction_done())
        index, own = data.draw(config.train_batch_size, rng)
        tokens = targets[own]
        tokens = tokens[:, :int((tokens != PAD).sum(1).max())]
        inputs = drop_tokens(tokens[:, :-1], config.captioner_token_dropout, rng)
        logits = captioner(augment(from_uint8(data.images[index])), inputs)
        loss = caption_loss(logits, tokens[:, 1:], label_smoothing=0.1, pad=PAD)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(captioner.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item()}

    captioner.train()
    ran = loop.run(step)
    step, train_seconds, loss_value = ran.steps, ran.seconds, ran.last_losses.get("loss", float("nan"))
    pipe = ImageToTextPipeline(captioner.eval(), config.text_encoder, tokenizer=tokenizer)
    out = Path(config.output_dir)
    pipe.save_pretrained(out)
    save_config_json(config, out / "training_config.json")
    exact = test_exact_match(pipe, data_dir, config.resolution)
    scores = {"steps": step, "train_seconds": round(train_seconds, 1), "final_loss": loss_value,
              "test_exact_match": exact, "train_data_dir": str(data_dir),
              "interrupted": ran.interrupted}
    (out / SCORES_NAME).write_text(json.dumps(scores, indent=2) + "\n")
    return CaptionerResult(out, step, train_seconds, loss_value, exact)


def drop_tokens(tokens: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """The decoder's input tokens (B, T), BOS first, with each word after BOS hidden with chance `rate`.
    A hidden word becomes padding, which the decoder's attention skips: later words cannot read it."""
    if rate <= 0:
        return tokens
    hidden = torch.rand(tokens.shape, generator=generator) < rate
    hidden[:, 0] = False  # BOS stays: every position must have something to attend to
    return tokens.masked_fill(hidden, PAD)


def learning_rate_factor(step: int, fraction_done: float) -> float:
    """Linear warm-up, then cosine decay to 10% over the run (`fraction_done`: by steps or time, whichever runs out first)."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction_done)))


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
