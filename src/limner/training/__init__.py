"""Training: one config class per model kind and the presets, the shared loop, losses, the GAN step,
checkpoints and the trainers."""

from limner.training.config import (
    AlignerTrainConfig, CaptionerTrainConfig, EvaluatorTrainConfig, GeneratorTrainConfig, TrainConfig, VAETrainConfig,
)
from limner.training.gan_config import GANTrainConfig
from limner.training.presets import CONFIG_CLASSES, MODELS, PRESETS, build_train_config, load_preset, load_train_config
from limner.training.trainer import TrainResult, Trainer, train

__all__ = ["AlignerTrainConfig", "CaptionerTrainConfig", "CONFIG_CLASSES", "EvaluatorTrainConfig", "GANTrainConfig", "GeneratorTrainConfig",
           "MODELS", "PRESETS", "TrainConfig", "TrainResult", "Trainer", "VAETrainConfig", "build_train_config", "load_preset",
           "load_train_config", "train"]
