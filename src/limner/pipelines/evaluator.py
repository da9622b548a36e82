"""The saved evaluator: `evaluator/` (config.json + model.safetensors), `text_encoder/config.json`
and `evaluator_index.json` (how it was trained and its scores on real test images), as
`limner train --model evaluator` writes it and `limner evaluate` reads it."""

from __future__ import annotations

import json
from pathlib import Path

from limner.errors import ModelLoadError
from limner.models.evaluator import Evaluator
from limner.text import TextEncoder, load_text_encoder

INDEX_NAME = "evaluator_index.json"


def save_evaluator(folder: Path, evaluator: Evaluator, text_encoder: TextEncoder, info: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    evaluator.save_pretrained(folder / "evaluator")
    (folder / "text_encoder").mkdir(exist_ok=True)
    (folder / "text_encoder" / "config.json").write_text(json.dumps(text_encoder.config(), indent=2) + "\n")
    (folder / INDEX_NAME).write_text(json.dumps({"_class_name": "Evaluator", **info}, indent=2) + "\n")


def load_evaluator(folder: str | Path) -> tuple[Evaluator, TextEncoder, dict]:
    folder = Path(folder)
    if not (folder / INDEX_NAME).is_file():
        raise ModelLoadError(f"{folder}: no {INDEX_NAME}; train one with `limner train --model evaluator`")
    evaluator = Evaluator.from_pretrained(folder / "evaluator")
    text_encoder = load_text_encoder(json.loads((folder / "text_encoder" / "config.json").read_text()))
    if text_encoder.dim != evaluator.config.text_dim:
        raise ModelLoadError(f"{folder}: text encoder gives {text_encoder.dim}-d embeddings, the evaluator wants {evaluator.config.text_dim}")
    return evaluator, text_encoder, json.loads((folder / INDEX_NAME).read_text())
