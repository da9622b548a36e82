"""The GAN trainer: builds data, text encoder and models, then runs the step loop.

It only orchestrates (schedule, logging, validation grids, checkpoints); the
math lives in `gan_step` and `losses`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from limner.config import save_config_json
from limner.data import ImageFolder
from limner.data import shapes
from limner.errors import ConfigError, DataError
from limner.metrics import shapes_accuracy
from limner.models import Discriminator, Generator, LatentEncoder, LatentEncoderConfig
from limner.pipelines import TextToImagePipeline
from limner.text import TextEncoder
from limner.text.prompts import vocabulary_of
from limner.training.checkpoint import (
    CheckpointPosition, load_checkpoint, prune_checkpoints, resolve_checkpoint, save_checkpoint, set_aside_checkpoints,
)
from limner.training.augment import diff_augment, parse_policy
from limner.training.config import AUTO
from limner.training.gan_config import GANTrainConfig
from limner.training.data import (
    CaptionedImages, StreamingCaptionedImages, caption_labels, column_codes, estimate_diversity_target, load_training_data, resolve_data_dir, shared_captions,
)
from limner.training.distributed import DistributedContext
from limner.training.loop import NullWriter, StepLoop, tensorboard_writer
from limner.training.gan_step import GANBatch, GANModels, GANOptimizers, Guides, gan_train_step, other_codes, tie_codes
from limner.utils.images import make_grid, save_png

log = logging.getLogger("limner.train")


def uses_bf16(mixed_precision: str, device: torch.device) -> bool:
    """Whether the step runs under bf16 autocast (GANTrainConfig.mixed_precision)."""
    if mixed_precision == "native":
        return device.type == "cuda" or cpu_has_bf16()
    return mixed_precision == "bf16" or (mixed_precision == "auto" and device.type == "cuda")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    train_seconds: float
    images_per_second: float
    last_losses: dict[str, float] = field(default_factory=dict)
    scores: dict | None = None
    interrupted: bool = False


class Trainer:
    def __init__(self, config: GANTrainConfig, *, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.output_dir = Path(config.output_dir)
        self.checkpoint_root = self.output_dir / "checkpoints"
        torch.manual_seed(config.seed)
        self.sampler_rng = torch.Generator().manual_seed(config.seed)
        self.data_dir = resolve_data_dir(config)
        self.dist = DistributedContext.from_environment(config.device)
        self.dist.part(config.train_batch_size)  # refuses a global batch the processes cannot share
        if config.mixed_precision == "bf16" and self.dist.device.type == "cpu" and not cpu_has_bf16():
            log.warning("mixed_precision bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 runs emulated "
                        "and likely slower than fp32; mixed_precision \"no\" avoids it")
        self.bf16 = uses_bf16(config.mixed_precision, self.dist.device)  # decided once: the CPU check is not for every step
        if self.bf16:
            log.info("the step runs under bf16 autocast on %s (mixed_precision %s); weights stay fp32",
                     self.dist.device.type, config.mixed_precision)
        self.text_encoder, self.data = self._load_data()
        # which captions several training images share (an imagefolder in memory only: shards do not say)
        self.shared_caption = shared_captions(self.data) if isinstance(self.data, CaptionedImages) else None
        self.code_names, self.image_codes = self._code_labels()
        self.class_names, self.image_classes, self.caption_classes = self._class_labels()
        self.training_words = vocabulary_of(self.data.captions)  # saved with the model: prompts that share none get a warning
        self.validation_prompts = list(config.validation_prompts) or self._default_prompts()
        self.models = self._build_models()
        self.guides, self.caption_tokens = self._load_guides()
        self.optimizers = self._build_optimizers()
        self.step, self.minutes_before = self._maybe_resume()  # minutes: trained before this process, over resumes
        self.loop: StepLoop | None = None  # the running loop, which times this process's training
        self.training_evaluator = self._build_training_evaluator()
        self.diversity_target = self._diversity_target()
        self.augment_policy = parse_policy(config.augment)

    def _load_data(self) -> tuple[TextEncoder, CaptionedImages]:
        text_encoder, data, self.skipped = load_training_data(self.config, self.data_dir, progress=self.progress)
        return text_encoder, data

    def _code_labels(self) -> tuple[tuple[str, ...], torch.Tensor | None]:
        """With noise_code_column: the column's values (one per noise code) and each training image's
        code (-1: no value); else ((), None)."""
        column, codes = self.config.noise_code_column, self.config.generator.noise_codes
        if not column:
            return (), None
        self._require_metadata_in_memory("noise_code_column")
        names, image_codes = column_codes(self.data, column)
        if len(names) != codes:
            raise ConfigError(f"noise_code_column {column!r} has {len(names)} values ({', '.join(names)}) but generator.noise_codes "
                              f"is {codes}: set noise_codes to {len(names)}")
        log.info("noise codes tied to %r: %s; %d of %d images have no value and are searched",
                 column, ", ".join(names), int((image_codes < 0).sum()), len(image_codes))
        return names, image_codes

    def _require_metadata_in_memory(self, option: str) -> None:
        if not isinstance(self.data, CaptionedImages):
            raise ConfigError(f"{option} reads each image's metadata from an imagefolder held in memory; with shards leave it empty")

    def _class_labels(self) -> tuple[tuple[tuple[str, ...], ...], torch.Tensor | None, torch.Tensor | None]:
        """With class_column: each column's values, each training image's value of each (N, H; -1:
        none) and each caption's (U, H; -1: its images differ or have none); else ((), None, None)."""
        columns = self.config.class_columns
        if not columns:
            return (), None, None
        self._require_metadata_in_memory("class_column")
        names, image_classes, caption_classes = [], [], []
        for column in columns:
            values, labels = column_codes(self.data, column, option="class_column")
            if len(values) < 2:
                raise ConfigError(f"class_column {column!r} has one value ({values[0]}): a class head needs at least two")
            names.append(values)
            image_classes.append(labels)
            caption_classes.append(caption_labels(self.data, labels))
            log.info("class head on %r: %d values; %d of %d captions name one", column, len(values),
                     int((caption_classes[-1] >= 0).sum()), len(caption_classes[-1]))
        return tuple(names), torch.stack(image_classes, 1), torch.stack(caption_classes, 1)

    def _build_models(self) -> GANModels:
        generator_config, discriminator_config = self.config.model_configs(self.text_encoder.dim, self.data.sentence_table)
        if self.class_names:
            discriminator_config = dataclasses.replace(discriminator_config, classes=tuple(len(values) for values in self.class_names))
        if self.code_names:
            generator_config = dataclasses.replace(generator_config, noise_code_names=self.code_names,
                                                   code_from_prompt=self.config.noise_code_rows == "all")
        generator, discriminator = Generator(generator_config), Discriminator(discriminator_config)
        generator.text_norm.fit(self.data.sentence_table)
        discriminator.text_norm.fit(self.data.sentence_table)
        # channels-last convolutions: on a CPU the generator's steps ran 1.15x and the discriminator's
        # plain passes 1.3x faster at 64 px (saved weights are made contiguous again, see modeling.py)
        generator, discriminator = (model.to(self.dist.device, memory_format=torch.channels_last) for model in (generator, discriminator))
        ema = copy.deepcopy(generator).eval().requires_grad_(False)
        return GANModels(generator, discriminator, ema, self._build_latent_encoder(generator_config.noise_dim))

    def _build_latent_encoder(self, noise_dim: int) -> LatentEncoder | None:
        """The training-only latent encoder (latent_encoder_dims > 0)."""
        dims = self.config.latent_encoder_dims
        if dims == 0:
            return None
        if dims > noise_dim:
            raise ConfigError(f"latent_encoder_dims ({dims}) cannot exceed the generator's noise_dim ({noise_dim})")
        if not isinstance(self.data, CaptionedImages):
            raise ConfigError("latent_encoder_dims reads which captions several images share from an imagefolder held in memory; "
                              "with shards leave it 0")
        log.info("latent encoder: %d noise entries; %d of %d captions are shared by several images",
                 dims, int(self.shared_caption.sum()), len(self.shared_caption))
        return LatentEncoder(LatentEncoderConfig(latent_dims=dims)).to(self.dist.device)

    def _load_guides(self) -> tuple[Guides | None, torch.Tensor | None]:
        """The frozen aligner and captioner of the bidirectional terms, if their weights are on,
        and the captioner's tokens of every training caption."""
        config = self.config
        if not (config.alignment_weight > 0 or config.cycle_weight > 0):
            return None, None
        from limner.pipelines.dual_encoder import DualEncoderPipeline
        from limner.pipelines.image_to_text import ImageToTextPipeline

        guides, tokens = Guides(alignment_weight=config.alignment_weight, cycle_weight=config.cycle_weight), None
        if config.alignment_weight > 0:
            aligner = DualEncoderPipeline.from_pretrained(config.aligner_dir, role="aligner")
            if aligner.text_encoder.config() != self.text_encoder.config():
                raise ConfigError(f"{config.aligner_dir}: the aligner reads captions with {aligner.text_encoder.config()}, the generator with "
                                  f"{self.text_encoder.config()}; train the aligner with the generator's text encoder settings")
            guides.aligner = aligner.model.to(self.dist.device).eval().requires_grad_(False)
        if config.cycle_weight > 0:
            captioner = ImageToTextPipeline.from_pretrained(config.captioner_dir)
            tokens = captioner.vocabulary.encode(self.data.captions, captioner.captioner.config.max_length)
            guides.captioner = captioner.captioner.to(self.dist.device).eval().requires_grad_(False)
        return guides, tokens

    def _diversity_target(self) -> float:
        """The pixel spread per unit of noise that the diversity term asks for ("auto": the training data's)."""
        config = self.config
        if config.diversity_weight <= 0:
            return 0.0
        if config.diversity_target != AUTO:
            return float(config.diversity_target)
        if not isinstance(self.data, CaptionedImages):
            raise ConfigError('diversity_target "auto" reads an imagefolder held in memory; with shards give a number, e.g. 0.05')
        noise_distance = 2 / math.sqrt(math.pi)  # E|a - b| for independent standard normals
        target = estimate_diversity_target(self.data, seed=config.seed, pool=config.diversity_pool) / noise_distance
        log.info("diversity target %.4f (real images sharing a caption differ by %.4f per pixel)", target, target * noise_distance)
        return target

    def _build_optimizers(self) -> GANOptimizers:
        betas = (self.config.adam_beta1, self.config.adam_beta2)
        generator_params = list(self.models.generator.parameters())
        if self.models.latent_encoder is not None:  # trained with the generator, by the same terms
            generator_params += list(self.models.latent_encoder.parameters())
        return GANOptimizers(
            torch.optim.Adam(generator_params, lr=self.config.learning_rate, betas=betas),
            torch.optim.Adam(self.models.discriminator.parameters(), lr=self.config.discriminator_learning_rate, betas=betas),
        )

    def _maybe_resume(self) -> CheckpointPosition:
        if not self.config.resume_from_checkpoint:
            aside = set_aside_checkpoints(self.checkpoint_root) if self.dist.is_main else None
            if aside is not None:
                log.warning("starting afresh: the checkpoints of an earlier run in %s moved to %s "
                            "(to continue that run instead, pass --resume-from-checkpoint latest)", self.checkpoint_root, aside)
            return CheckpointPosition(0, 0.0)
        checkpoint = resolve_checkpoint(self.checkpoint_root, self.config.resume_from_checkpoint)
        if checkpoint is None:
            return CheckpointPosition(0, 0.0)
        position = load_checkpoint(checkpoint, self.models, self.optimizers, self.sampler_rng)
        log.info("resumed from %s at step %d (%.1f minutes trained)", checkpoint, position.step, position.trained_minutes)
        return position

    def _default_prompts(self) -> list[str]:
        try:
            return ImageFolder(self.data_dir, "test").captions[:6]
        except DataError:  # no usable test split: show training captions
            return self.data.captions[:6]

    def pipeline(self) -> TextToImagePipeline:
        ema = self.models.ema if self.dist.device.type == "cpu" else copy.deepcopy(self.models.ema).cpu()
        return TextToImagePipeline(ema, self.text_encoder, truncation=self.config.truncation, training_words=self.training_words)

    def train(self) -> TrainResult:
        config, main = self.config, self.dist.is_main
        if main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config_json(config, self.output_dir / "training_config.json")
        writer = tensorboard_writer(self.output_dir / "logs") if main else NullWriter()
        start_step = self.step
        loop = StepLoop(max_steps=config.max_train_steps, max_minutes=config.max_train_minutes, name="training",
                        progress=self.progress and main, logging_steps=config.logging_steps, start_step=start_step,
                        shown=("d_loss", "g_loss", "gp"), writer=writer, stop_everywhere=self.dist.any)
        self.loop = loop
        ran = loop.run(self._train_one_step, after_step=lambda step: self._after_step(step, writer))
        self.step = ran.steps
        if ran.interrupted:
            log.warning("interrupted at step %d: saving a checkpoint before stopping", self.step)
        scores = None
        if main:
            self._checkpoint()
            self._save_model()
            self._validate(writer, final=True)
            writer.close()
            scores = self._final_scores()
        self.dist.close()
        return TrainResult(
            output_dir=self.output_dir,
            steps=self.step,
            train_seconds=ran.seconds,
            images_per_second=ran.steps_per_second(start_step) * config.train_batch_size,
            last_losses=ran.last_losses,
            scores=scores,
            interrupted=ran.interrupted,
        )

    def _save_model(self) -> None:
        self.pipeline().save_pretrained(self.output_dir)

    def _after_step(self, step: int, writer) -> None:
        """Validation grids, evaluation and checkpoints on their cadences (the main process only)."""
        self.step = step
        config = self.config
        if not self.dist.is_main:
            return
        if step % config.validation_steps == 0:
            self._validate(writer)
        if config.evaluation_steps and step % config.evaluation_steps == 0:
            self._evaluate(writer)
        if step % config.checkpointing_steps == 0:
            self._checkpoint()

    def _train_one_step(self) -> dict[str, float]:
        batch, _, _ = self._sample_batch()
        return self._run_step(batch)

    def _sample_batch(self) -> tuple[GANBatch, torch.Tensor, torch.Tensor]:
        """The step's batch, and the caption ids (into self.data.captions) of its images and of
        their mismatched captions. Every process draws the whole global batch from the shared
        sampler and keeps its slice (streamed shards: its own shards' samples), so any number of
        processes takes the same steps."""
        config, rng, part = self.config, self.sampler_rng, self.dist.part(self.config.train_batch_size)
        index = None  # the images' indices into self.data, where it holds them
        if isinstance(self.data, CaptionedImages):
            index, images, own, other = (t[part] for t in self.data.sample_indexed(config.train_batch_size, rng))
        elif self.dist.world_size > 1:
            images, own, other = self.data.sample_ids(part.stop - part.start, rng)
        else:
            images, own, other = (t[part] for t in self.data.sample_ids(config.train_batch_size, rng))
        sentence, mismatched = self.data.sentence_table[own], self.data.sentence_table[other]
        noise = torch.randn(config.train_batch_size, self.models.generator.config.noise_dim, generator=rng)[part]
        device = self.dist.device
        batch = GANBatch(images=images.to(device), sentence=sentence.to(device), mismatched=mismatched.to(device), noise=noise.to(device))
        if config.condition_noise > 0:
            # conditioning augmentation: the generator must draw a caption's image from anywhere
            # near its embedding, so a new wording that lands nearby still draws the right thing
            shape = (config.train_batch_size, sentence.shape[1])
            offsets = self.models.generator.text_norm.noise_like(torch.empty(shape), config.condition_noise, rng)[part]
            batch.generator_sentence = batch.sentence + offsets.to(device)
        if self.caption_tokens is not None:
            batch.caption_tokens = self.caption_tokens[own].to(device)
        whole_batch = config.reconstruction_best_of >= 2 or config.latent_encoder_dims > 0  # a second sample for every caption
        if config.diversity_weight > 0 or whole_batch:
            pair_noise = torch.randn(config.train_batch_size, noise.shape[1], generator=rng)[part]
            pairs = pair_noise.shape[0] if whole_batch else max(1, pair_noise.shape[0] // 2)
            batch.pair_noise = pair_noise[:pairs].to(device)
        codes = self.models.generator.config.noise_codes
        if codes and config.reconstruction_best_of == 2:
            batch.search_noise = other_codes(batch.pair_noise, codes)  # every code is tried: multiple-choice learning
            if self.shared_caption is not None:  # a caption with one image has one look: nothing to choose among
                batch.search_rows = self.shared_caption[own].to(device)
        elif config.reconstruction_best_of > 2:
            shape = (config.reconstruction_best_of - 2, config.train_batch_size, noise.shape[1])
            batch.search_noise = torch.randn(shape, generator=rng)[:, part].to(device)
        tied = None
        if self.image_codes is not None:
            rows = self.shared_caption[own] if config.noise_code_rows == "shared" else torch.ones(len(own), dtype=torch.bool)
            tied = tie_codes(batch, self.image_codes[index].to(device), rows.to(device), codes)
        if self.image_classes is not None:
            self._label_classes(batch, index, own, tied)
        if self.models.latent_encoder is not None:
            batch.shared_caption = self.shared_caption[own].to(device)
        policy = self.augment_policy
        if policy:
            seed = int(torch.randint(2**62, (1,), generator=rng))  # one draw per step: real and fake get alike transforms
            batch.augment = lambda images: diff_augment(images, policy, torch.Generator().manual_seed(seed))
        return batch, own, other

    def _label_classes(self, batch: GANBatch, index: torch.Tensor, own: torch.Tensor, tied: torch.Tensor | None) -> None:
        """The class heads' labels (B, H): each real image's values, and the values each generated image
        should show: its caption's, or, in the column its code is tied to, its real image's."""
        device = self.dist.device
        batch.class_labels = self.image_classes[index].to(device)
        batch.fake_class_labels = self.caption_classes[own].to(device)
        columns = self.config.class_columns
        if tied is not None and self.config.noise_code_column in columns:
            column = columns.index(self.config.noise_code_column)
            batch.fake_class_labels[:, column] = torch.where(tied, batch.class_labels[:, column], batch.fake_class_labels[:, column])

    def _run_step(self, batch: GANBatch) -> dict[str, float]:
        config, device = self.config, self.dist.device
        self._set_learning_rates()
        # EMA warm-up: early weights are noise, so the average starts short and lengthens.
        ema_decay = min(config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return gan_train_step(
                self.models, self.optimizers, batch,
                gp_weight=self.penalty_weight(), gp_power=config.gp_power, ema_decay=ema_decay,
                contrastive_weight=config.contrastive_weight, contrastive_temperature=config.contrastive_temperature,
                image_contrastive_weight=config.image_contrastive_weight,
                reconstruction_weight=config.reconstruction_weight, reconstruction_pool=config.reconstruction_pool,
                reconstruction_shift=config.reconstruction_shift, reconstruction_subpixel=config.reconstruction_subpixel,
                reconstruction_follows_warp=config.reconstruction_follows_warp,
                reconstruction_best_of_two=config.reconstruction_best_of >= 2,
                diversity_weight=config.diversity_weight if self.step >= config.diversity_start_step else 0.0,
                diversity_target=self.diversity_target, diversity_pool=config.diversity_pool,
                latent_kl_weight=config.latent_kl_weight,
                class_weight=config.class_weight, sync_gradients=self.dist.average_gradients, guides=self.guides,
            )

    def penalty_weight(self) -> float:
        """The matching-aware penalty's weight this step: gp_every times gp_weight on every gp_every-th
        step, 0 (no penalty) on the others."""
        every = self.config.gp_every
        return self.config.gp_weight * every if self.step % every == 0 else 0.0

    def trained_minutes(self) -> float:
        """Wall-clock minutes of training so far, counting those before a resume."""
        return self.minutes_before + (self.loop.elapsed() / 60 if self.loop is not None else 0.0)

    def _set_learning_rates(self) -> None:
        config = self.config
        if config.learning_rate_decay_minutes:
            factor = decayed_factor(self.trained_minutes(), config.learning_rate_decay_minutes, config.learning_rate_floor)
        else:
            factor = decayed_factor(self.step, config.learning_rate_decay, config.learning_rate_floor)
        for optimizer, base in ((self.optimizers.generator, config.learning_rate),
                                (self.optimizers.discriminator, config.discriminator_learning_rate)):
            for group in optimizer.param_groups:
                group["lr"] = base * factor

    def _validate(self, writer, *, final: bool = False) -> None:
        n = self.config.validation_images_per_prompt
        images = self.pipeline()(self.validation_prompts, num_images_per_prompt=n, seed=self.config.seed)
        grid = make_grid(images, n, row_labels=self.validation_prompts, scale=max(1, 96 // self.config.resolution))
        name = "samples.png" if final else f"validation/step-{self.step:06d}.png"
        save_png(grid, self.output_dir / name, {"prompts": json.dumps(self.validation_prompts), "seed": self.config.seed, "step": self.step})
        writer.add_image("validation", torch.from_numpy(np.array(grid)).permute(2, 0, 1), self.step)

    def _build_training_evaluator(self):
        if not self.config.evaluation_steps:
            return None
        from limner.evaluation.during_training import TrainingEvaluator

        evaluator = TrainingEvaluator(self.config.evaluator_dir, self.data_dir, self.config.resolution,
                                      images=self.config.evaluation_images, metric=self.config.best_metric, seed=self.config.seed)
        best_file = self.output_dir / "best" / "best.json"
        if self.step and best_file.is_file():  # resumed: the best so far still stands
            evaluator.best = json.loads(best_file.read_text())[self.config.best_metric]
        return evaluator

    def _evaluate(self, writer) -> None:
        from limner.evaluation.during_training import save_best

        figures = self.training_evaluator.figures(self.pipeline())
        for name, value in figures.items():
            writer.add_scalar(f"eval/{name}", value, self.step)
        if self.training_evaluator.is_best(figures):
            save_best(self.output_dir, self.pipeline(), self.step, figures, self.config.best_metric)
            log.info("step %d: best %s so far (%.4f), saved to %s", self.step, self.config.best_metric, figures[self.config.best_metric], self.output_dir / "best")

    def _final_scores(self) -> dict | None:
        return held_out_scores(self.pipeline(), self.data_dir, self.output_dir, steps=self.step, seed=self.config.seed)

    def _checkpoint(self) -> None:
        save_checkpoint(self.checkpoint_root, self.step, self.models, self.optimizers, self.sampler_rng, trained_minutes=self.trained_minutes())
        prune_checkpoints(self.checkpoint_root, self.config.checkpoints_total_limit)


def decayed_factor(position: float, decay: tuple[float, ...], floor: float) -> float:
    """1 before decay[0], falling linearly to `floor` at decay[1] and after; 1 throughout without a decay.
    `position` and `decay` in one unit: steps, or minutes."""
    if not decay:
        return 1.0
    start, end = decay
    progress = min(1.0, max(0.0, (position - start) / (end - start)))
    return 1.0 - (1.0 - floor) * progress


def held_out_scores(pipe: TextToImagePipeline, data_dir: Path, output_dir: Path, *, steps: int, seed: int) -> dict | None:
    """For the shapes dataset: the judge's accuracy on held-out compositions, also written to scores.json."""
    info_path = data_dir / "dataset_info.json"
    if not info_path.is_file() or json.loads(info_path.read_text()).get("name") != "shapes":
        return None
    targets = [(c.caption, c) for c in shapes.held_out_compositions()]
    scores = shapes_accuracy(pipe, targets, images_per_caption=10, seed=seed)
    report = {"split": "held-out compositions", "images_per_caption": 10, "steps": steps, **scores}
    (output_dir / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    return scores


def train(config: GANTrainConfig, *, progress: bool = True) -> TrainResult:
    return Trainer(config, progress=progress).train()
