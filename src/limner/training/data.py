"""Training data: where a config's dataset lives, the text encoder it asks for, and batches,
from an in-memory image tensor (imagefolders) or from a shuffle buffer that tar shards
stream through (datasets larger than memory); both with a table of caption embeddings.
Every trainer loads its data here."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from limner.data import ImageFolder, builtin_data_dir
from limner.data.builders import BUILTIN_DATASETS
from limner.data.emoji_styles import tag_captions
from limner.data.shards import ShardReader, shard_paths
from limner.errors import ConfigError, DataError
from limner.text import AnchoredWordEncoder, BagOfWordsEncoder, CachedTextEncoder, HuggingFaceTextEncoder, TextEncoder
from limner.text.filler import PROMPT_FILLER
from limner.text.lexicon import WORDNET, WordNet
from limner.training.config import ANCHORED, BAG_OF_WORDS, TrainConfig
from limner.utils.images import from_uint8

log = logging.getLogger("limner.train")


def resolve_data_dir(config: TrainConfig) -> Path:
    if config.train_data_dir in BUILTIN_DATASETS:
        return builtin_data_dir(config.train_data_dir, config.resolution)
    return Path(config.train_data_dir)


def build_text_encoder(config: TrainConfig, train_captions: list[str]) -> TextEncoder:
    if config.text_encoder == BAG_OF_WORDS:
        return BagOfWordsEncoder.from_captions(train_captions)
    if config.text_pooling == ANCHORED:
        lexicon = find_lexicon(config.text_anchor_lexicon)  # None, with a warning, where "wordnet" is not installed
        return AnchoredWordEncoder.from_captions(train_captions, config.text_encoder, temperature=config.text_anchor_temperature,
                                                 margin=config.text_anchor_margin, context_layer=config.text_hidden_layer,
                                                 floor=config.text_anchor_floor,
                                                 filler=PROMPT_FILLER if config.text_anchor_filler else (),
                                                 lexicon=lexicon,
                                                 modifiers=config.text_anchor_modifiers,
                                                 colour_names=config.text_anchor_colour_names,
                                                 general_shapes=config.text_anchor_general_shapes and lexicon is not None,
                                                 definitions=config.text_anchor_definitions and lexicon is not None,
                                                 definition_rounds=config.text_anchor_definition_rounds)
    return HuggingFaceTextEncoder(config.text_encoder, pooling=config.text_pooling, hidden_layer=config.text_hidden_layer)


def find_lexicon(where: str | None) -> WordNet | None:
    """text_anchor_lexicon: None (off), "wordnet" (the usual places; without it, a warning) or a folder."""
    if where is None:
        return None
    if where == WORDNET:
        try:
            return WordNet.find()
        except ConfigError as err:
            log.warning("text_anchor_lexicon %r: %s; training without other names for the captions' words", where, err)
            return None
    return WordNet.find(where)


def load_training_data(config: TrainConfig, data_dir: Path, *, progress: bool = True, streaming: bool = True,
                       text_encoder: TextEncoder | None = None) -> tuple[TextEncoder, CaptionedImages, list[str]]:
    """The train split with its caption embeddings: in memory from an imagefolder, or streamed
    from tar shards (`limner data pack`; only where `streaming`); also the entries skipped as invalid.
    The captions are read by `text_encoder` where given (a base model's, when fine-tuning), else by
    one the config builds."""
    if shard_paths(data_dir, "train"):
        if getattr(config, "tag_captions", 0):
            raise ConfigError(f"{data_dir}: tag_captions reads an imagefolder's tags column; tar shards carry captions only")
        if not streaming:
            raise ConfigError(f"{data_dir}: holds tar shards; the {config.model} trains from an imagefolder (shards stream into GAN training)")
        if getattr(config, "evaluation_steps", 0):  # the GAN's evaluation during training
            raise ConfigError("evaluation during training reads an imagefolder's test split; with shards set evaluation_steps to 0")
        reader = ShardReader(data_dir, "train", resolution=config.resolution, skip_invalid=config.skip_invalid_images, seed=config.seed)
        captions = reader.captions()
        text_encoder = text_encoder or build_text_encoder(config, captions)
        data = StreamingCaptionedImages(reader, captions, CachedTextEncoder(text_encoder), seed=config.seed)
        return text_encoder, data, reader.skipped
    folder = ImageFolder(data_dir, "train", skip_invalid=config.skip_invalid_images)
    if getattr(config, "tag_captions", 0):
        add_tag_captions(folder, config.tag_captions)
    images = folder.load_images(config.resolution, progress=progress)
    if folder.skipped:
        log.warning("skipped %d invalid entries of %s (first: %s)", len(folder.skipped), data_dir, folder.skipped[0])
    text_encoder = text_encoder or build_text_encoder(config, folder.captions)
    return text_encoder, CaptionedImages.from_folder(folder, images, CachedTextEncoder(text_encoder)), folder.skipped


def add_tag_captions(folder: ImageFolder, limit: int) -> None:
    """Extend each record's captions with up to `limit` from its tags (GeneratorTrainConfig.tag_captions)."""
    if not any(record.columns.get("tags") for record in folder.records):
        raise ConfigError(f"tag_captions: {folder.folder} has no 'tags' column (a list of keywords per image) to caption from")
    folder.records = [replace(record, captions=tuple(dict.fromkeys(record.captions + tag_captions(record.columns, limit))))
                      for record in folder.records]


def load_test_split(data_dir, resolution: int, *, max_images: int = 2000) -> tuple[list, torch.Tensor] | None:
    """The first `max_images` records of the imagefolder's test split and their images in [-1, 1]
    (N, 3, R, R); None when there is no test split. What the trainers score themselves on."""
    try:
        folder = ImageFolder(data_dir, "test")
    except DataError:
        return None
    records = folder.records[:max_images]
    return records, from_uint8(folder.load_images(resolution, progress=False)[: len(records)])


@dataclass
class CaptionedImages:
    images: torch.Tensor          # uint8 (N, 3, H, W)
    captions: list[str]           # the U distinct captions
    sentence_table: torch.Tensor  # (U, D) sentence embedding of each distinct caption
    caption_ids: torch.Tensor     # long (sum of captions per image,) into `captions`
    offsets: torch.Tensor         # long (N,) where each image's caption ids start
    counts: torch.Tensor          # long (N,) how many captions each image has
    columns: list[dict] | None = None  # each image's other metadata columns (style, concept, ...)

    @classmethod
    def from_folder(cls, folder: ImageFolder, images: torch.Tensor, encoder: CachedTextEncoder) -> "CaptionedImages":
        captions = folder.captions
        index = {caption: i for i, caption in enumerate(captions)}
        ids = [[index[c] for c in record.captions] for record in folder.records]
        counts = torch.tensor([len(row) for row in ids])
        offsets = torch.cumsum(counts, 0) - counts
        return cls(
            images=images,
            captions=captions,
            sentence_table=encoder.sentence_table(captions),
            caption_ids=torch.tensor([i for row in ids for i in row]),
            offsets=offsets,
            counts=counts,
            columns=[record.columns for record in folder.records],
        )

    def __len__(self) -> int:
        return self.images.shape[0]

    def draw(self, batch_size: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random image indices (B,) and, for each, one of its captions drawn at random (B,) into `captions`."""
        index = torch.randint(len(self), (batch_size,), generator=rng)
        pick = (torch.rand(batch_size, generator=rng) * self.counts[index]).long()
        return index, self.caption_ids[self.offsets[index] + pick]

    def sample(self, batch_size: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images (B, 3, H, W) in [-1, 1], sentence (B, D), mismatched sentence (B, D)).

        Each image's caption is drawn at random from its captions; the mismatched
        caption is a random caption of the dataset that differs from the true one.
        """
        images, own, other = self.sample_ids(batch_size, rng)
        return images, self.sentence_table[own], self.sentence_table[other]

    def sample_ids(self, batch_size: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As `sample`, with the captions as ids into `captions` (B,) instead of embeddings."""
        return self.sample_indexed(batch_size, rng)[1:]

    def sample_indexed(self, batch_size: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """As `sample_ids`, led by the images' indices (B,) into this dataset."""
        index, own = self.draw(batch_size, rng)
        return index, from_uint8(self.images[index]), own, _mismatched(own, len(self.captions), rng)


class StreamingCaptionedImages:
    """Batches drawn at random from a buffer of at most `buffer_size` images that the shards
    stream through: each batch first pulls as many new samples into the buffer (evicting
    random ones once it is full), so memory is bounded by the buffer, not the dataset."""

    def __init__(self, reader: ShardReader, captions: list[str], encoder: CachedTextEncoder, *, buffer_size: int = 2048, seed: int = 0) -> None:
        self.reader = reader
        self.captions = captions
        self._index = {caption: i for i, caption in enumerate(captions)}
        self.sentence_table = encoder.sentence_table(captions)
        self.buffer_size = buffer_size
        self.epoch = 0
        self._stream = reader.samples(self.epoch)
        self._rng = torch.Generator().manual_seed(seed)
        self._images: list[torch.Tensor] = []          # uint8 (3, H, W) each
        self._caption_ids: list[torch.Tensor] = []     # long (captions of that image,) each
        self._fill(buffer_size, first=True)

    def __len__(self) -> int:
        return len(self._images)  # what the buffer holds now

    def _next(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The next sample of the stream, starting a new epoch when one ends; None if an epoch was empty."""
        for _ in range(2):
            try:
                array, captions = next(self._stream)
                return (torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(),  # decoded arrays are read-only
                        torch.tensor([self._index[c] for c in captions if c in self._index] or [0]))
            except StopIteration:
                self.epoch += 1
                self._stream = self.reader.samples(self.epoch)
        return None

    def _fill(self, count: int, *, first: bool = False) -> None:
        epoch = self.epoch
        for _ in range(count):
            sample = self._next()
            if sample is None:
                raise DataError(f"{self.reader.root}: the shards yielded no usable sample")
            if first and self.epoch != epoch:  # a dataset smaller than the buffer: hold it once
                self._stream = self.reader.samples(self.epoch)  # this epoch starts again from its first sample
                return
            if len(self._images) < self.buffer_size:
                self._images.append(sample[0])
                self._caption_ids.append(sample[1])
            else:
                slot = int(torch.randint(len(self._images), (1,), generator=self._rng))
                self._images[slot], self._caption_ids[slot] = sample

    def sample(self, batch_size: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As CaptionedImages.sample, from the buffer after `batch_size` fresh samples came in."""
        images, own, other = self.sample_ids(batch_size, rng)
        return images, self.sentence_table[own], self.sentence_table[other]

    def sample_ids(self, batch_size: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As CaptionedImages.sample_ids."""
        self._fill(batch_size)
        index = torch.randint(len(self._images), (batch_size,), generator=rng)
        own = torch.stack([ids[int(torch.randint(len(ids), (1,), generator=rng))] for ids in (self._caption_ids[i] for i in index.tolist())])
        images = torch.stack([self._images[i] for i in index.tolist()])
        return from_uint8(images), own, _mismatched(own, len(self.captions), rng)


def caption_owners(data: CaptionedImages) -> dict[int, list[int]]:
    """For each caption id, the images that carry it."""
    owners: dict[int, list[int]] = {}
    for image, (start, count) in enumerate(zip(data.offsets.tolist(), data.counts.tolist())):
        for caption in data.caption_ids[start:start + count].tolist():
            owners.setdefault(caption, []).append(image)
    return owners


def shared_captions(data: CaptionedImages) -> torch.Tensor:
    """(U,) bool: True for each caption that two or more training images carry."""
    shared = torch.zeros(len(data.captions), dtype=torch.bool)
    for caption, images in caption_owners(data).items():
        shared[caption] = len(images) >= 2
    return shared


def column_codes(data: CaptionedImages, column: str, *, option: str = "noise_code_column") -> tuple[tuple[str, ...], torch.Tensor]:
    """The distinct values of a metadata column, sorted, and each image's index among them (N,)
    long, -1 where the image has no value: what ties the generator's noise codes to the column
    (or labels the class head's images); `option` names the setting in the error."""
    values = [str(row.get(column, "")).strip() if row else "" for row in (data.columns or [{}] * len(data))]
    names = tuple(sorted({value for value in values if value}))
    if not names:
        present = sorted({key for row in data.columns or [] for key in (row or {})})
        raise ConfigError(f"{option} {column!r}: no training image has that metadata column "
                          f"(columns present: {', '.join(present) or 'none besides file_name and text'})")
    index = {name: i for i, name in enumerate(names)}
    return names, torch.tensor([index.get(value, -1) for value in values])


def caption_labels(data: CaptionedImages, labels: torch.Tensor) -> torch.Tensor:
    """For each caption id, the label (of labels (N,), one per image) that all its training images
    share, -1 where they differ or have none: the value a generated image of that caption should show."""
    result = torch.full((len(data.captions),), -1, dtype=torch.long)
    for caption, images in caption_owners(data).items():
        values = set(labels[images].tolist())
        if len(values) == 1:
            result[caption] = values.pop()
    return result


def estimate_diversity_target(data: CaptionedImages, *, pairs: int = 2000, seed: int = 0, pool: int = 1) -> float:
    """Mean absolute pixel difference (in [-1, 1]) between two real images that share a caption
    (of pool x pool cell means where pool > 1), over up to `pairs` random pairs; raises DataError
    when no caption has two images."""
    shared = [images for images in caption_owners(data).values() if len(images) >= 2]
    if not shared:
        raise DataError("no caption has two images, so the data shows no spread to aim for: give diversity_target a number")
    rng = torch.Generator().manual_seed(seed)
    firsts, seconds = [], []
    for pick in torch.randint(len(shared), (pairs,), generator=rng).tolist():
        members = shared[pick]
        a, b = torch.randperm(len(members), generator=rng)[:2].tolist()
        firsts.append(members[a])
        seconds.append(members[b])
    firsts, seconds = from_uint8(data.images[firsts]), from_uint8(data.images[seconds])
    if pool > 1:
        firsts, seconds = torch.nn.functional.avg_pool2d(firsts, pool), torch.nn.functional.avg_pool2d(seconds, pool)
    difference = firsts - seconds
    return float(difference.abs().mean())


def _mismatched(own: torch.Tensor, captions: int, rng: torch.Generator) -> torch.Tensor:
    """For each caption id, a random other caption id (the same id when there is only one caption)."""
    if captions == 1:  # nothing to mismatch with: the term then teaches nothing
        return own
    other = torch.randint(captions - 1, own.shape, generator=rng)
    return other + (other >= own).long()  # skip the true caption


def model_training_captions(model_dir: str | Path, *, limit: int, hint: str = "") -> list[str]:
    """Up to `limit` captions (a seeded sample) of the training split a saved model was trained on,
    found through its training_config.json; DataError (ending with `hint`) when it has none."""
    from limner.config import read_config_file

    config_path = Path(model_dir) / "training_config.json"
    if not config_path.is_file():
        raise DataError(f"{model_dir}: no training_config.json to find the training captions{hint}")
    values = read_config_file(config_path)  # only the data is read: any release's config serves
    data = TrainConfig(**{key: values[key] for key in ("train_data_dir", "resolution") if key in values})
    captions = ImageFolder(resolve_data_dir(data), "train").captions
    return random.Random(0).sample(captions, min(limit, len(captions)))

