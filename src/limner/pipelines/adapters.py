"""Low-rank adapters on a text-to-image pipeline (the diffusers names): load several by name, weigh
them, fuse them into the generator's weights and back. The adapters come from `limner finetune`
(limner.training.finetune) and are refused on a base they were not trained for."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from torch import nn

from limner.errors import ConfigError, ModelLoadError
from limner.models import lora
from limner.text.learned_words import LEARNED_WORDS, LearnedWordsEncoder


def parse_adapter_spec(spec: str) -> tuple[str, float]:
    """"DIR" or "DIR:SCALE" -> (folder, scale)."""
    folder, sep, tail = spec.rpartition(":")
    if sep:
        try:
            return folder, float(tail)
        except ValueError:
            pass
    return spec, 1.0


class LoraLoaderMixin:
    """For pipelines with a PyTorch `generator` and a `text_encoder`."""

    def _adapter_weights(self) -> dict[str, float]:
        if "_lora_weights" not in self.__dict__:
            self._lora_weights: dict[str, float] = {}
            self._lora_fused = False
        return self._lora_weights

    @property
    def adapters(self) -> list[str]:
        """The loaded adapters' names, in the order they were loaded."""
        return list(self._adapter_weights())

    def load_lora(self, folder: str | Path, scale: float = 1.0, *, adapter_name: str | None = None) -> str:
        """Load an adapter folder onto the generator as `adapter_name` (default: the folder's name) at
        `scale`; every loaded adapter stays active at its weight. Returns the name."""
        if not isinstance(self.generator, nn.Module):
            raise ConfigError("adapters need the PyTorch generator (backend torch), not an exported one")
        weights = self._adapter_weights()
        if self._lora_fused:
            raise ConfigError("adapters are fused into the weights: call unfuse_lora() before loading another")
        folder = Path(folder)
        name = adapter_name or folder.resolve().name
        if name in weights:
            raise ConfigError(f"an adapter named {name!r} is loaded already (loaded: {list(weights)}); give another adapter_name")
        lora.check_base(folder, lora.base_fingerprint(self.generator, self.text_encoder))
        lora.load_lora(self.generator, folder, adapter_name=name)
        weights[name] = float(scale)
        lora.set_adapters(self.generator, list(weights), list(weights.values()))
        return name

    def set_adapters(self, names: str | Sequence[str], weights: float | Sequence[float] | None = None) -> None:
        """Draw with exactly these adapters at these weights (1 each by default); the others stay loaded, off."""
        names = [names] if isinstance(names, str) else list(names)
        if weights is None:
            weights = [1.0] * len(names)
        elif isinstance(weights, (int, float)):
            weights = [float(weights)] * len(names)
        if self._adapter_weights() and self._lora_fused:
            raise ConfigError("adapters are fused into the weights: call unfuse_lora() first")
        lora.set_adapters(self.generator, names, weights)
        self._lora_weights = {**{name: 0.0 for name in self._lora_weights}, **dict(zip(names, map(float, weights)))}

    @property
    def learned_words(self) -> list[str]:
        """Words loaded by load_textual_inversion."""
        return list(self.text_encoder.vectors) if isinstance(self.text_encoder, LearnedWordsEncoder) else []

    def load_textual_inversion(self, folder: str | Path) -> list[str]:
        """Load the word(s) learnt by `limner finetune --method textual-inversion`: captions may use
        them from now on. Returns the words."""
        from safetensors.torch import load_file

        folder = Path(folder)
        path = folder / LEARNED_WORDS
        if not path.is_file():
            raise ModelLoadError(f"{folder}: no {LEARNED_WORDS}; is this a word learnt by `limner finetune --method textual-inversion`?")
        base_encoder = self.text_encoder.base if isinstance(self.text_encoder, LearnedWordsEncoder) else self.text_encoder
        lora.check_base(folder, lora.base_fingerprint(self.generator, base_encoder))
        try:
            words = load_file(str(path))
        except Exception as err:  # safetensors raises several kinds for a damaged file
            raise ModelLoadError(f"{path}: cannot read the learned words ({err})") from err
        clash = sorted(set(words) & set(self.learned_words))
        if clash:
            raise ConfigError(f"{clash} are loaded already")
        self.text_encoder = LearnedWordsEncoder(self.text_encoder, words)
        return list(words)

    def load_adapter(self, folder: str | Path, scale: float = 1.0) -> None:
        """Whatever `limner finetune` wrote in `folder`: learned words, or a LoRA adapter at `scale`."""
        if (Path(folder) / LEARNED_WORDS).is_file():
            self.load_textual_inversion(folder)
        else:
            self.load_lora(folder, scale)

    def check_savable(self) -> None:
        """A pipeline saves as a model only without adapters and learned words (save those apart)."""
        if self.adapters or self.learned_words:
            raise ConfigError("this pipeline has adapters or learned words loaded; save the base model and them apart "
                              "(the folders they were loaded from)")

    def fuse_lora(self) -> None:
        """Add the active adapters into the generator's weights: drawing costs what the base costs."""
        if not self._adapter_weights():
            raise ConfigError("no adapter is loaded: load_lora(folder) first")
        if not self._lora_fused:
            lora.fuse(self.generator)
            self._lora_fused = True

    def unfuse_lora(self) -> None:
        if self._adapter_weights() and self._lora_fused:
            lora.unfuse(self.generator)
            self._lora_fused = False
