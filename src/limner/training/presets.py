"""Presets, and building any kind's training config: defaults < preset < overrides.

A preset file (src/limner/presets/NAME.json) has a "common" section that every kind takes
(the dataset, its resolution, how captions are read) and one section per kind with that kind's
own values (budgets, output folder, model sizes, loss weights):

    {"common": {"train_data_dir": "shapes", "resolution": 32},
     "gan": {"max_train_minutes": 10, "generator": {"base_channels": 16}, ...},
     "evaluator": {"output_dir": "outputs/shapes-evaluator"}}
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from limner.config import config_from_dict, merge_config, read_config_file
from limner.errors import ConfigError
from limner.training.config import (
    ANCHORED, ANCHORED_READING, WORDNET_READING, AlignerTrainConfig, CaptionerTrainConfig, EvaluatorTrainConfig, TrainConfig,
    VAETrainConfig,
)
from limner.training.gan_config import GANTrainConfig

PRESETS = ("shapes", "emoji", "emoji-styles", "emoji-styles-32")
CONFIG_CLASSES: dict[str, type[TrainConfig]] = {
    "gan": GANTrainConfig, "vae": VAETrainConfig, "evaluator": EvaluatorTrainConfig,
    "captioner": CaptionerTrainConfig, "aligner": AlignerTrainConfig,
}
MODELS = tuple(CONFIG_CLASSES)
COMMON = "common"
# settings that only anchored pooling reads: a preset's values of them give way when the overrides
# choose another pooling (`limner train --text-pooling mean` on the shapes preset), unless named too
ANCHORED_ONLY = (*ANCHORED_READING, *WORDNET_READING)


def load_preset(name: str) -> dict[str, Any]:
    """The preset file's sections: "common" and one per kind."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets are {list(PRESETS)}")
    return json.loads(resources.files("limner").joinpath(f"presets/{name}.json").read_text())


def preset_values(name: str, kind: str) -> dict[str, Any]:
    """What the preset gives a kind: its common section, then the kind's own."""
    sections = load_preset(name)
    unknown = sorted(set(sections) - {COMMON, *MODELS})
    if unknown:
        raise ConfigError(f"preset {name}: unknown section(s) {unknown}; sections are {[COMMON, *MODELS]}")
    return {**sections.get(COMMON, {}), **sections.get(kind, {})}


def config_class(kind: str) -> type[TrainConfig]:
    if kind not in CONFIG_CLASSES:
        raise ConfigError(f"model must be one of {list(MODELS)}, got {kind!r}")
    return CONFIG_CLASSES[kind]


def build_train_config(preset: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config of the kind `overrides["model"]` names (default "gan"): its defaults, then the
    preset's common and kind sections, then the overrides. A key of another kind is refused by name."""
    overrides = dict(overrides or {})
    kind = overrides.get("model", "gan")
    cls = config_class(kind)
    check_keys_belong(cls, overrides, kind)
    values = {**(preset_values(preset, kind) if preset else {}), "model": kind}
    if overrides.get("text_pooling", ANCHORED) != ANCHORED:
        values = {key: value for key, value in values.items() if key not in ANCHORED_ONLY}
    config = config_from_dict(cls, values, where=f"preset {preset} ({kind})" if preset else cls.__name__)
    return merge_config(config, overrides)


def check_keys_belong(cls: type[TrainConfig], values: dict[str, Any], kind: str) -> None:
    """A ConfigError naming the kinds a stray key belongs to (a GAN setting given to the evaluator)."""
    own = set(cls.__dataclass_fields__)
    for key in values:
        if key in own:
            continue
        owners = [name for name, other in CONFIG_CLASSES.items() if key in other.__dataclass_fields__]
        if owners:
            raise ConfigError(f"{key!r} is a setting of --model {' or '.join(owners)}, not of --model {kind}")


def load_train_config(path: str | Path) -> TrainConfig:
    """A saved training_config.json, as the config class of the kind it names."""
    values = read_config_file(path)
    return config_from_dict(config_class(values.get("model", "gan")), values, where=str(path))
