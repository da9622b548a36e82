"""Save and load any limner model as `config.json` + `model.safetensors` (no pickles)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file

from limner.config import config_from_dict, config_to_dict
from limner.errors import ModelLoadError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
M = TypeVar("M", bound="PretrainedModel")


class PretrainedModel(torch.nn.Module):
    """A module whose constructor takes one config dataclass, stored beside its weights."""

    config_class: ClassVar[type]

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        payload = {"_class_name": type(self).__name__, **config_to_dict(self.config)}
        (folder / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n")
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        tmp = folder / f".{WEIGHTS_NAME}.tmp"
        save_file(state, str(tmp))
        os.replace(tmp, folder / WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls: type[M], folder: str | Path) -> M:
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise ModelLoadError(f"{folder}: {path.name} is missing; is this a saved {cls.__name__}?")
        values = json.loads(config_path.read_text())
        class_name = values.pop("_class_name", cls.__name__)
        if class_name != cls.__name__:
            raise ModelLoadError(f"{folder}: holds a {class_name}, not a {cls.__name__}")
        model = cls(config_from_dict(cls.config_class, values, where=str(config_path)))
        try:
            model.load_state_dict(load_file(str(weights_path)))
        except RuntimeError as err:
            raise ModelLoadError(f"{weights_path}: weights do not fit the config ({err})") from err
        return model.eval()
