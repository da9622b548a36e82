"""`limner prune`: a text-to-image model with a share of its generator's channels removed
(limner.models.pruning), then distilled from the unpruned generator (limner.training.distill),
saved as an ordinary model folder beside a prune.json of what was done."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from limner.errors import ConfigError
from limner.models import Generator
from limner.models.gan import generator_channels
from limner.models.pruning import parameter_count, prune_generator
from limner.training.distill import distill

REPORT = "prune.json"


def prune_model(model_dir: str | Path, output_dir: str | Path, *, amount: float, captions: list[str], distill_minutes: float = 5.0,
                distill_steps: int = 100_000, batch_size: int = 64, seed: int = 0, progress: bool = True) -> dict:
    """Prune `model_dir`'s generator by `amount`, distil it on `captions` (the model's own), and
    write the result to `output_dir`; returns the report (also in output_dir/prune.json)."""
    from limner.pipelines import TextToImagePipeline

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if output_dir.resolve() == model_dir.resolve():
        raise ConfigError(f"{output_dir}: the pruned model needs a folder of its own, not the original's")
    if not captions:
        raise ConfigError("pruning distils on the model's own captions: none were given")
    pipe = TextToImagePipeline.from_pretrained(model_dir)
    teacher = pipe.generator
    if not isinstance(teacher, Generator):
        raise ConfigError(f"{model_dir}: only a GAN generator can be pruned, this model holds a {type(teacher).__name__}")
    torch.manual_seed(seed)
    student = prune_generator(teacher, amount)
    with torch.no_grad():
        sentences = pipe.text_encoder.encode(captions).sentence.float()
    result = distill(student, teacher, sentences, max_minutes=distill_minutes, max_steps=distill_steps, batch_size=batch_size,
                     truncation=pipe.truncation, seed=seed, progress=progress)
    staging = output_dir.with_name(f".{output_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    TextToImagePipeline(student, pipe.text_encoder, truncation=pipe.truncation, training_words=pipe.training_words).save_pretrained(staging)
    if (model_dir / "training_config.json").is_file():  # evaluation and calibration find the training data through it
        shutil.copy(model_dir / "training_config.json", staging / "training_config.json")
    report = {
        "source": str(model_dir.resolve()), "amount": amount,
        "channels_before": generator_channels(teacher.config), "channels_after": list(student.config.stage_channels),
        "parameters_before": parameter_count(teacher), "parameters_after": parameter_count(student),
        "distillation": {"captions": len(captions), "steps": result.steps, "seconds": round(result.seconds, 1),
                         "l1_to_teacher_first": result.first_loss, "l1_to_teacher_last": result.last_loss},
    }
    (staging / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    staging.rename(output_dir)
    return report

