"""Training configurations, one dataclass per model kind over a common base.

`TrainConfig` holds what every kind shares (data, how captions are read, the step and time
budgets, bookkeeping); `GeneratorTrainConfig` adds what the two text-to-image kinds share; each
kind adds its own fields (the GAN's, the largest, live in gan_config.py). Every config rejects
keys it does not know and round-trips through JSON; `limner.training.presets` builds them from
a preset and overrides (defaults < preset < --config < flags).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from limner.config import merge_config
from limner.errors import ConfigError
from limner.models.captioner import CaptionerConfig
from limner.models.dual_encoder import DualEncoderConfig, aligner_config as default_aligner_config
from limner.models.layers import RESOLUTIONS
from limner.models.vae import VAEConfig
from limner.text.huggingface import POOLINGS
from limner.training.read_augment import max_shift_for, parse_read_policy, read_augment

AUTO = "auto"
ANCHORED = "anchored"  # text_pooling: limner.text.AnchoredWordEncoder
# settings that only anchored pooling reads (each off as False or None); text_anchor_general_shapes and
# text_anchor_definitions need text_anchor_lexicon, and through it anchored pooling
ANCHORED_READING = ("text_anchor_filler", "text_anchor_lexicon", "text_anchor_colour_names", "text_anchor_modifiers")
WORDNET_READING = ("text_anchor_general_shapes", "text_anchor_definitions")
BAG_OF_WORDS = "bag-of-words"  # text_encoder: limner.text.BagOfWordsEncoder
SIGNIFICANT = 0.05  # "auto" keeps directions whose singular value is at least this share of the largest


@dataclass
class TrainConfig:
    """What every model kind shares."""
    kind: ClassVar[str | None] = None     # the `model` value of a kind's own config class
    model: str = "gan"                    # the kind: gan, vae, evaluator, captioner or aligner (each has its own config class)
    # data
    train_data_dir: str = "shapes"        # an imagefolder path, or a builtin dataset: shapes, emoji, emoji-styles
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
    text_anchor_floor: float = 0.0        # "anchored": a new word nearer no known word than this cosine weighs nothing (0: off)
    text_anchor_filler: bool = False      # "anchored": request verbs, function words and picture nouns (limner.text.filler) weigh nothing
    # "anchored": read other names for the training captions' words as those words ("maroon" -> red), from
    # WordNet (limner.text.lexicon): "wordnet" looks in the usual places and trains without it, with a
    # warning, where it is not installed; a folder must hold WordNet's database files. None: off
    text_anchor_lexicon: str | None = None
    # "anchored": colour names from the xkcd survey ("sage", "navy") read as the known colour word nearest
    # them in colour (limner.text.colour_names); where the WordNet lexicon names the same word, the colour decides
    text_anchor_colour_names: bool = False
    # "anchored", with text_anchor_lexicon: a general name WordNet places above a single known shape is read
    # as that shape ("oval" -> circle, "quadrilateral" -> square; limner.text.lexicon.general_shape_names)
    text_anchor_general_shapes: bool = False
    # "anchored", with text_anchor_lexicon: a noun whose WordNet definition names a single known shape or colour is
    # read as it ("box" -> square, "clementine" -> orange; limner.text.definitions), where no other reading names it
    text_anchor_definitions: bool = False
    # with text_anchor_definitions: rounds of reading; 2 also reads a thing through the things it is a kind of
    # and the shapes its definition names, read in the first ("crate": a kind of box; "die": "a small cube")
    text_anchor_definition_rounds: int = 1
    # "anchored": a new word right before a known word that qualifies a third is dropped ("a tomato red circle" -> "a red circle")
    text_anchor_modifiers: bool = False
    # None: the last layer; 0: the embedding layer. With "anchored": the layer at which each word is
    # matched to the known words in its sentence (None: by its input embedding alone)
    text_hidden_layer: int | None = None
    # schedule
    train_batch_size: int = 64
    max_train_steps: int = 2000
    max_train_minutes: float | None = None  # stop early when this wall-clock budget is spent
    # bookkeeping
    output_dir: str = "outputs/run"
    seed: int = 0
    logging_steps: int = 10

    def __post_init__(self) -> None:
        self._check_run()
        self._check_text()

    def _check_run(self) -> None:
        """Data, schedule and bookkeeping."""
        if self.kind is not None and self.model != self.kind:
            raise ConfigError(f"model must be {self.kind!r} in a {type(self).__name__}, got {self.model!r}")
        if self.resolution not in RESOLUTIONS:
            raise ConfigError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution}")
        for name in ("train_batch_size", "max_train_steps", "logging_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.train_batch_size < 2:
            raise ConfigError("train_batch_size must be at least 2 (mismatched captions come from the batch)")

    def _check_text(self) -> None:
        """How captions are read."""
        if self.text_pooling is not None and self.text_pooling not in (*POOLINGS, ANCHORED):
            raise ConfigError(f"text_pooling must be one of {[*POOLINGS, ANCHORED]} (or unset: the family's own), got {self.text_pooling!r}")
        if not 0 <= self.text_anchor_floor < 1:
            raise ConfigError(f"text_anchor_floor must be 0 (off) or a cosine similarity under 1, got {self.text_anchor_floor}")
        for name in ANCHORED_READING:
            if getattr(self, name) not in (False, None) and self.text_pooling != ANCHORED:
                raise ConfigError(f"{name} needs text_pooling \"anchored\", got {self.text_pooling!r}")
        for name in WORDNET_READING:
            if getattr(self, name) and self.text_anchor_lexicon is None:
                raise ConfigError(f"{name} reads WordNet: set text_anchor_lexicon too")
        rounds = self.text_anchor_definition_rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"text_anchor_definition_rounds must be a whole number, 1 or more, got {rounds!r}")
        if self.text_anchor_temperature <= 0 or self.text_anchor_margin < 0:
            raise ConfigError("text_anchor_temperature must be positive and text_anchor_margin 0 (off) or more, got "
                              f"{self.text_anchor_temperature} and {self.text_anchor_margin}")


@dataclass
class GeneratorTrainConfig(TrainConfig):
    """What the text-to-image kinds (GAN and VAE) add: how the generator reads captions, and its grids."""
    # models see only the top-k principal directions of the training captions' embeddings
    # (0: all; "auto": those whose singular value is at least 5% of the largest)
    text_components: int | str = 0
    text_whiten: bool = False             # scale each kept direction to unit spread (see GeneratorConfig)
    validation_prompts: tuple[str, ...] = ()
    validation_images_per_prompt: int = 6
    truncation: float = 1.0               # noise truncation for validation grids and the saved pipeline
    # each training image gains up to this many captions "{tag}, {style} style" from its metadata's
    # `tags` column (OpenMoji's keywords on emoji-styles), never its concept's wording test tag
    # (limner.data.emoji_styles.wording_test_tag), so that other words for a concept are learnt
    tag_captions: int = 0

    def _check_text(self) -> None:
        super()._check_text()
        if self.text_components != AUTO and (not isinstance(self.text_components, int) or self.text_components < 0):
            raise ConfigError(f'text_components must be a count (0: all) or "auto", got {self.text_components!r}')
        if self.text_whiten and self.text_components == 0:
            raise ConfigError('text_whiten needs text_components (the directions to whiten): a count or "auto"')
        if not isinstance(self.tag_captions, int) or self.tag_captions < 0:
            raise ConfigError(f"tag_captions must be a count of captions per image (0: none), got {self.tag_captions!r}")

    def resolved_text_components(self, sentences: torch.Tensor | None) -> int:
        """text_components as a count: "auto" resolved from the training captions' embeddings."""
        if self.text_components != AUTO:
            return self.text_components
        if sentences is None:
            raise ConfigError('text_components "auto" needs the training captions\' embeddings')
        return significant_directions(sentences)

    def text_settings(self, text_dim: int, sentences: torch.Tensor | None) -> dict:
        """What a generator's config takes from the training config about its text input."""
        return {"resolution": self.resolution, "text_dim": text_dim, "text_components": self.resolved_text_components(sentences),
                "text_whiten": self.text_whiten}


