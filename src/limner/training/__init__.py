"""Training: configs and presets, losses, the GAN step, checkpoints and the trainer."""

from limner.training.config import PRESETS, TrainConfig, build_train_config, load_preset
from limner.training.trainer import TrainResult, Trainer, train

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "Trainer", "build_train_config", "load_preset", "train"]
