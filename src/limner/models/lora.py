"""Low-rank adapters (LoRA) on limner's networks, with peft: inject them, save and load them in
the PEFT layout (adapter_config.json + adapter_model.safetensors), combine several by name and
weight, and fuse them into the weights and back.

An adapter folder also holds limner_adapter.json: what its base was (the generator's class and
config, the text encoder), so that an adapter is refused on a base it was not trained for.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from torch import nn

from limner.errors import ConfigError, ModelLoadError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_FILE = "limner_adapter.json"


def adaptable_layers(model: nn.Module) -> list[str]:
    """Names of the model's Linear and Conv2d layers: what LoRA adapts by default."""
    return [name for name, module in model.named_modules() if isinstance(module, (nn.Linear, nn.Conv2d)) and name]


def add_lora(model: nn.Module, *, rank: int, alpha: float | None = None, adapter_name: str = "default",
             targets: Sequence[str] | None = None):
    """Inject a fresh adapter (B = 0, so the model's output is unchanged until it trains) and freeze
    everything else; returns its peft LoraConfig."""
    from peft import LoraConfig

    if rank < 1:
        raise ConfigError(f"lora rank must be at least 1, got {rank}")
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=list(targets or adaptable_layers(model)), lora_dropout=0.0)
    _inject(config, model, adapter_name)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(f".{adapter_name}." in name and "lora_" in name)
    return config


def _inject(config, model: nn.Module, adapter_name: str) -> None:
    """peft's injection, keeping the configs of adapters injected before (peft keeps only the newest)."""
    from peft import inject_adapter_in_model

    earlier = dict(getattr(model, "peft_config", {}))
    with warnings.catch_warnings():  # peft warns of a second adapter; several by name are what limner asks for
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        inject_adapter_in_model(config, model, adapter_name=adapter_name)
    model.peft_config = {**earlier, **model.peft_config}


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def base_fingerprint(generator: nn.Module, text_encoder) -> dict:
    """What an adapter needs of its base: the generator's class and config, the text encoder (as
    JSON reads them back, so that a saved fingerprint compares equal)."""
    from limner.config import config_to_dict

    base = {"generator_class": type(generator).__name__, "generator": config_to_dict(generator.config), "text_encoder": text_encoder.config()}
    return json.loads(json.dumps(base))


def save_lora(model: nn.Module, folder: str | Path, config, *, adapter_name: str = "default", base: dict) -> Path:
    """Write the adapter alone, atomically: the folder holds the old adapter or the new, never half."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        state = {key: value.detach().contiguous().cpu() for key, value in get_peft_model_state_dict(model, adapter_name=adapter_name).items()}
        save_file(state, staging / ADAPTER_WEIGHTS)
        config.save_pretrained(str(staging))
        (staging / BASE_FILE).write_text(json.dumps(base, indent=2) + "\n")
        keep = {ADAPTER_CONFIG, ADAPTER_WEIGHTS, BASE_FILE}
        folder.mkdir(exist_ok=True)
        for name in keep:
            (staging / name).replace(folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def check_base(folder: Path, base: dict) -> None:
    """ModelLoadError naming what differs between the adapter's base and this one."""
    from limner.utils.files import read_json_object

    saved = read_json_object(folder / BASE_FILE, missing=f"{folder}: no {BASE_FILE}; is this an adapter written by `limner finetune`?")
    differences = [f"{part}: adapter's base {saved.get(part)!r}, this model {base[part]!r}"
                   for part in ("generator_class", "text_encoder") if saved.get(part) != base[part]]
    saved_generator = saved.get("generator") or {}
    differences += [f"generator {key}: adapter's base {saved_generator.get(key)!r}, this model {value!r}"
                    for key, value in base["generator"].items() if saved_generator.get(key) != value]
    if differences:
        raise ModelLoadError(f"{folder} was trained for another base model ({'; '.join(differences[:4])})")


def load_lora(model: nn.Module, folder: str | Path, *, adapter_name: str) -> None:
    """Inject the adapter saved in `folder` under `adapter_name` and load its weights."""
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / name).is_file():
            raise ModelLoadError(f"{folder}: no {name}; is this an adapter written by `limner finetune`?")
    try:
        config = LoraConfig.from_pretrained(str(folder))
        weights = load_file(str(folder / ADAPTER_WEIGHTS))
    except Exception as err:  # peft and safetensors raise several kinds for a damaged file
        raise ModelLoadError(f"{folder}: cannot read the adapter ({err})") from err
    _inject(config, model, adapter_name)
    result = set_peft_model_state_dict(model, weights, adapter_name=adapter_name)
    missing = [key for key in result.missing_keys if f".{adapter_name}." in key and "lora_" in key]
    if result.unexpected_keys or missing:
        delete_adapter(model, adapter_name)
        raise ModelLoadError(f"{folder}: the adapter's weights do not fit this model "
                             f"(unexpected {sorted(result.unexpected_keys)[:3]}, missing {missing[:3]})")
    model.requires_grad_(False)


def lora_layers(model: nn.Module) -> list[nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [module for module in model.modules() if isinstance(module, BaseTunerLayer)]


def loaded_adapters(model: nn.Module) -> list[str]:
    names: list[str] = []
    for layer in lora_layers(model):
        names += [name for name in layer.lora_A if name not in names]
    return names


def set_adapters(model: nn.Module, names: Sequence[str], weights: Iterable[float] | None = None) -> None:
    """Make exactly `names` active, each at its weight (1 by default): their changes add up."""
    names = list(names)
    weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
    if len(weights) != len(names):
        raise ConfigError(f"set_adapters: {len(names)} adapter names but {len(weights)} weights")
    known = loaded_adapters(model)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"unknown adapter(s) {unknown}; loaded: {known or 'none'}")
    for layer in lora_layers(model):
        layer.set_adapter(names)
        for name, weight in zip(names, weights):
            layer.set_scale(name, weight)
    model.requires_grad_(False)


def fuse(model: nn.Module) -> None:
    """Add the active adapters into the base weights (faster inference; unfuse takes them out)."""
    for layer in lora_layers(model):
        layer.merge()


def unfuse(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.unmerge()


def delete_adapter(model: nn.Module, adapter_name: str) -> None:
    for layer in lora_layers(model):
        if adapter_name in layer.lora_A:
            layer.delete_adapter(adapter_name)


def adapter_size_bytes(folder: str | Path) -> int:
    """Bytes of the adapter's own files (not the grids and logs a fine-tune writes beside them)."""
    return sum((Path(folder) / name).stat().st_size for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, BASE_FILE) if (Path(folder) / name).is_file())
