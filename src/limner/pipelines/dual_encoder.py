"""A saved dual encoder (evaluator or aligner) with its text encoder: score, rank, and load by role.

One folder format for both roles: `dual_encoder/` (config.json + model.safetensors),
`text_encoder/config.json` and `model_index.json` (the class, the role, and how it was trained
and scored). Folders of earlier releases (`evaluator_index.json` + `evaluator/`, or an
AlignmentPipeline's `aligner/`) still load.

>>> aligner = DualEncoderPipeline.from_pretrained("outputs/shapes-aligner", role="aligner")
>>> aligner.rank_captions(Image.open("a.png"), ["a red circle in the top left", "a blue square"])
[('a red circle in the top left', 0.83), ('a blue square', 0.02)]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from limner.errors import ConfigError, ModelLoadError
from limner.models.dual_encoder import ROLES, DualEncoder
from limner.pipelines.image_to_text import preprocess_images
from limner.text import TextEncoder, load_text_encoder
from limner.utils.files import read_json_object

MODEL_INDEX = "model_index.json"
MODEL_FOLDER = "dual_encoder"
# earlier releases: (index file, model subfolder) of an evaluator and of an aligner
LEGACY_LAYOUTS = (("evaluator_index.json", "evaluator"), (MODEL_INDEX, "aligner"))
TRAIN_HINT = {"evaluator": "limner train --model evaluator", "aligner": "limner train --model aligner"}


class DualEncoderPipeline:
    def __init__(self, model: DualEncoder, text_encoder: TextEncoder, info: dict | None = None) -> None:
        self.model = model.eval()
        self.text_encoder = text_encoder
        self.info = dict(info or {})  # how it was trained and its scores on real test images

    @property
    def role(self) -> str:
        return self.model.role

    @property
    def resolution(self) -> int:
        return self.model.config.resolution

    @torch.no_grad()
    def similarities(self, images: Sequence[Image.Image], captions: Sequence[str]) -> torch.Tensor:
        """Cosines (n_images, n_captions) in [-1, 1]."""
        images, captions = list(images), list(captions)
        if not images or not captions:
            raise ConfigError("similarities need at least one image and one caption")
        image_embeddings = self.model.image_embedding(preprocess_images(images, self.resolution))
        text_embeddings = self.model.text_embedding(self.text_encoder.encode(captions).sentence)
        return image_embeddings @ text_embeddings.T

    def rank_captions(self, image: Image.Image, captions: Sequence[str]) -> list[tuple[str, float]]:
        """The captions, best match for the image first, with their cosines."""
        scores = self.similarities([image], captions)[0]
        return [(captions[i], round(float(scores[i]), 4)) for i in scores.argsort(descending=True).tolist()]

    def rank_images(self, caption: str, images: Sequence[Image.Image]) -> list[tuple[int, float]]:
        """(index into `images`, cosine), best match for the caption first."""
        scores = self.similarities(images, [caption])[:, 0]
        return [(i, round(float(scores[i]), 4)) for i in scores.argsort(descending=True).tolist()]

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder / MODEL_FOLDER)
        (folder / "text_encoder").mkdir(exist_ok=True)
        (folder / "text_encoder" / "config.json").write_text(json.dumps(self.text_encoder.config(), indent=2) + "\n")
        index = {"_class_name": type(self).__name__, "role": self.role, **self.info}
        (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, role: str | None = None) -> "DualEncoderPipeline":
        """The dual encoder saved in `folder`; with `role`, one of that role only (an evaluator must
        not stand in for an aligner, nor the other way round)."""
        if role is not None and role not in ROLES:
            raise ConfigError(f"role must be one of {list(ROLES)}, got {role!r}")
        folder = Path(folder)
        index_path, model_folder = _layout(folder, role)
        info = read_json_object(index_path)
        info.pop("_class_name", None)
        model = DualEncoder.from_pretrained(model_folder)
        if role is not None and model.role != role:
            raise ModelLoadError(f"{folder}: holds an {model.role}, not an {role}; train one with `{TRAIN_HINT[role]}`")
        text_encoder = load_text_encoder(read_json_object(folder / "text_encoder" / "config.json"))
        if text_encoder.dim != model.config.text_dim:
            raise ModelLoadError(f"{folder}: text encoder gives {text_encoder.dim}-d embeddings, the {model.role} wants {model.config.text_dim}")
        info.pop("role", None)
        return cls(model, text_encoder, info)


def _layout(folder: Path, role: str | None) -> tuple[Path, Path]:
    """(index file, model subfolder) of a saved dual encoder, this release's or an earlier one's."""
    for index_name, model_name in ((MODEL_INDEX, MODEL_FOLDER), *LEGACY_LAYOUTS):
        if (folder / index_name).is_file() and (folder / model_name).is_dir():
            return folder / index_name, folder / model_name
    hint = TRAIN_HINT.get(role or "", "limner train --model evaluator (or aligner)")
    raise ModelLoadError(f"{folder}: no {MODEL_INDEX} with a {MODEL_FOLDER}/ folder; is this a folder written by `{hint}`?")


def load_evaluator(folder: str | Path) -> tuple[DualEncoder, TextEncoder, dict]:
    """The evaluator of `folder` (what `limner evaluate` and the safety checker read), its text encoder and its index."""
    pipe = DualEncoderPipeline.from_pretrained(folder, role="evaluator")
    return pipe.model, pipe.text_encoder, pipe.info


def save_evaluator(folder: Path, evaluator: DualEncoder, text_encoder: TextEncoder, info: dict) -> None:
    DualEncoderPipeline(evaluator, text_encoder, info).save_pretrained(folder)
