"""Inference pipelines (no training code here)."""

from __future__ import annotations

import json
from pathlib import Path

from limner.errors import ModelLoadError
from limner.pipelines.adapters import parse_adapter_spec
from limner.pipelines.dual_encoder import DualEncoderPipeline
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.pipelines.round_trip import round_trip
from limner.pipelines.safety_checker import SafetyChecker
from limner.pipelines.text_to_image import GenerationRequest, TextToImageOutput, TextToImagePipeline

PIPELINES = {cls.__name__: cls for cls in (TextToImagePipeline, ImageToTextPipeline, DualEncoderPipeline)}
PIPELINES["AlignmentPipeline"] = DualEncoderPipeline  # an aligner saved by an earlier release


def load_pipeline(folder: str | Path, *, backend: str = "torch") -> TextToImagePipeline | ImageToTextPipeline | DualEncoderPipeline:
    """Whichever pipeline a saved model folder holds, by its model_index.json; `backend` picks
    how a text-to-image generator runs (captioners run in PyTorch). "BASE+ADAPTER[:SCALE]+..."
    loads a text-to-image base with adapters or learned words from `limner finetune` (what
    `limner serve` takes)."""
    base, *adapters = str(folder).split("+")
    if adapters:
        pipe = load_pipeline(base, backend=backend)
        if not isinstance(pipe, TextToImagePipeline):
            raise ModelLoadError(f"{base}: adapters go on text-to-image models, this is a {type(pipe).__name__}")
        for spec in adapters:
            pipe.load_adapter(*parse_adapter_spec(spec))
        return pipe
    index_path = Path(folder) / "model_index.json"
    try:
        name = json.loads(index_path.read_text()).get("_class_name")
    except FileNotFoundError:
        raise ModelLoadError(f"{folder}: no model_index.json; is this a folder written by `limner train`?") from None
    except (json.JSONDecodeError, AttributeError) as err:
        raise ModelLoadError(f"{index_path}: not a valid model index ({err})") from err
    if name not in PIPELINES:
        raise ModelLoadError(f"{index_path}: unknown pipeline class {name!r}; known: {sorted(PIPELINES)}")
    if name == TextToImagePipeline.__name__:
        return TextToImagePipeline.from_pretrained(folder, backend=backend)
    return PIPELINES[name].from_pretrained(folder)


__all__ = ["DualEncoderPipeline", "GenerationRequest", "ImageToTextPipeline", "TextToImagePipeline", "SafetyChecker", "TextToImageOutput",
           "load_pipeline", "round_trip"]
