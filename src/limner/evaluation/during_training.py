"""Evaluation during training: KID and R-precision on a fixed subset, and the best model kept.

Every `evaluation_steps` the trainer asks a `TrainingEvaluator` for figures on the
same real images and the same noise each time; the figures go to TensorBoard under
`eval/`, and when the chosen metric improves the pipeline is saved to
`{output_dir}/best` with `best.json` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from limner.data import ImageFolder
from limner.errors import ConfigError
from limner.evaluation.evaluate import load_split
from limner.metrics.alignment import r_precision
from limner.metrics.images import distribution_metrics
from limner.pipelines.dual_encoder import load_evaluator

# metric -> whether higher is better
BEST_METRICS = {"kid_mean": False, "fid": False, "r_precision": True}


class TrainingEvaluator:
    def __init__(self, evaluator_dir: str | Path, data_dir: Path, resolution: int, *, images: int = 256, metric: str = "kid_mean", seed: int = 0):
        if metric not in BEST_METRICS:
            raise ConfigError(f"best_metric must be one of {list(BEST_METRICS)}, got {metric!r}")
        self.evaluator, text_encoder, _ = load_evaluator(evaluator_dir)
        self.evaluator.check_can_judge(resolution)
        captions, self.caption_ids, self.real, _ = load_split(data_dir, "test", resolution, max_images=images, seed=seed)
        train_captions = sorted(set(ImageFolder(data_dir, "train").captions) - set(captions))  # no image is read
        self.prompts = [captions[i] for i in self.caption_ids.tolist()]
        with torch.no_grad():
            self.text_table = self.evaluator.text_embedding(text_encoder.encode(captions + train_captions).sentence)
        self.metric, self.seed = metric, seed
        self.best: float | None = None

    @torch.no_grad()
    def figures(self, pipeline) -> dict[str, float]:
        fake = pipeline.generate_tensors(self.prompts, seed=self.seed)
        out = distribution_metrics(self.evaluator, self.real, fake)
        vectors = self.evaluator.image_embedding(fake)
        out["r_precision"] = r_precision(vectors, self.caption_ids, self.text_table, folds=min(10, len(self.prompts)), seed=self.seed)["mean"]
        return {k: out[k] for k in ("fid", "kid_mean", "r_precision")}

    def is_best(self, figures: dict[str, float]) -> bool:
        value = figures[self.metric]
        higher_is_better = BEST_METRICS[self.metric]
        if self.best is None or (value > self.best if higher_is_better else value < self.best):
            self.best = value
            return True
        return False


def save_best(output_dir: Path, pipeline, step: int, figures: dict[str, float], metric: str) -> None:
    folder = output_dir / "best"
    pipeline.save_pretrained(folder)
    (folder / "best.json").write_text(json.dumps({"step": step, "metric": metric, **figures}, indent=2) + "\n")
