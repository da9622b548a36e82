"""Adapting a trained text-to-image GAN to new images: `limner finetune`.

    limner finetune outputs/emoji-styles --train-data-dir my-icons --method lora --lora-rank 8 --output-dir outputs/my-look

The run is the base model's own GAN training (its config, its loss terms) on the new data,
starting from the base: the generator from the base's saved (averaged) weights, the
discriminator from the base's latest checkpoint. With `method="lora"` the base generator stays
frozen and only low-rank adapters train (limner.models.lora); the output folder then holds the
adapter alone, in the PEFT layout, loaded onto the base with `pipe.load_lora(folder)`. With
`method="full"` every weight trains and the output is a whole model folder.

Prior preservation (`preservation_weight`, on by default for lora and full): every step also draws
captions of the base's own training data and pulls the adapted generator's pictures of them
towards the frozen base's, from the same noise, so that what the new images are not about (the
other styles, the other concepts) stays as the base drew it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from limner.config import config_from_dict, config_to_dict, merge_config, read_config_file
from limner.errors import ConfigError, DataError, ModelLoadError
from limner.models import Discriminator, Generator
from limner.models import lora
from limner.text import load_text_encoder
from limner.text.learned_words import LEARNED_WORDS
from limner.training.checkpoint import CheckpointPosition, latest_good_checkpoint
from limner.data import ImageFolder
from limner.training.data import load_training_data, resolve_data_dir
from limner.training.losses import preservation_loss
from limner.training.gan_config import GANTrainConfig
from limner.training.gan_step import GANModels, GANOptimizers
from limner.training.presets import load_train_config
from limner.training.trainer import Trainer, TrainResult

log = logging.getLogger("limner.finetune")

METHODS = ("lora", "full", "textual-inversion")
INVERSION_LEARNING_RATE = 5e-3  # the learned word's default: one vector moves faster than a network
FINETUNE_INFO = "finetune.json"  # what the run trained, how many parameters, how long: beside the adapter
# the base's settings a fine-tune does not carry over: its schedule, its resuming, and the helpers of
# its own training; a fine-tune's budget is minutes
NOT_CARRIED = {
    "resume_from_checkpoint": None, "validation_prompts": (), "learning_rate_decay": (), "learning_rate_decay_minutes": (),
    "evaluation_steps": 0, "evaluator_dir": None, "latent_encoder_dims": 0, "alignment_weight": 0.0, "aligner_dir": None, "cycle_weight": 0.0,
    "captioner_dir": None, "max_train_steps": 100_000, "max_train_minutes": 5.0,
}


@dataclass
class FinetuneConfig(GANTrainConfig):
    kind: ClassVar[str | None] = "finetune"
    model: str = "finetune"
    base_model_dir: str = ""
    method: str = "lora"                   # lora: adapters on a frozen generator; full: every weight
    lora_rank: int = 8
    lora_alpha: float | None = None        # None: the rank (a scale of 1)
    lora_discriminator: bool = False       # adapters on the discriminator too, instead of training all of it
    token: str = ""                        # textual-inversion: the new word the captions use, e.g. "<my-style>"
    initializer_word: str = "style"        # textual-inversion: the learned word starts at this word's embedding
    # lora and full: L1 towards the frozen base's pictures of the base's own captions (0: off), on
    # this many of them (drawn once, seeded) and this many images a step
    preservation_weight: float = 10.0
    preservation_captions: int = 2000
    preservation_batch_size: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.base_model_dir:
            raise ConfigError("finetune needs base_model_dir: a model folder written by `limner train`")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        if self.lora_rank < 1:
            raise ConfigError(f"lora_rank must be at least 1, got {self.lora_rank}")
        if self.resume_from_checkpoint:
            raise ConfigError("a fine-tune does not resume; it is minutes long: run it again")
        if self.preservation_weight < 0 or self.preservation_captions < 1 or self.preservation_batch_size < 1:
            raise ConfigError("preservation_weight must be 0 (off) or positive, preservation_captions and preservation_batch_size "
                              f"at least 1; got {self.preservation_weight}, {self.preservation_captions}, {self.preservation_batch_size}")
        if self.method == "textual-inversion" and not self.token.strip():
            raise ConfigError('textual-inversion needs token: the new word your captions use, e.g. "<my-style>"')


def finetune_config(base_model_dir: str | Path, overrides: dict) -> FinetuneConfig:
    """The base's own training config (its training_config.json), without what belongs to its run
    (NOT_CARRIED), under `overrides` (the new data, the output folder, the method, budgets)."""
    base = Path(base_model_dir)
    path = base / "training_config.json"
    if not (base / "model_index.json").is_file():
        raise ModelLoadError(f"{base}: no model_index.json; the base must be a model folder written by `limner train`")
    if not path.is_file():
        raise ModelLoadError(f"{base}: no training_config.json, so how it was trained is unknown; fine-tuning starts from a GAN's own folder")
    saved = _saved_config(path)
    if not isinstance(saved, GANTrainConfig):
        raise ConfigError(f"{base} holds a {saved.model}; finetune adapts text-to-image GANs")
    if not overrides.get("output_dir"):
        raise ConfigError("finetune needs an output folder (--output-dir), not the base's")
    if Path(overrides["output_dir"]).resolve() == base.resolve():
        raise ConfigError(f"--output-dir {overrides['output_dir']} is the base's own folder: the fine-tune goes elsewhere")
    values = {**config_to_dict(saved), **NOT_CARRIED, "model": "finetune", "base_model_dir": str(base), "output_dir": overrides["output_dir"]}
    if overrides.get("method") == "textual-inversion":
        values["learning_rate"] = INVERSION_LEARNING_RATE
    return merge_config(config_from_dict(FinetuneConfig, values, where=str(path)), overrides)


def _saved_config(path: Path):
    """A base's training config: any kind's, or a fine-tune's (a whole model from --method full)."""
    values = read_config_file(path)
    if values.get("model") == "finetune":
        return config_from_dict(FinetuneConfig, values, where=str(path))
    return load_train_config(path)