@dataclass
class VAETrainConfig(GeneratorTrainConfig):
    kind: ClassVar[str | None] = "vae"
    model: str = "vae"
    output_dir: str = "outputs/vae"
    vae: VAEConfig = field(default_factory=VAEConfig)
    vae_learning_rate: float = 5e-4
    kl_warmup_steps: int = 500            # the KL weight rises linearly from 0 to 1 over these steps
    free_bits: float = 0.05               # nats per latent dimension the KL may use freely
    reconstruction_sigma: float = 0.1     # the decoder's fixed pixel noise, in [-1, 1] units

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kl_warmup_steps < 0 or self.free_bits < 0 or self.reconstruction_sigma <= 0:
            raise ConfigError("kl_warmup_steps and free_bits must be 0 or more, reconstruction_sigma positive")

    def vae_config(self, text_dim: int, sentences: torch.Tensor | None = None) -> VAEConfig:
        return merge_config(self.vae, self.text_settings(text_dim, sentences))


@dataclass
class QuickTrainConfig(TrainConfig):
    """The scorers and the captioner: they train in minutes, at a larger batch, with their own seeds
    (the evaluator must not share the generator's) and their own folders."""
    train_batch_size: int = 64
    max_train_steps: int = 100_000
    max_train_minutes: float | None = 3
    # augmentations of the real images read in training that keep their captions true: comma-separated
    # "resample", "jpeg", "blur", "noise", "shift" (limner.training.read_augment); "" for none
    read_augment: str = ""
    read_augment_probability: float = 0.5  # each transform's chance per image

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_read_policy(self.read_augment)
        if not 0 <= self.read_augment_probability <= 1:
            raise ConfigError(f"read_augment_probability must be between 0 and 1, got {self.read_augment_probability}")

    def image_augmenter(self, generator: torch.Generator):
        """images (B, 3, H, W) in [-1, 1] -> augmented as `read_augment` asks (unchanged when it is empty)."""
        policy = parse_read_policy(self.read_augment)
        if not policy:
            return lambda images: images
        shift = max_shift_for(self.resolution)
        return lambda images: read_augment(images, policy, generator, probability=self.read_augment_probability, max_shift=shift)


