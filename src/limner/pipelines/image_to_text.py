"""Inference: PIL images in, captions out, in the transformers image-to-text convention.

>>> captioner = ImageToTextPipeline.from_pretrained("outputs/shapes-captioner")
>>> captioner([Image.open("a.png")])
[{'generated_text': 'a large red circle in the top left'}]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from limner.utils.images import square_resize, to_rgb
from limner.errors import ModelLoadError
from limner.models.captioner import Captioner
from limner.text.caption_vocabulary import CaptionVocabulary, load_tokenizer
from limner.utils.images import from_uint8

MODEL_INDEX = "model_index.json"


class ImageToTextPipeline:
    def __init__(self, captioner: Captioner, tokenizer_name: str, *, beams: int = 1, max_length: int | None = None,
                 max_batch_size: int = 64, tokenizer=None) -> None:
        self.captioner = captioner.eval()
        self.tokenizer_name = tokenizer_name
        self.vocabulary = CaptionVocabulary(tokenizer or load_tokenizer(tokenizer_name), captioner.config.vocabulary)
        self.beams = beams
        self.max_length = max_length
        self.max_batch_size = max_batch_size

    @property
    def resolution(self) -> int:
        return self.captioner.config.resolution

    def __call__(self, images: Image.Image | Sequence[Image.Image], *, beams: int | None = None, max_length: int | None = None) -> list[dict]:
        images = [images] if isinstance(images, Image.Image) else list(images)
        if not images:
            return []
        tensor = self.preprocess(images)
        beams = beams or self.beams
        ids: list[list[int]] = []
        for chunk in tensor.split(self.max_batch_size):
            if beams == 1:
                ids += self.captioner.greedy(chunk, max_length=max_length or self.max_length)
            else:
                ids += self.captioner.beam_search(chunk, beams=beams, max_length=max_length or self.max_length)
        return [{"generated_text": self.vocabulary.decode(row)} for row in ids]

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return preprocess_images(images, self.resolution)

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.captioner.save_pretrained(folder / "captioner")
        index = {"_class_name": type(self).__name__, "captioner": ["limner", "Captioner"],
                 "tokenizer": self.tokenizer_name, "beams": self.beams}
        (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "ImageToTextPipeline":
        folder = Path(folder)
        index_path = folder / MODEL_INDEX
        if not index_path.is_file():
            raise ModelLoadError(f"{folder}: no {MODEL_INDEX}; is this a folder written by `limner train --model captioner`?")
        index = json.loads(index_path.read_text())
        if index.get("_class_name") != cls.__name__:
            raise ModelLoadError(f"{folder}: holds a {index.get('_class_name')}, not an {cls.__name__}")
        return cls(Captioner.from_pretrained(folder / "captioner"), index["tokenizer"], beams=int(index.get("beams", 1)))


def preprocess_images(images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
    """PIL images of any size and mode -> (B, 3, R, R) in [-1, 1], converted exactly as the
    training images were read (alpha over white, centre crop, Lanczos resize)."""
    arrays = []
    for image in images:
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected PIL images, got {type(image).__name__}")
        arrays.append(np.asarray(square_resize(to_rgb(image), resolution)))
    return from_uint8(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))
