"""The onnxruntime backend of TextToImagePipeline (`backend="onnx"`): the graphs that
`limner export --format onnx` wrote to `folder/onnx/` run in place of the PyTorch
generator and the Hugging Face encoder's network (tokenising stays in Python)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from limner.errors import DependencyError, ModelLoadError
from limner.text import TextEncoder
from limner.text.base import TextEmbeddings
from limner.utils.files import file_sha256

ONNX_FOLDER = "onnx"
INT8_GENERATOR = "generator.int8.onnx"
EXPORT_REPORT = "export.json"


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
        _check_generator_graph(self.session, config, path)

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
        self.max_length = encoder.max_length
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


def load_onnx_parts(folder: str | Path, pipe, *, threads: int | None = None, int8: bool = False):
    """(OnnxGenerator, text encoder) for a PyTorch pipeline loaded from `folder`: the ONNX
    encoder where one was exported, else the pipeline's own (bag-of-words). int8: the quantised
    generator (`limner export --quantize`). Graphs that no longer match the checksums export.json
    recorded, or weights that changed since the export, are refused."""
    folder = Path(folder)
    out = folder / ONNX_FOLDER
    generator_path = out / (INT8_GENERATOR if int8 else "generator.onnx")
    if int8 and not generator_path.is_file():
        raise ModelLoadError(f"{generator_path} is missing; run `limner export {folder} --format onnx --quantize static` "
                             "(or dynamic) first")
    encoder_path = out / "text_encoder.onnx"
    _check_export_report(folder, [generator_path] + ([encoder_path] if encoder_path.is_file() else []))
    generator = OnnxGenerator(generator_path, pipe.generator.config, threads=threads)
    encoder = OnnxTextEncoder(encoder_path, pipe.text_encoder, threads=threads) if encoder_path.is_file() else pipe.text_encoder
    return generator, encoder


def _check_export_report(folder: Path, graphs: list[Path]) -> None:
    """ModelLoadError when export.json's checksums disagree with the graphs or the generator's weights."""
    report_path = folder / ONNX_FOLDER / EXPORT_REPORT
    try:
        report = json.loads(report_path.read_text())
    except FileNotFoundError:
        return  # graphs written by hand or by an older limner: nothing to check against
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{report_path}: not valid JSON ({err}); run `limner export {folder}` again") from err
    source = report.get("source_sha256")
    weights = folder / "generator" / "model.safetensors"
    if source and weights.is_file() and file_sha256(weights) != source:
        raise ModelLoadError(f"{folder}: the generator's weights changed since the ONNX export; run `limner export {folder}` again")
    recorded = report.get("graphs_sha256", {})
    for graph in graphs:
        if graph.name in recorded and file_sha256(graph) != recorded[graph.name]:
            raise ModelLoadError(f"{graph}: differs from the graph the export wrote (checksum); run `limner export {folder}` again")


def _check_generator_graph(session, config, path: Path) -> None:
    """ModelLoadError unless the graph takes (B, noise_dim) noise and (B, text_dim) sentences and
    draws (B, 3, resolution, resolution) images, as the generator's config says."""
    shapes = {node.name: node.shape for node in (*session.get_inputs(), *session.get_outputs())}
    expected = {"noise": [config.noise_dim], "sentence": [config.text_dim], "images": [3, config.resolution, config.resolution]}
    for name, tail in expected.items():
        shape = shapes.get(name)
        # a dimension the exporter left symbolic (a name, not a number) cannot disagree
        if shape is None or len(shape) != len(tail) + 1 or any(isinstance(got, int) and got != want for got, want in zip(shape[1:], tail)):
            raise ModelLoadError(f"{path}: its {name!r} is shaped {shape}, but the generator's config wants (batch, "
                                 f"{', '.join(map(str, tail))}); the graph belongs to another model: run `limner export` again")
