"""The onnxruntime backend of TextToImagePipeline (`backend="onnx"`): the graphs that
`limner export --format onnx` wrote to `folder/onnx/` run in place of the PyTorch
generator and the Hugging Face encoder's network (tokenising stays in Python)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from limner.errors import DependencyError, ModelLoadError
from limner.text import TextEncoder
from limner.text.base import TextEmbeddings

ONNX_FOLDER = "onnx"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise DependencyError("the onnx backend needs onnxruntime: pip install onnxruntime") from err
    return onnxruntime


def _session(path: Path, threads: int | None):
    ort = _onnxruntime()
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; run `limner export {path.parent.parent} --format onnx` first")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxGenerator:
    """Stands in for a Generator inside the pipeline: same config, same call, onnxruntime inside."""

    def __init__(self, path: Path, config, *, threads: int | None = None) -> None:
        self.session = _session(path, threads)
        self.config = config

    def eval(self) -> "OnnxGenerator":
        return self

    def __call__(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        (images,) = self.session.run(None, {"noise": noise.numpy().astype(np.float32), "sentence": sentence.numpy().astype(np.float32)})
        return torch.from_numpy(images)


class OnnxTextEncoder(TextEncoder):
    """A Hugging Face encoder's tokenizer in Python, its network in onnxruntime (sentences only:
    the token states stay in the PyTorch encoder, which training and fusion use)."""

    def __init__(self, path: Path, encoder, *, threads: int | None = None) -> None:
        self.session = _session(path, threads)
        self.source = encoder
        self.tokenizer = encoder.tokenizer
        self.dim = encoder.dim
        self.kind = encoder.kind

    def _encode(self, captions: list[str]) -> TextEmbeddings:
        batch = self.tokenizer(captions, padding=True, truncation=True, max_length=self.source.max_length, return_tensors="np")
        (sentence,) = self.session.run(None, {"input_ids": batch["input_ids"].astype(np.int64),
                                              "attention_mask": batch["attention_mask"].astype(np.int64)})
        mask = torch.from_numpy(batch["attention_mask"]).bool()
        return TextEmbeddings(sentence=torch.from_numpy(sentence), tokens=torch.zeros(*mask.shape, 0), mask=mask)

    def config(self) -> dict[str, Any]:
        return self.source.config()


def load_onnx_parts(folder: str | Path, pipe, *, threads: int | None = None):
    """(OnnxGenerator, text encoder) for a PyTorch pipeline loaded from `folder`: the ONNX
    encoder where one was exported, else the pipeline's own (bag-of-words)."""
    out = Path(folder) / ONNX_FOLDER
    generator = OnnxGenerator(out / "generator.onnx", pipe.generator.config, threads=threads)
    encoder_path = out / "text_encoder.onnx"
    encoder = OnnxTextEncoder(encoder_path, pipe.text_encoder, threads=threads) if encoder_path.is_file() else pipe.text_encoder
    return generator, encoder

