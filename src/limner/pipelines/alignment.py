"""Inference with the aligner: rank captions for an image, images for a caption, score pairs.

>>> aligner = AlignmentPipeline.from_pretrained("outputs/shapes-aligner")
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
from limner.models.aligner import Aligner
from limner.pipelines.image_to_text import preprocess_images
from limner.text import TextEncoder, load_text_encoder

MODEL_INDEX = "model_index.json"


class AlignmentPipeline:
    def __init__(self, aligner: Aligner, text_encoder: TextEncoder) -> None:
        self.aligner = aligner.eval()
        self.text_encoder = text_encoder

    @property
    def resolution(self) -> int:
        return self.aligner.config.resolution

    @torch.no_grad()
    def similarities(self, images: Sequence[Image.Image], captions: Sequence[str]) -> torch.Tensor:
        """Cosines (n_images, n_captions) in [-1, 1]."""
        images, captions = list(images), list(captions)
        if not images or not captions:
            raise ConfigError("similarities need at least one image and one caption")
        image_embeddings = self.aligner.image_embedding(preprocess_images(images, self.resolution))
        text_embeddings = self.aligner.text_embedding(self.text_encoder.encode(captions).sentence)
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
        self.aligner.save_pretrained(folder / "aligner")
        (folder / "text_encoder").mkdir(exist_ok=True)
        (folder / "text_encoder" / "config.json").write_text(json.dumps(self.text_encoder.config(), indent=2) + "\n")
        index = {"_class_name": type(self).__name__, "aligner": ["limner", "Aligner"], "text_encoder": ["limner", type(self.text_encoder).__name__]}
        (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "AlignmentPipeline":
        folder = Path(folder)
        if not (folder / MODEL_INDEX).is_file():
            raise ModelLoadError(f"{folder}: no {MODEL_INDEX}; is this a folder written by `limner train --model aligner`?")
        try:
            index = json.loads((folder / MODEL_INDEX).read_text())
            encoder_config = json.loads((folder / "text_encoder" / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ModelLoadError(f"{folder}: unreadable model index or text encoder config ({err})") from err
        if not isinstance(index, dict) or index.get("_class_name") != cls.__name__:
            raise ModelLoadError(f"{folder}: holds a {index.get('_class_name') if isinstance(index, dict) else index!r}, not an {cls.__name__}")
        aligner = Aligner.from_pretrained(folder / "aligner")
        text_encoder = load_text_encoder(encoder_config)
        if text_encoder.dim != aligner.config.text_dim:
            raise ModelLoadError(f"{folder}: text encoder gives {text_encoder.dim}-d embeddings, the aligner wants {aligner.config.text_dim}")
        return cls(aligner, text_encoder)
