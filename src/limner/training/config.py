"""Training configuration: defaults < preset file < command-line flags."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import torch

from limner.config import config_from_dict, merge_config
from limner.errors import ConfigError
from limner.models import DiscriminatorConfig, GeneratorConfig
from limner.models.aligner import AlignerConfig
from limner.models.captioner import CaptionerConfig
from limner.models.vae import VAEConfig
from limner.models.evaluator import EvaluatorConfig
from limner.models.layers import RESOLUTIONS
from limner.text.huggingface import POOLINGS
from limner.training.augment import parse_policy


@dataclass
class TrainConfig:
    # data
    train_data_dir: str = "shapes"        # an imagefolder path, or a builtin dataset: shapes, emoji
    resolution: int = 32
    skip_invalid_images: bool = False     # skip and count bad images/lines instead of stopping
    # text
    text_encoder: str = "all-MiniLM-L6-v2"  # HF path or hub id, or "bag-of-words" (from scratch)
    # None: the family's default (mean, last or eos) over a hidden state; "anchored": the model's
    # word embeddings mapped onto the training captions' words (see limner.text.anchored), which
    # carries synonyms and new word orders over, but not word order itself. The bag-of-words
    # encoder has no pooling to choose and ignores this
    text_pooling: str | None = None
    text_anchor_temperature: float = 0.02  # "anchored": lower snaps a new word harder to its nearest known word
    text_anchor_margin: float = 0.15      # "anchored": a new word weighs fully once its two nearest known words are this far apart
    text_hidden_layer: int | None = None  # None: the last layer; 0: the embedding layer
    # models see only the top-k principal directions of the training captions' embeddings
    # (0: all; "auto": those whose singular value is at least 5% of the largest)
    text_components: int | str = 0
    text_whiten: bool = False             # scale each kept direction to unit spread (see GeneratorConfig)
    # models
    model: str = "gan"                    # "gan", "vae", "evaluator" (the independent scorer for `limner evaluate`), "captioner" or "aligner"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    evaluator_learning_rate: float = 1e-3
    # the evaluator reads images downsampled to this many pixels (None: the training resolution), so it
    # trains several times faster; it is trained on the data at `resolution`, downsampled as it will judge
    evaluator_resolution: int | None = None
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    captioner_learning_rate: float = 1e-3
    aligner: AlignerConfig = field(default_factory=AlignerConfig)
    aligner_learning_rate: float = 1e-3
    vae: VAEConfig = field(default_factory=VAEConfig)
    vae_learning_rate: float = 5e-4
    kl_warmup_steps: int = 500            # the KL weight rises linearly from 0 to 1 over these steps
    free_bits: float = 0.05               # nats per latent dimension the KL may use freely
    reconstruction_sigma: float = 0.1     # the decoder's fixed pixel noise, in [-1, 1] units
    # optimisation (DF-GAN: two time-scale Adam with beta1 = 0)
    train_batch_size: int = 64
    max_train_steps: int = 2000
    max_train_minutes: float | None = None  # stop early when this wall-clock budget is spent
    learning_rate: float = 1e-4           # generator
    discriminator_learning_rate: float = 4e-4
    adam_beta1: float = 0.0
    adam_beta2: float = 0.9
    gp_weight: float = 2.0
    gp_power: float = 6.0
    ema_decay: float = 0.999
    contrastive_weight: float = 0.0       # image-text InfoNCE on the discriminator's head (needs contrastive_dim)
    contrastive_temperature: float = 0.1
    image_contrastive_weight: float = 0.0  # generated vs real images of the same caption (needs contrastive_weight > 0)
    reconstruction_weight: float = 0.0    # L1 between each generated image and the real image of its caption
    reconstruction_pool: int = 1          # the reconstruction term compares pool x pool cell means (1: pixels)
    # K >= 2: K samples per caption, only the nearest is pulled (best-of-many). Beyond 2 the first
    # sample stays the plain draw the discriminator judges, and the nearest of K - 1 further draws is
    # found without gradients, then drawn again with them (IMLE's search): each real look of a caption
    # then has a sample near it, so the noise has to cover all of them, not their mean
    reconstruction_best_of: int = 1
    # > 0: a training-only encoder reads each real image whose caption several images share and
    # proposes this many of the generator's noise entries for it; that sample is the one pulled
    # towards the image (see models/latent_encoder.py), so the noise learns to pick among a caption's looks
    latent_encoder_dims: int = 0
    latent_kl_weight: float = 0.01        # keeps the proposed noises distributed as the prior
    condition_noise: float = 0.0          # noise on the generator's caption embedding, in units of the captions' spread
    # the generator's noise must matter: each step draws the first half of the batch's captions a
    # second time from other noise and asks each pair to differ (see losses.diversity_loss)
    diversity_weight: float = 0.0
    # how much (mean absolute pixel difference per unit of noise difference); "auto": what real
    # images sharing a caption show in the training data (estimate_diversity_target)
    diversity_target: float | str = "auto"
    # DiffAugment of real and generated images before the discriminator: comma-separated
    # "translation", "cutout", "color" ("" for none); colour only where colour is no attribute
    augment: str = ""
    # bidirectional terms (frozen models trained first, on the same data and text encoder)
    alignment_weight: float = 0.0         # a frozen aligner's 1 - cosine of each generated image with its caption
    aligner_dir: str | None = None        # from `limner train --model aligner`
    cycle_weight: float = 0.0             # a frozen captioner's cross-entropy for the true caption of each generated image
    captioner_dir: str | None = None      # from `limner train --model captioner`
    # where: "auto" is the GPU when PyTorch sees one (bf16 autocast there), else the CPU; under
    # torchrun each process takes its LOCAL_RANK's GPU (see limner.training.distributed)
    device: str = "auto"
    # bookkeeping
    output_dir: str = "outputs/run"
    seed: int = 0
    checkpointing_steps: int = 500
    checkpoints_total_limit: int = 2
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
    logging_steps: int = 10
    validation_steps: int = 500
    validation_prompts: tuple[str, ...] = ()
    validation_images_per_prompt: int = 6
    truncation: float = 1.0               # noise truncation for validation grids and the saved pipeline
    # evaluation during training (needs a trained evaluator, see `limner train --model evaluator`)
    evaluation_steps: int = 0             # every N steps: KID, FID and R-precision on a fixed test subset (0: off)
    evaluator_dir: str | None = None
    evaluation_images: int = 256
    best_metric: str = "kid_mean"         # the best model by this metric is kept in {output_dir}/best

    def __post_init__(self) -> None:
        self._check_run()
        self._check_text()
        self._check_terms()

    def _check_run(self) -> None:
        """Data, schedule, bookkeeping and where it runs."""
        if self.resolution not in RESOLUTIONS:
            raise ConfigError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution}")
        for name in ("train_batch_size", "max_train_steps", "checkpointing_steps", "logging_steps", "validation_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.evaluation_steps < 0:
            raise ConfigError(f"evaluation_steps must be 0 (off) or positive, got {self.evaluation_steps}")
        if self.evaluation_steps > 0 and not self.evaluator_dir:
            raise ConfigError("evaluation_steps needs evaluator_dir: train one with `limner train --model evaluator`")
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {list(MODELS)}, got {self.model!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.evaluator_resolution is not None and (self.evaluator_resolution not in RESOLUTIONS or self.evaluator_resolution > self.resolution):
            raise ConfigError(f"evaluator_resolution must be one of {RESOLUTIONS} and at most resolution ({self.resolution}), "
                              f"got {self.evaluator_resolution}")
        if self.train_batch_size < 2:
            raise ConfigError("train_batch_size must be at least 2 (mismatched captions come from the batch)")

    def _check_text(self) -> None:
        """How captions are read."""
        if self.text_components != AUTO and (not isinstance(self.text_components, int) or self.text_components < 0):
            raise ConfigError(f'text_components must be a count (0: all) or "auto", got {self.text_components!r}')
        if self.text_pooling is not None and self.text_pooling not in (*POOLINGS, ANCHORED):
            raise ConfigError(f"text_pooling must be one of {[*POOLINGS, ANCHORED]} (or unset: the family's own), got {self.text_pooling!r}")
        if self.text_pooling == ANCHORED and self.text_hidden_layer is not None:
            raise ConfigError('text_pooling "anchored" reads the input word embeddings, not a hidden layer: '
                              f"leave text_hidden_layer unset (got {self.text_hidden_layer})")
        if self.text_whiten and self.text_components == 0:
            raise ConfigError('text_whiten needs text_components (the directions to whiten): a count or "auto"')
        if self.text_anchor_temperature <= 0 or self.text_anchor_margin < 0:
            raise ConfigError("text_anchor_temperature must be positive and text_anchor_margin 0 (off) or more, got "
                              f"{self.text_anchor_temperature} and {self.text_anchor_margin}")

    def _check_terms(self) -> None:
        """The models' losses and what each needs."""
        if self.contrastive_weight > 0 and self.discriminator.contrastive_dim <= 0:
            raise ConfigError("contrastive_weight > 0 needs a discriminator contrastive head: set discriminator.contrastive_dim, e.g. 128")
        if self.image_contrastive_weight > 0 and self.contrastive_weight <= 0:
            raise ConfigError("image_contrastive_weight > 0 needs contrastive_weight > 0 (the head it uses is trained by that term)")
        for weight, folder in (("alignment_weight", "aligner_dir"), ("cycle_weight", "captioner_dir")):
            if getattr(self, weight) < 0:
                raise ConfigError(f"{weight} must be 0 (off) or positive, got {getattr(self, weight)}")
            if getattr(self, weight) > 0 and not getattr(self, folder):
                raise ConfigError(f"{weight} > 0 needs {folder}: the frozen model it uses")
        if self.kl_warmup_steps < 0 or self.free_bits < 0 or self.reconstruction_sigma <= 0:
            raise ConfigError("kl_warmup_steps and free_bits must be 0 or more, reconstruction_sigma positive")
        if self.condition_noise < 0:
            raise ConfigError(f"condition_noise must be 0 (off) or positive, got {self.condition_noise}")
        if self.reconstruction_weight < 0:
            raise ConfigError(f"reconstruction_weight must be 0 (off) or positive, got {self.reconstruction_weight}")
        if not 1 <= self.reconstruction_best_of <= 64:
            raise ConfigError(f"reconstruction_best_of must be 1 (off) to 64, got {self.reconstruction_best_of}")
        if self.latent_encoder_dims < 0 or self.latent_kl_weight < 0:
            raise ConfigError(f"latent_encoder_dims and latent_kl_weight must be 0 (off) or positive, got "
                              f"{self.latent_encoder_dims} and {self.latent_kl_weight}")
        if self.latent_encoder_dims > 0 and (self.reconstruction_weight <= 0 or self.reconstruction_best_of != 1):
            raise ConfigError("latent_encoder_dims > 0 teaches through the reconstruction term: it needs reconstruction_weight > 0 "
                              f"and reconstruction_best_of 1 (got {self.reconstruction_weight} and {self.reconstruction_best_of})")
        if self.generator.noise_codes and self.reconstruction_best_of != 2:
            raise ConfigError("generator.noise_codes are searched by the best-of reconstruction: they need reconstruction_best_of 2 "
                              f"(every code is then tried for each real image), got {self.reconstruction_best_of}")
        if self.diversity_weight < 0 or self.reconstruction_pool < 1:
            raise ConfigError(f"diversity_weight must be 0 (off) or positive and reconstruction_pool at least 1, got "
                              f"{self.diversity_weight} and {self.reconstruction_pool}")
        if self.diversity_target != AUTO and (isinstance(self.diversity_target, str) or self.diversity_target <= 0):
            raise ConfigError(f'diversity_target must be positive or "auto", got {self.diversity_target!r}')
        parse_policy(self.augment)
        if self.contrastive_temperature <= 0:
            raise ConfigError(f"contrastive_temperature must be positive, got {self.contrastive_temperature}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def model_configs(self, text_dim: int, sentences: torch.Tensor | None = None) -> tuple[GeneratorConfig, DiscriminatorConfig]:
        """Generator and discriminator configs with resolution and text size filled in;
        `sentences` (the training captions' embeddings) resolve text_components "auto"."""
        shared = {"resolution": self.resolution, "text_dim": text_dim, "text_components": self.resolved_text_components(sentences),
                  "text_whiten": self.text_whiten}
        generator = merge_config(self.generator, shared)
        discriminator = merge_config(self.discriminator, shared)
        return generator, discriminator

    def resolved_text_components(self, sentences: torch.Tensor | None) -> int:
        """text_components as a count: "auto" resolved from the training captions' embeddings."""
        if self.text_components != AUTO:
            return self.text_components
        if sentences is None:
            raise ConfigError('text_components "auto" needs the training captions\' embeddings')
        return significant_directions(sentences)

    def vae_config(self, text_dim: int, sentences: torch.Tensor | None = None) -> VAEConfig:
        return merge_config(self.vae, {"resolution": self.resolution, "text_dim": text_dim,
                                       "text_components": self.resolved_text_components(sentences), "text_whiten": self.text_whiten})

    def evaluator_config(self, text_dim: int, styles: tuple[str, ...] = ()) -> EvaluatorConfig:
        resolution = self.evaluator_resolution or self.resolution
        return merge_config(self.evaluator, {"resolution": resolution, "text_dim": text_dim, "styles": list(styles)})

    def aligner_config(self, text_dim: int) -> AlignerConfig:
        return merge_config(self.aligner, {"resolution": self.resolution, "text_dim": text_dim})

    def captioner_config(self, vocabulary: tuple[int, ...]) -> CaptionerConfig:
        return merge_config(self.captioner, {"resolution": self.resolution, "vocabulary": list(vocabulary)})


PRESETS = ("shapes", "emoji", "emoji-styles", "emoji-styles-32")
AUTO = "auto"
ANCHORED = "anchored"  # text_pooling: limner.text.AnchoredWordEncoder
BAG_OF_WORDS = "bag-of-words"  # text_encoder: limner.text.BagOfWordsEncoder
SIGNIFICANT = 0.05  # "auto" keeps directions whose singular value is at least this share of the largest


def significant_directions(sentences: torch.Tensor) -> int:
    """How many principal directions of the caption embeddings (N, D) carry real variation."""
    singular = torch.linalg.svdvals((sentences - sentences.mean(0)).double())
    return max(1, int((singular >= SIGNIFICANT * singular[0]).sum()))
MODELS = ("gan", "evaluator", "captioner", "aligner", "vae")


def load_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets are {list(PRESETS)}")
    return json.loads(resources.files("limner").joinpath(f"presets/{name}.json").read_text())


def build_train_config(preset: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    values: dict[str, Any] = load_preset(preset) if preset else {}
    config = config_from_dict(TrainConfig, values, where=f"preset {preset}" if preset else "TrainConfig")
    return merge_config(config, overrides or {})
