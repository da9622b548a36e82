"""The GAN's training configuration: its two networks, optimisation, loss terms, checkpoints,
validation and evaluation during training, over what every text-to-image kind shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from limner.config import merge_config
from limner.errors import ConfigError
from limner.models import DiscriminatorConfig, GeneratorConfig
from limner.training.augment import parse_policy
from limner.training.config import AUTO, GeneratorTrainConfig

MIXED_PRECISION = ("auto", "native", "bf16", "no")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class GANTrainConfig(GeneratorTrainConfig):
    kind: ClassVar[str | None] = "gan"
    model: str = "gan"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    # optimisation (DF-GAN: two time-scale Adam with beta1 = 0)
    learning_rate: float = 1e-4           # generator
    discriminator_learning_rate: float = 4e-4
    # both learning rates fall linearly from step learning_rate_decay[0] to step learning_rate_decay[1],
    # to learning_rate_floor times their value, and stay there (empty: constant). In steps, not minutes,
    # so that runs on machines of different speeds and resumed runs follow the same schedule
    learning_rate_decay: tuple[int, ...] = ()
    # or [start, end] in minutes of training (counted over resumes): a run capped by max_train_minutes
    # then ends its decay at its last step on a machine of any speed (budgeted training, Li et al. 2020),
    # at the price of runs no longer following one schedule step by step
    learning_rate_decay_minutes: tuple[float, ...] = ()
    learning_rate_floor: float = 0.1
    adam_beta1: float = 0.0
    adam_beta2: float = 0.9
    gp_weight: float = 2.0
    gp_power: float = 6.0
    # lazy regularisation (StyleGAN2): the penalty, and its second backward, on every gp_every-th
    # discriminator step only, at gp_every times the weight (1: every step)
    gp_every: int = 1
    ema_decay: float = 0.999
    contrastive_weight: float = 0.0       # image-text InfoNCE on the discriminator's head (needs contrastive_dim)
    contrastive_temperature: float = 0.1
    image_contrastive_weight: float = 0.0  # generated vs real images of the same caption (needs contrastive_weight > 0)
    reconstruction_weight: float = 0.0    # L1 between each generated image and the real image of its caption
    reconstruction_pool: int = 1          # the reconstruction term compares pool x pool cell means (1: pixels)
    # the reconstruction term forgives a move of up to this many pixels (the nearest placement of the
    # real image counts): outlines stay sharp while the place may vary within the data's jitter
    reconstruction_shift: int = 0
    # with reconstruction_shift: k > 1 tries the real image at every 1/k pixel too (moved through its
    # Fourier transform, so its edges stay sharp): a sample drawn between two pixels is no longer
    # pulled onto the pixel grid, so the place may vary continuously, as the data's jitter does
    reconstruction_subpixel: int = 1
    # with generator.noise_warp: the real image is moved by the warp each sample was drawn with before
    # the reconstruction term compares them, so the term teaches the drawing and leaves the placement
    # to the warp and the discriminator (it no longer pulls every sample back to one place)
    reconstruction_follows_warp: bool = False
    # K >= 2: K samples per caption, only the nearest is pulled (best-of-many). Beyond 2 the first
    # sample stays the plain draw the discriminator judges, and the nearest of K - 1 further draws is
    # found without gradients, then drawn again with them (IMLE's search): each real look of a caption
    # then has a sample near it, so the noise has to cover all of them, not their mean
    reconstruction_best_of: int = 1
    # with generator.noise_codes: a metadata column (e.g. "style") whose values the codes are tied to,
    # one code per value. A caption several images share is then drawn, for each image, from the code
    # of that image's value instead of the nearest code found by the search, so each code learns one
    # value's look and a prompt's images taken with the codes in turn show them all. Images without
    # the column are searched as before. "": the codes are found by the search alone
    noise_code_column: str = ""
    # which captions are tied: "shared" (those several images share; a styled caption keeps a drawn
    # code) or "all" (every labelled image, so the code always agrees with the style; a prompt that
    # names a value is then drawn from its code)
    noise_code_rows: str = "shared"
    # metadata columns, comma-separated (e.g. "style" or "style,concept"), whose values the discriminator
    # also learns to read from each real image (one auxiliary classifier head per column, AC-GAN), while
    # the generator is asked to draw them: each generated image whose value is known (every training
    # image of its caption has one value, or its noise code is tied to the value by noise_code_column)
    # is pulled towards being read as that value, with class_weight. "": off
    class_column: str = ""
    class_weight: float = 1.0
    # > 0: a training-only encoder reads each real image whose caption several images share and
    # proposes this many of the generator's noise entries for it; that sample is the one pulled
    # towards the image (see models/latent_encoder.py), so the noise learns to pick among a caption's looks
    latent_encoder_dims: int = 0
    latent_kl_weight: float = 0.01        # keeps the proposed noises distributed as the prior
    condition_noise: float = 0.0          # noise on the generator's caption embedding, in units of the captions' spread
    # the generator's noise must matter: each step draws the first half of the batch's captions a
    # second time from other noise and asks each pair to differ (see losses.diversity_loss)
    diversity_weight: float = 0.0
    # the diversity term is off before this step: the caption is learnt first, then the spread asked
    diversity_start_step: int = 0
    # how much (mean absolute pixel difference per unit of noise difference); "auto": what real
    # images sharing a caption show in the training data (estimate_diversity_target)
    diversity_target: float | str = "auto"
    # the diversity term compares pool x pool cell means (1: pixels): on coarse cells moving or resizing
    # an object changes the image and redrawing its outline hardly does
    diversity_pool: int = 1
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
    # the generator's and discriminator's step under bf16 autocast: "auto" on a GPU only, "native" on a
    # GPU and on CPUs with bf16 instructions (AVX512-BF16 or AMX, which run convolutions about 2x
    # faster), fp32 elsewhere; "bf16" everywhere (emulated, so slower, on other CPUs), "no" never
    mixed_precision: str = "auto"
    checkpointing_steps: int = 500
    checkpoints_total_limit: int = 2
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
    validation_steps: int = 500
    # evaluation during training (needs a trained evaluator, see `limner train --model evaluator`)
    evaluation_steps: int = 0             # every N steps: KID, FID and R-precision on a fixed test subset (0: off)
    evaluator_dir: str | None = None
    evaluation_images: int = 256
    best_metric: str = "kid_mean"         # the best model by this metric is kept in {output_dir}/best

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_schedule()
        self._check_terms()
        self._check_reconstruction()

    def _check_schedule(self) -> None:
        """Cadences, the learning-rate schedule and where it runs."""
        for name in ("checkpointing_steps", "validation_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.evaluation_steps < 0:
            raise ConfigError(f"evaluation_steps must be 0 (off) or positive, got {self.evaluation_steps}")
        if self.evaluation_steps > 0 and not self.evaluator_dir:
            raise ConfigError("evaluation_steps needs evaluator_dir: train one with `limner train --model evaluator`")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        decay = self.learning_rate_decay
        if decay and (len(decay) != 2 or not 0 <= decay[0] < decay[1]):
            raise ConfigError(f"learning_rate_decay must be empty (constant) or [start step, end step] with start < end, got {list(decay)}")
        minutes = self.learning_rate_decay_minutes
        if minutes and (len(minutes) != 2 or not 0 <= minutes[0] < minutes[1]):
            raise ConfigError(f"learning_rate_decay_minutes must be empty or [start minute, end minute] with start < end, got {list(minutes)}")
        if decay and minutes:
            raise ConfigError("set learning_rate_decay (in steps) or learning_rate_decay_minutes, not both")
        if not 0 <= self.learning_rate_floor <= 1:
            raise ConfigError(f"learning_rate_floor must be between 0 and 1, got {self.learning_rate_floor}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def _check_terms(self) -> None:
        """The loss terms and what each needs."""
        if self.contrastive_weight > 0 and self.discriminator.contrastive_dim <= 0:
            raise ConfigError("contrastive_weight > 0 needs a discriminator contrastive head: set discriminator.contrastive_dim, e.g. 128")
        if self.image_contrastive_weight > 0 and self.contrastive_weight <= 0:
            raise ConfigError("image_contrastive_weight > 0 needs contrastive_weight > 0 (the head it uses is trained by that term)")
        if self.contrastive_temperature <= 0:
            raise ConfigError(f"contrastive_temperature must be positive, got {self.contrastive_temperature}")
        if isinstance(self.gp_every, bool) or not isinstance(self.gp_every, int) or self.gp_every < 1:
            raise ConfigError(f"gp_every must be a whole number of steps, 1 or more (1: the penalty every step), got {self.gp_every!r}")
        for weight, folder in (("alignment_weight", "aligner_dir"), ("cycle_weight", "captioner_dir")):
            if getattr(self, weight) < 0:
                raise ConfigError(f"{weight} must be 0 (off) or positive, got {getattr(self, weight)}")
            if getattr(self, weight) > 0 and not getattr(self, folder):
                raise ConfigError(f"{weight} > 0 needs {folder}: the frozen model it uses")
        if self.condition_noise < 0:
            raise ConfigError(f"condition_noise must be 0 (off) or positive, got {self.condition_noise}")
        if self.diversity_weight < 0 or self.diversity_start_step < 0:
            raise ConfigError(f"diversity_weight and diversity_start_step must be 0 or positive, got {self.diversity_weight} "
                              f"and {self.diversity_start_step}")
        if self.diversity_pool < 1 or self.resolution % self.diversity_pool:
            raise ConfigError(f"diversity_pool must divide the resolution {self.resolution}, got {self.diversity_pool}")
        if self.diversity_target != AUTO and (isinstance(self.diversity_target, str) or self.diversity_target <= 0):
            raise ConfigError(f'diversity_target must be positive or "auto", got {self.diversity_target!r}')
        if self.class_weight < 0:
            raise ConfigError(f"class_weight must be 0 (off) or positive, got {self.class_weight}")
        columns = self.class_columns
        if self.class_column and (not all(columns) or len(set(columns)) != len(columns)):
            raise ConfigError(f"class_column must name distinct metadata columns separated by commas, got {self.class_column!r}")
        parse_policy(self.augment)

    def _check_reconstruction(self) -> None:
        """The reconstruction term and the ways of choosing which sample it pulls."""
        if not 0 <= self.reconstruction_shift <= self.resolution // 8:
            raise ConfigError(f"reconstruction_shift must be 0 (off) to an eighth of the resolution ({self.resolution // 8}), "
                              f"got {self.reconstruction_shift}")
        if not 1 <= self.reconstruction_subpixel <= 8 or (self.reconstruction_subpixel > 1 and self.reconstruction_shift == 0):
            raise ConfigError(f"reconstruction_subpixel must be 1 (whole pixels) to 8 phases per pixel, and above 1 needs "
                              f"reconstruction_shift > 0 (it refines the moves that forgives), got {self.reconstruction_subpixel} "
                              f"with reconstruction_shift {self.reconstruction_shift}")
        if self.reconstruction_weight < 0 or self.reconstruction_pool < 1:
            raise ConfigError(f"reconstruction_weight must be 0 (off) or positive and reconstruction_pool at least 1, got "
                              f"{self.reconstruction_weight} and {self.reconstruction_pool}")
        if self.reconstruction_follows_warp and not (self.generator.noise_warp > 0 and self.reconstruction_weight > 0
                                                     and self.reconstruction_best_of == 1 and self.latent_encoder_dims == 0):
            raise ConfigError("reconstruction_follows_warp moves each real image by its sample's warp: it needs generator.noise_warp > 0 "
                              "and reconstruction_weight > 0, with reconstruction_best_of 1 and no latent encoder (got "
                              f"{self.generator.noise_warp}, {self.reconstruction_weight}, {self.reconstruction_best_of}, "
                              f"{self.latent_encoder_dims})")
        if not 1 <= self.reconstruction_best_of <= 64:
            raise ConfigError(f"reconstruction_best_of must be 1 (off) to 64, got {self.reconstruction_best_of}")
        if self.latent_encoder_dims < 0 or self.latent_kl_weight < 0:
            raise ConfigError(f"latent_encoder_dims and latent_kl_weight must be 0 (off) or positive, got "
                              f"{self.latent_encoder_dims} and {self.latent_kl_weight}")
        if self.latent_encoder_dims > 0 and (self.reconstruction_weight <= 0 or self.reconstruction_best_of != 1):
            raise ConfigError("latent_encoder_dims > 0 teaches through the reconstruction term: it needs reconstruction_weight > 0 "
                              f"and reconstruction_best_of 1 (got {self.reconstruction_weight} and {self.reconstruction_best_of})")
        if self.noise_code_rows not in ("shared", "all"):
            raise ConfigError(f'noise_code_rows must be "shared" or "all", got {self.noise_code_rows!r}')
        if self.noise_code_column and not self.generator.noise_codes:
            raise ConfigError(f"noise_code_column {self.noise_code_column!r} ties the generator's noise codes to a column: "
                              "it needs generator.noise_codes, one per value of the column")
        if self.generator.noise_codes and self.reconstruction_best_of != 2:
            raise ConfigError("generator.noise_codes are searched by the best-of reconstruction: they need reconstruction_best_of 2 "
                              f"(every code is then tried for each real image), got {self.reconstruction_best_of}")

    @property
    def class_columns(self) -> tuple[str, ...]:
        """The columns of class_column, in order (() when off)."""
        return tuple(column.strip() for column in self.class_column.split(",")) if self.class_column.strip() else ()

    def model_configs(self, text_dim: int, sentences: torch.Tensor | None = None) -> tuple[GeneratorConfig, DiscriminatorConfig]:
        """Generator and discriminator configs with resolution and text size filled in;
        `sentences` (the training captions' embeddings) resolve text_components "auto"."""
        shared = self.text_settings(text_dim, sentences)
        return merge_config(self.generator, shared), merge_config(self.discriminator, shared)