class FinetuneTrainer(Trainer):
    """The GAN trainer started from a base model, training adapters or every weight, saving the
    adapter (or the model) as its output."""

    config: FinetuneConfig

    def _load_data(self):
        """The new images, read with the base's own text encoder (the generator knows no other)."""
        text_encoder, data, self.skipped = load_training_data(self.config, self.data_dir, progress=self.progress,
                                                              text_encoder=self._base_text_encoder())
        return text_encoder, data

    def _base_text_encoder(self):
        base = Path(self.config.base_model_dir)
        return load_text_encoder(json.loads((base / "text_encoder" / "config.json").read_text()))

    def _build_models(self) -> GANModels:
        base = Path(self.config.base_model_dir)
        generator = Generator.from_pretrained(base / "generator")
        if generator.config.resolution != self.config.resolution:
            raise ConfigError(f"the base draws at {generator.config.resolution} px; finetune at that resolution, not {self.config.resolution}")
        checkpoint = latest_good_checkpoint(base / "checkpoints")
        if checkpoint is not None:
            discriminator = Discriminator.from_pretrained(checkpoint / "discriminator")
        else:
            log.warning("%s has no checkpoint: the discriminator starts from scratch", base)
            discriminator = Discriminator(self.config.model_configs(self.text_encoder.dim, self.data.sentence_table)[1])
            discriminator.text_norm.fit(self.data.sentence_table)
        generator.train(), discriminator.train()
        self.base_parameters = sum(p.numel() for p in generator.parameters())
        self.preserved = self._preserved_captions() if self._preserving() else None
        self.base_generator = copy.deepcopy(generator).eval().requires_grad_(False).to(self.dist.device) if self._preserving() else None
        if self.config.method == "lora":
            self.lora_config = lora.add_lora(generator, rank=self.config.lora_rank, alpha=self.config.lora_alpha)
            if self.config.lora_discriminator:
                lora.add_lora(discriminator, rank=self.config.lora_rank, alpha=self.config.lora_alpha)
        generator, discriminator = (m.to(self.dist.device, memory_format=torch.channels_last) for m in (generator, discriminator))
        ema = copy.deepcopy(generator).eval().requires_grad_(False)
        return GANModels(generator, discriminator, ema)

    def _preserving(self) -> bool:
        return self.config.preservation_weight > 0 and self.config.method != "textual-inversion"

    def _preserved_captions(self) -> torch.Tensor:
        """(N, D): embeddings of up to preservation_captions captions of the base's training data."""
        base = Path(self.config.base_model_dir)
        data_dir = resolve_data_dir(_saved_config(base / "training_config.json"))
        try:
            captions = sorted({caption for record in ImageFolder(data_dir, "train").records for caption in record.captions})
        except (OSError, DataError) as err:
            raise ConfigError(f"prior preservation reads the base's own training captions from {data_dir}, which cannot be read "
                              f"({err}); put the data back, or turn it off with preservation_weight 0") from err
        chosen = torch.randperm(len(captions), generator=torch.Generator().manual_seed(self.config.seed))[: self.config.preservation_captions]
        log.info("prior preservation on %d of the base's %d training captions (%s)", len(chosen), len(captions), data_dir)
        with torch.no_grad():
            return torch.cat([self.text_encoder.encode([captions[i] for i in chosen[start : start + 256].tolist()]).sentence
                              for start in range(0, len(chosen), 256)])

    def _train_one_step(self) -> dict[str, float]:
        logs = super()._train_one_step()
        if self.preserved is not None:
            logs["preserve"] = self._preservation_step()
        return logs

    def _preservation_step(self) -> float:
        """One generator update towards the frozen base's pictures of the base's own captions."""
        rng, device, generator = self.sampler_rng, self.dist.device, self.models.generator
        ids = torch.randint(len(self.preserved), (self.config.preservation_batch_size,), generator=rng)
        noise = torch.randn(len(ids), generator.config.noise_dim, generator=rng).to(device)
        sentence = self.preserved[ids].to(device)
        with torch.no_grad():
            target = self.base_generator(noise, sentence)
        loss = self.config.preservation_weight * preservation_loss(generator(noise, sentence), target)
        self.optimizers.generator.zero_grad(set_to_none=True)
        loss.backward()
        self.dist.average_gradients(generator)  # data-parallel runs stay in step (every process drew the same batch)
        self.optimizers.generator.step()
        return float(loss.detach())

    def _build_optimizers(self) -> GANOptimizers:
        trained = [p for p in self.models.generator.parameters() if p.requires_grad]
        log.info("fine-tuning %d of the generator's %d parameters (%s)", sum(p.numel() for p in trained), self.base_parameters, self.config.method)
        return self._optimizers(trained)

    def _optimizers(self, trained: list[torch.nn.Parameter]) -> GANOptimizers:
        """Adam on `trained` and on the discriminator's trainable weights."""
        betas = (self.config.adam_beta1, self.config.adam_beta2)
        trained_d = [p for p in self.models.discriminator.parameters() if p.requires_grad]
        return GANOptimizers(torch.optim.Adam(trained, lr=self.config.learning_rate, betas=betas),
                             torch.optim.Adam(trained_d, lr=self.config.discriminator_learning_rate, betas=betas))

    def _write_info(self, **extra) -> None:
        info = {"base_model_dir": str(Path(self.config.base_model_dir).resolve()), "method": self.config.method, "steps": self.step,
                "trainable_parameters": self.trainable_parameters(), "base_parameters": self.base_parameters, **extra}
        (self.output_dir / FINETUNE_INFO).write_text(json.dumps(info, indent=2) + "\n")

    def _maybe_resume(self) -> CheckpointPosition:
        return CheckpointPosition(0, 0.0)  # a fine-tune does not resume

    def _diversity_target(self) -> float:
        """The data's own spread where its captions are shared; a few styled images (one caption each)
        show none, and then the diversity term is off for the fine-tune."""
        try:
            return super()._diversity_target()
        except DataError:
            log.warning("no caption of %s has two images: the diversity term is off for this fine-tune", self.data_dir)
            self.config = dataclasses.replace(self.config, diversity_weight=0.0)
            return 0.0

    def trainable_parameters(self) -> int:
        return lora.trainable_parameter_count(self.models.generator)

    def _checkpoint(self) -> None:
        """What the run would lose on a crash is its output: saved on the checkpoint cadence instead."""
        self._save_model()

    def _save_model(self) -> None:
        if self.config.method == "full":
            self.pipeline().save_pretrained(self.output_dir)
        else:
            base = lora.base_fingerprint(self.models.ema, self.text_encoder)
            lora.save_lora(self.models.ema, self.output_dir, self.lora_config, base=base)
        self._write_info(lora_rank=self.config.lora_rank if self.config.method == "lora" else None)

    def _final_scores(self) -> dict | None:
        return None


