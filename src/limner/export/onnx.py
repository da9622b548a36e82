"""ONNX export of a text-to-image model folder (the onnxruntime backend that runs it is
limner.pipelines.onnx_backend).

`export_onnx(folder)` writes `folder/onnx/`:
    generator.onnx      noise (B, Z), sentence (B, D) -> images (B, 3, H, W) in [-1, 1]
    text_encoder.onnx   input_ids, attention_mask (B, T) -> sentence (B, D), pooled and
                        normalised as the encoder does (Hugging Face encoders only; the
                        bag-of-words encoder is a lookup that stays in Python)
    generator.int8.onnx with quantize="dynamic" or "static": the generator in int8
                        (limner.export.quantize); backend="onnx-int8" runs it
    export.json         opset, the batch sizes checked, the largest difference from PyTorch
                        measured at export, and the checksum of each graph and of the weights
                        it came from (a graph that no longer matches is refused at load)
Batch (and token) dimensions are dynamic. `TextToImagePipeline.from_pretrained(folder,
backend="onnx")` then runs both graphs in onnxruntime, tokenising in Python.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from limner.errors import ConfigError, ModelLoadError
from limner.export.quantize import quantize_generator
from limner.models import generator_noise
from limner.pipelines.onnx_backend import EXPORT_REPORT, INT8_GENERATOR, ONNX_FOLDER, load_onnx_parts
from limner.utils.files import file_sha256

OPSET = 18
TOLERANCE = 1e-3  # largest absolute difference from PyTorch accepted at export (images and embeddings lie in [-1, 1])


class _SentenceGraph(nn.Module):
    """The Hugging Face encoder's forward, pooling and normalisation as one traceable module."""

    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.model = encoder.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden_layer = self.encoder.hidden_layer
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=hidden_layer is not None)
        tokens = output.last_hidden_state if hidden_layer is None else output.hidden_states[hidden_layer]
        sentence = self.encoder._pool(output, tokens, attention_mask.bool())
        if self.encoder.normalize:
            sentence = nn.functional.normalize(sentence, dim=-1)
        return sentence.float()


def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str], dynamic: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                      dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def export_generator(generator, path: Path) -> None:
    """generator.onnx: noise (B, Z), sentence (B, D) -> images, the batch dynamic."""
    z, d = generator.config.noise_dim, generator.config.text_dim
    _export(generator.eval(), (torch.randn(2, z), torch.randn(2, d)), path, ["noise", "sentence"], ["images"],
            {"noise": {0: "batch"}, "sentence": {0: "batch"}, "images": {0: "batch"}})


def export_text_encoder(encoder, path: Path) -> None:
    """text_encoder.onnx: input_ids, attention_mask (B, T) -> pooled, normalised sentence (B, D)."""
    batch = encoder.tokenizer(["a caption", "another, longer caption"], padding=True, return_tensors="pt")
    _export(_SentenceGraph(encoder).eval(), (batch["input_ids"], batch["attention_mask"]), path,
            ["input_ids", "attention_mask"], ["sentence"],
            {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "sentence": {0: "batch"}})


