"""Distillation of a generator into a smaller one (after channel pruning, limner.models.pruning):
the student is asked to draw what the teacher draws for the same noise and caption.

Pixel L1 between the two images, on the training captions' embeddings and noise drawn as the
pipeline draws it; no discriminator and no real images are needed, so a few CPU-minutes win
back most of what pruning took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from limner.errors import ConfigError
from limner.models import Generator, generator_noise


@dataclass
class DistillResult:
    steps: int
    seconds: float
    first_loss: float  # mean absolute pixel difference from the teacher, first and last 20 steps
    last_loss: float


def distill(student: Generator, teacher: Generator, sentences: torch.Tensor, *, max_minutes: float = 5.0, max_steps: int = 100_000,
            batch_size: int = 64, learning_rate: float = 2e-4, truncation: float = 1.0, seed: int = 0,
            progress: bool = True) -> DistillResult:
    """Train `student` in place towards `teacher` (frozen) on random rows of `sentences` (N, D)."""
    if sentences.ndim != 2 or sentences.shape[0] == 0:
        raise ConfigError(f"distillation needs the training captions' embeddings (N, D), got shape {tuple(sentences.shape)}")
    if max_minutes <= 0 and max_steps <= 0:
        raise ConfigError("give distillation some minutes or steps")
    teacher = teacher.eval().requires_grad_(False)
    student.train().requires_grad_(True)
    optimizer = torch.optim.Adam(student.parameters(), lr=learning_rate, betas=(0.5, 0.99))
    rng = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    started, budget = time.perf_counter(), max_minutes * 60 if max_minutes > 0 else float("inf")
    bar = tqdm(total=max_steps, desc=f"distilling (max {max_minutes:g} min)", disable=not progress, dynamic_ncols=True)
    while len(losses) < max_steps and time.perf_counter() - started < budget:
        rows = torch.randint(sentences.shape[0], (batch_size,), generator=rng)
        noise = generator_noise(student.config, batch_size, truncation=truncation, generator=rng)
        with torch.no_grad():
            target = teacher(noise, sentences[rows])
        loss = F.l1_loss(student(noise, sentences[rows]), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(l1=f"{loss.item():.4f}")
    bar.close()
    student.eval().requires_grad_(False)
    window = max(1, min(20, len(losses)))
    return DistillResult(steps=len(losses), seconds=time.perf_counter() - started,
                         first_loss=sum(losses[:window]) / window if losses else float("nan"),
                         last_loss=sum(losses[-window:]) / window if losses else float("nan"))