@dataclass
class EvaluatorTrainConfig(QuickTrainConfig):
    kind: ClassVar[str | None] = "evaluator"
    model: str = "evaluator"              # the independent scorer `limner evaluate` uses
    output_dir: str = "outputs/evaluator"
    seed: int = 1234
    evaluator: DualEncoderConfig = field(default_factory=DualEncoderConfig)
    evaluator_learning_rate: float = 1e-3
    # the evaluator reads images downsampled to this many pixels (None: the training resolution), so it
    # trains several times faster; it is trained on the data at `resolution`, downsampled as it will judge
    evaluator_resolution: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.evaluator_resolution is not None and (self.evaluator_resolution not in RESOLUTIONS or self.evaluator_resolution > self.resolution):
            raise ConfigError(f"evaluator_resolution must be one of {RESOLUTIONS} and at most resolution ({self.resolution}), "
                              f"got {self.evaluator_resolution}")

    def evaluator_config(self, text_dim: int, styles: tuple[str, ...] = ()) -> DualEncoderConfig:
        resolution = self.evaluator_resolution or self.resolution
        return merge_config(self.evaluator, {"role": "evaluator", "resolution": resolution, "text_dim": text_dim, "styles": list(styles)})


@dataclass
class CaptionerTrainConfig(QuickTrainConfig):
    kind: ClassVar[str | None] = "captioner"
    model: str = "captioner"
    max_train_minutes: float | None = 5
    output_dir: str = "outputs/captioner"
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    captioner_learning_rate: float = 1e-3
    # the share of the decoder's input words hidden in training (word dropout): the next word must then
    # come from the picture rather than from the words before it, which on captions of held-out
    # compositions pull towards the combinations seen in training
    captioner_token_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.captioner_token_dropout < 1:
            raise ConfigError(f"captioner_token_dropout must be at least 0 and below 1, got {self.captioner_token_dropout}")

    def captioner_config(self, vocabulary: tuple[int, ...]) -> CaptionerConfig:
        return merge_config(self.captioner, {"resolution": self.resolution, "vocabulary": list(vocabulary)})


@dataclass
class AlignerTrainConfig(QuickTrainConfig):
    kind: ClassVar[str | None] = "aligner"
    model: str = "aligner"                # an image-text matcher for `limner rank` and for training generators against
    output_dir: str = "outputs/aligner"
    seed: int = 4321
    aligner: DualEncoderConfig = field(default_factory=default_aligner_config)
    aligner_learning_rate: float = 1e-3

    def aligner_config(self, text_dim: int) -> DualEncoderConfig:
        return merge_config(self.aligner, {"role": "aligner", "resolution": self.resolution, "text_dim": text_dim})


def significant_directions(sentences: torch.Tensor) -> int:
    """How many principal directions of the caption embeddings (N, D) carry real variation."""
    singular = torch.linalg.svdvals((sentences - sentences.mean(0)).double())
    return max(1, int((singular >= SIGNIFICANT * singular[0]).sum()))
