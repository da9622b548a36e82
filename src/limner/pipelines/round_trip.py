"""Text to image to text: a generator draws each prompt, a captioner describes what it drew.

>>> from limner.pipelines import TextToImagePipeline, round_trip
>>> from limner.pipelines.image_to_text import ImageToTextPipeline
>>> trips = round_trip(TextToImagePipeline.from_pretrained("outputs/shapes"),
...                    ImageToTextPipeline.from_pretrained("outputs/shapes-captioner"), ["a small red circle in the top left"])
>>> trips[0]["caption"], trips[0]["exact"]
('a small red circle in the top left', True)
"""

from __future__ import annotations

from typing import Sequence

from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.pipelines.text_to_image import TextToImagePipeline


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def round_trip(generator: TextToImagePipeline, captioner: ImageToTextPipeline, prompts: str | Sequence[str], *,
               num_images_per_prompt: int = 1, seed: int | None = 0) -> list[dict]:
    """One dict per image, grouped by prompt: {"prompt", "image" (PIL), "caption", "exact"}; `exact`
    compares prompt and caption ignoring case and spacing."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    images = generator(prompts, num_images_per_prompt=num_images_per_prompt, seed=seed)
    captions = [c["generated_text"] for c in captioner(images)]
    asked = [p for p in prompts for _ in range(num_images_per_prompt)]
    return [{"prompt": p, "image": image, "caption": c, "exact": normalise(p) == normalise(c)} for p, image, c in zip(asked, images, captions)]


def exact_rate(trips: Sequence[dict]) -> float:
    return sum(t["exact"] for t in trips) / len(trips) if trips else 0.0