def export_onnx(folder: str | Path, *, check_batches: tuple[int, ...] = (1, 5), quantize: str | None = None,
                calibration_captions: list[str] | None = None) -> dict[str, Any]:
    """Export the model folder's generator (and Hugging Face text encoder) to `folder/onnx/`,
    check the graphs against PyTorch at each batch size in `check_batches`, and return the report.
    quantize "dynamic" or "static" also writes the int8 generator (static calibrates on
    `calibration_captions`, the model's own) and reports how far it lies from PyTorch."""
    from limner.pipelines import TextToImagePipeline
    from limner.text.huggingface import HuggingFaceTextEncoder

    if quantize == "static" and not calibration_captions:
        raise ConfigError("static quantisation calibrates on the model's own captions: give calibration_captions")
    folder = Path(folder)
    pipe = TextToImagePipeline.from_pretrained(folder)
    out = folder / ONNX_FOLDER
    for stale in (INT8_GENERATOR, EXPORT_REPORT):  # an int8 graph, or checksums, of older weights must not outlive this export
        (out / stale).unlink(missing_ok=True)
    export_generator(pipe.generator, out / "generator.onnx")
    report: dict[str, Any] = {"opset": OPSET, "tolerance": TOLERANCE, "checked_batches": list(check_batches)}
    if isinstance(pipe.text_encoder, HuggingFaceTextEncoder):
        export_text_encoder(pipe.text_encoder, out / "text_encoder.onnx")
    report.update(_compare(folder, pipe, check_batches))
    worst = max(report["generator_max_abs_diff"], report.get("text_encoder_max_abs_diff", 0.0))
    if worst > TOLERANCE:
        raise ModelLoadError(f"{out}: the exported graphs differ from PyTorch by {worst:.2g} (> {TOLERANCE}); not usable")
    if quantize:
        calibration = calibration_inputs(pipe, calibration_captions) if quantize == "static" else None
        quantize_generator(out / "generator.onnx", out / INT8_GENERATOR, quantize, calibration)
        report["int8"] = {"mode": quantize, "calibration_captions": len(calibration_captions or []) if calibration else 0,
                          **_compare_int8(out / INT8_GENERATOR, pipe, check_batches)}
    report["source_sha256"] = file_sha256(folder / "generator" / "model.safetensors")
    report["graphs_sha256"] = {path.name: file_sha256(path) for path in sorted(out.glob("*.onnx"))}
    (out / EXPORT_REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


@torch.no_grad()
def calibration_inputs(pipe, captions: list[str], *, limit: int = 256, batch: int = 16) -> list[dict[str, np.ndarray]]:
    """Generator inputs for static calibration: up to `limit` of the captions, each with noise
    drawn as the pipeline draws it (its truncation), in batches."""
    captions = captions[:limit]
    rng = torch.Generator().manual_seed(0)
    inputs = []
    for start in range(0, len(captions), batch):
        part = captions[start:start + batch]
        noise = generator_noise(pipe.generator.config, len(part), truncation=pipe.truncation, generator=rng)
        inputs.append({"noise": noise.numpy(), "sentence": pipe.text_encoder.encode(part).sentence.float().numpy()})
    return inputs


@torch.no_grad()
def _compare_int8(path: Path, pipe, batches: tuple[int, ...]) -> dict[str, float]:
    """The int8 graph's largest and mean absolute difference from the PyTorch generator."""
    from limner.pipelines.onnx_backend import OnnxGenerator

    int8 = OnnxGenerator(path, pipe.generator.config)
    largest, total, count = 0.0, 0.0, 0
    for batch in batches:
        noise = torch.randn(batch, pipe.generator.config.noise_dim, generator=torch.Generator().manual_seed(batch))
        sentence = pipe.text_encoder.encode(["a caption"] * batch).sentence
        difference = (pipe.generator(noise, sentence) - int8(noise, sentence)).abs()
        largest, total, count = max(largest, difference.max().item()), total + difference.sum().item(), count + difference.numel()
    return {"max_abs_diff": largest, "mean_abs_diff": total / max(count, 1)}


@torch.no_grad()
def _compare(folder: Path, pipe, batches: tuple[int, ...]) -> dict[str, float]:
    onnx_pipe = load_onnx_parts(folder, pipe)
    generator_diff, text_diff = 0.0, 0.0
    captions = ["a small red circle in the top left", "a large blue square", "two words", "an emoji of a grinning face", "x"]
    for batch in batches:
        prompts = [captions[i % len(captions)] for i in range(batch)]
        sentence = pipe.text_encoder.encode(prompts).sentence
        noise = torch.randn(batch, pipe.generator.config.noise_dim, generator=torch.Generator().manual_seed(batch))
        generator_diff = max(generator_diff, (pipe.generator(noise, sentence) - onnx_pipe[0](noise, sentence)).abs().max().item())
        if onnx_pipe[1] is not pipe.text_encoder:
            text_diff = max(text_diff, (sentence - onnx_pipe[1].encode(prompts).sentence).abs().max().item())
    report = {"generator_max_abs_diff": generator_diff}
    if onnx_pipe[1] is not pipe.text_encoder:
        report["text_encoder_max_abs_diff"] = text_diff
    return report
