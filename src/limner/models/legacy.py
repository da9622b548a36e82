"""Readers for model folders of earlier releases, so that saved work keeps loading.

Earlier releases had two dual-encoder classes: `Evaluator` (mean-pooled image features) and
`Aligner` (flattened grid, its layers named image_head, text_head and log_scale). Both are now
`DualEncoder` with a role; their folders load into it with the config and weight names mapped.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from limner.config import config_from_dict
from limner.errors import ModelLoadError
from limner.models.modeling import CONFIG_NAME, WEIGHTS_NAME

LEGACY_DUAL_ENCODERS = ("Evaluator", "Aligner")
ALIGNER_WEIGHT_NAMES = {"image_head.": "image_projection.", "text_head.": "text_projection.", "log_scale": "logit_scale"}


def _class_name(folder: Path) -> str | None:
    try:
        values = json.loads((Path(folder) / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None  # the ordinary loader names what is wrong
    return values.get("_class_name") if isinstance(values, dict) else None


def is_legacy_dual_encoder(folder) -> bool:
    return _class_name(Path(folder)) in LEGACY_DUAL_ENCODERS


def legacy_dual_encoder_config(class_name: str, values: dict) -> dict:
    """An Evaluator's or Aligner's config.json values -> DualEncoderConfig values."""
    values = {k: v for k, v in values.items() if k != "_class_name"}
    if class_name == "Aligner":
        values["embedding_dim"] = values.pop("embed_dim", 128)
        return {"role": "aligner", "image_pooling": "flatten", "text_hidden": 512, **values}
    return {"role": "evaluator", "image_pooling": "mean", "text_hidden": 2 * values.get("embedding_dim", 128), **values}


def legacy_weight_name(class_name: str, name: str) -> str:
    if class_name == "Aligner":
        for old, new in ALIGNER_WEIGHT_NAMES.items():
            if name.startswith(old):
                return new + name[len(old):]
    return name


def load_legacy_dual_encoder(cls, folder):
    folder = Path(folder)
    values = json.loads((folder / CONFIG_NAME).read_text())
    class_name = values["_class_name"]
    config = config_from_dict(cls.config_class, legacy_dual_encoder_config(class_name, values), where=str(folder / CONFIG_NAME))
    model = cls(config)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelLoadError(f"{folder}: {WEIGHTS_NAME} is missing; is this a saved {class_name}?")
    state = {legacy_weight_name(class_name, name): tensor for name, tensor in load_file(str(weights)).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ModelLoadError(f"{weights}: weights do not fit the config ({err})") from err
    return model.eval()