class TextualInversionTrainer(FinetuneTrainer):
    """Learns one new word's input embedding; the language model, the generator and its adapters
    stay frozen, the discriminator trains as in any fine-tune."""

    def _load_data(self):
        from limner.text.learned_words import LearnedWordsEncoder, word_vector

        encoder = self._base_text_encoder()
        start = word_vector(encoder, self.config.initializer_word) if hasattr(encoder, "tokenizer") else torch.zeros(0)
        self.learned = LearnedWordsEncoder(encoder, {self.config.token: torch.nn.Parameter(start)})
        text_encoder, data, self.skipped = load_training_data(self.config, self.data_dir, progress=self.progress, text_encoder=self.learned)
        if not any(self.config.token in caption for caption in data.captions):
            raise ConfigError(f"no training caption of {self.data_dir} uses {self.config.token!r}: write it into the captions, "
                              f"e.g. \"red heart, {self.config.token} style\"")
        return text_encoder, data

    def _build_models(self) -> GANModels:
        models = super()._build_models()
        models.generator.requires_grad_(False)
        return models

    @property
    def vector(self) -> torch.nn.Parameter:
        return self.learned.vectors[self.config.token]

    def _build_optimizers(self) -> GANOptimizers:
        log.info("textual inversion: learning %s (%d numbers), starting from %r", self.config.token, self.vector.numel(), self.config.initializer_word)
        return self._optimizers([self.vector])

    def _train_one_step(self) -> dict[str, float]:
        """The batch's captions read live through the learned word: the generator is conditioned on
        them with gradients (into the word's vector), the discriminator on a detached copy."""
        batch, own, other = self._sample_batch()
        captions, device = self.data.captions, self.dist.device
        live = self.learned.encode_live([captions[i] for i in own.tolist()]).sentence.to(device)
        offsets = None if batch.generator_sentence is None else batch.generator_sentence - batch.sentence  # conditioning augmentation
        batch.sentence = live.detach()
        batch.generator_sentence = live if offsets is None else live + offsets
        batch.mismatched = self.learned.encode([captions[i] for i in other.tolist()]).sentence.to(device)
        return self._run_step(batch)

    def trainable_parameters(self) -> int:
        return self.vector.numel()

    def _save_model(self) -> None:
        from safetensors.torch import save_file

        self.output_dir.mkdir(parents=True, exist_ok=True)
        save_file({self.config.token: self.vector.detach().clone().contiguous()}, str(self.output_dir / f".{LEARNED_WORDS}.tmp"))
        (self.output_dir / f".{LEARNED_WORDS}.tmp").replace(self.output_dir / LEARNED_WORDS)
        base = lora.base_fingerprint(self.models.ema, self.learned.base)
        (self.output_dir / lora.BASE_FILE).write_text(json.dumps(base, indent=2) + "\n")
        self._write_info(token=self.config.token)


def finetune(config: FinetuneConfig, *, progress: bool = True) -> TrainResult:
    trainer = TextualInversionTrainer if config.method == "textual-inversion" else FinetuneTrainer
    return trainer(config, progress=progress).train()
