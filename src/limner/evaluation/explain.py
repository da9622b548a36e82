"""Why the generator drew what it drew.

- **Word attribution**: each word (or phrase) of a prompt is dropped in turn and the prompt drawn
  again from the same noise; how much the picture changes is the word's score, and where it
  changes is its heat map (the mean over seeds of the per-pixel change). Dropping a colour word
  recolours the object, so its map covers the object; dropping a position word moves it, so its
  map peaks where the object was (the new places vary from seed to seed, the old one does not).
  A second map, of what the word *adds*, keeps only where the picture stands out more from its
  background with the word than without: a dropped position word then lights where the object is,
  not also where it goes.
- **Prompt interpolation**: the pictures along the straight line between two captions' embeddings.
- **Noise walks and latent traversals**: one prompt, the noise moved along a great circle between
  two draws, or one noise entry swept while the rest stay (for the VAE, its latent's dimensions).

`limner explain MODEL "prompt" -o explain.png` draws all of it on one page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from limner.errors import ConfigError
from limner.models.gan import generator_noise
from limner.pipelines import TextToImagePipeline
from limner.utils.images import to_pil


@dataclass
class Attribution:
    words: str            # what was dropped: one word or a phrase
    prompt: str           # the prompt without it
    score: float          # mean per-pixel change, 0 (none) to 1 (every pixel from black to white)
    heat: torch.Tensor    # (H, W) where it changes, mean over seeds, 0 to 1
    added: torch.Tensor   # (H, W) where the word puts something: salience gained with the word, mean over seeds
    images: torch.Tensor  # (S, 3, H, W) in [-1, 1]: the prompt without the words, one per seed


def word_spans(prompt: str) -> list[tuple[int, int]]:
    """One (start, end) span per word of the prompt."""
    return [(i, i + 1) for i in range(len(prompt.split()))]


def without(prompt: str, span: tuple[int, int]) -> str:
    words = prompt.split()
    return " ".join(words[: span[0]] + words[span[1]:])


def attribute_words(pipe: TextToImagePipeline, prompt: str, *, spans: Sequence[tuple[int, int]] | None = None, seeds: int = 8,
                    seed: int = 0) -> tuple[torch.Tensor, list[Attribution]]:
    """The prompt's pictures (S, 3, H, W) for `seeds` noises, and one Attribution per span (each word
    unless given), all drawn from the same noises. A span that would leave no words is skipped."""
    words = prompt.split()
    if not words:
        raise ConfigError("explain needs a prompt with at least one word")
    spans = list(spans) if spans is not None else word_spans(prompt)
    for start, end in spans:
        if not 0 <= start < end <= len(words):
            raise ConfigError(f"span ({start}, {end}) is outside the prompt's {len(words)} words")
    full = pipe.generate_tensors(prompt, num_images_per_prompt=seeds, seed=seed)
    found = []
    for span in spans:
        shorter = without(prompt, span)
        if not shorter:
            continue
        images = pipe.generate_tensors(shorter, num_images_per_prompt=seeds, seed=seed)
        change = pixel_change(full, images)  # (S, H, W)
        heat = change.mean(0)
        added = (salience(full) - salience(images)).clamp(min=0).mean(0)
        found.append(Attribution(" ".join(words[span[0]:span[1]]), shorter, float(heat.mean()), heat, added, images))
    return full, found


def pixel_change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) pairs in [-1, 1] -> (N, H, W): the mean absolute change over channels, 0 to 1."""
    return (a - b).abs().mean(1) / 2


def salience(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W): how far each pixel stands from the image's background,
    taken as the median colour of its border pixels (0 to 1)."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1)  # (N, 3, 2H + 2W)
    background = border.median(dim=-1).values[..., None, None]  # (N, 3, 1, 1)
    return (images - background).abs().mean(1) / 2


def peak(heat: torch.Tensor, *, smooth: int = 5) -> tuple[float, float]:
    """Where a heat map (H, W) is highest after a box blur of `smooth` pixels, as (x, y) in 0-1."""
    height, width = heat.shape
    blurred = F.avg_pool2d(heat[None, None], smooth, stride=1, padding=smooth // 2, count_include_pad=False)[0, 0]
    index = int(blurred.argmax())
    row, col = divmod(index, width)
    return (col + 0.5) / width, (row + 0.5) / height


def interpolate_prompts(pipe: TextToImagePipeline, first: str, second: str, *, steps: int = 8, seeds: int = 4, seed: int = 0) -> torch.Tensor:
    """(seeds * steps, 3, H, W): each row one noise, from `first` (left) to `second` (right) along the
    straight line between their sentence embeddings."""
    if steps < 2:
        raise ConfigError(f"an interpolation needs at least 2 steps, got {steps}")
    ends = pipe.text_encoder.encode([first, second]).sentence  # (2, D)
    weights = torch.linspace(0, 1, steps)[:, None]
    sentences = (1 - weights) * ends[0] + weights * ends[1]  # (steps, D)
    noise = _noise(pipe, seeds, seed)
    return pipe.generate_from(noise.repeat_interleave(steps, 0), sentences.repeat(seeds, 1))


def noise_walk(pipe: TextToImagePipeline, prompt: str, *, steps: int = 8, seed: int = 0) -> torch.Tensor:
    """(steps, 3, H, W): one prompt, the noise along the great circle from one draw to another
    (spherical interpolation keeps every step as likely a draw as the ends)."""
    if steps < 2:
        raise ConfigError(f"a walk needs at least 2 steps, got {steps}")
    a, b = _noise(pipe, 2, seed)
    angle = torch.arccos((F.normalize(a, dim=0) @ F.normalize(b, dim=0)).clamp(-1, 1))
    t = torch.linspace(0, 1, steps)[:, None]
    if angle < 1e-4:
        path = (1 - t) * a + t * b
    else:
        path = (torch.sin((1 - t) * angle) * a + torch.sin(t * angle) * b) / torch.sin(angle)
    sentence = pipe.text_encoder.encode([prompt]).sentence.expand(steps, -1)
    return pipe.generate_from(path, sentence)


def latent_traversal(pipe: TextToImagePipeline, prompt: str, *, dims: Sequence[int] = (0, 1, 2, 3), values: Sequence[float] = (-2, -1, 0, 1, 2),
                     seed: int = 0) -> torch.Tensor:
    """(len(dims) * len(values), 3, H, W): row d sweeps noise entry dims[d] through `values`, the
    other entries held at one draw. For the VAE the noise is its latent; for a GAN with noise codes
    the first entries choose the code."""
    noise_dim = pipe.generator.config.noise_dim
    bad = [d for d in dims if not 0 <= d < noise_dim]
    if bad:
        raise ConfigError(f"latent dimensions {bad} are outside the model's {noise_dim}")
    base = _noise(pipe, 1, seed)[0]
    rows = []
    for dim in dims:
        for value in values:
            point = base.clone()
            point[dim] = value
            rows.append(point)
    sentence = pipe.text_encoder.encode([prompt]).sentence.expand(len(rows), -1)
    return pipe.generate_from(torch.stack(rows), sentence)


def _noise(pipe: TextToImagePipeline, count: int, seed: int) -> torch.Tensor:
    return generator_noise(pipe.generator.config, count, truncation=pipe.truncation, generator=torch.Generator().manual_seed(seed))


def heat_overlay(image: torch.Tensor, heat: torch.Tensor, *, scale: float) -> Image.Image:
    """The picture (3, H, W) in [-1, 1], dimmed, under the heat map (H, W) in red; `scale` is the
    heat that shows fully (one scale for all rows, so they compare)."""
    base = (image + 1) / 2 * 0.35  # dimmed, in 0-1
    strength = (heat / max(scale, 1e-8)).clamp(0, 1)
    red = torch.stack([strength, 0.25 * strength, 0.1 * strength])
    return to_pil((base + red).clamp(0, 1)[None] * 2 - 1)[0]


def explain_page(pipe: TextToImagePipeline, prompt: str, *, seeds: int = 6, seed: int = 0, other_prompt: str | None = None,
                 scale: int = 2) -> tuple[Image.Image, list[Attribution]]:
    """One picture: the prompt's samples; per word its change map and its added map, then the samples without it; a
    noise walk; and, with `other_prompt`, the interpolation towards it. Also the attributions."""
    full, found = attribute_words(pipe, prompt, seeds=seeds, seed=seed)
    top = max((a.heat.max().item() for a in found), default=1.0)
    top_added = max((a.added.max().item() for a in found), default=1.0)
    blank = Image.new("RGB", (pipe.resolution, pipe.resolution), (255, 255, 255))
    sections = [([blank, blank, *to_pil(full)], f'"{prompt}"  (per word: where it changes, where it adds, then without it)')]
    for attribution in sorted(found, key=lambda a: -a.score):
        tiles = [heat_overlay(full[0], attribution.heat, scale=top), heat_overlay(full[0], attribution.added, scale=top_added),
                 *to_pil(attribution.images)]
        sections.append((tiles, f'without "{attribution.words}": {attribution.score:.3f}'))
    walk = noise_walk(pipe, prompt, steps=seeds + 1, seed=seed)
    sections.append((to_pil(walk), "noise walk"))
    if other_prompt:
        line = interpolate_prompts(pipe, prompt, other_prompt, steps=seeds + 1, seeds=1, seed=seed)
        sections.append((to_pil(line), f'towards "{other_prompt}"'))
    return labelled_rows(sections, scale=scale), found


def labelled_rows(rows: Sequence[tuple[Sequence[Image.Image], str]], *, scale: int = 2, padding: int = 3) -> Image.Image:
    """Rows of tiles, each with its label above it (labels can be long: prompts)."""
    font = ImageFont.load_default()
    side = rows[0][0][0].width * scale
    columns = max(len(tiles) for tiles, _ in rows)
    label_height = 14
    width = padding + columns * (side + padding)
    height = sum(label_height + side + padding for _ in rows) + padding
    page = Image.new("RGB", (max(width, 200), height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    y = padding
    for tiles, label in rows:
        draw.text((padding, y), label, fill=(0, 0, 0), font=font)
        y += label_height
        for column, tile in enumerate(tiles):
            page.paste(tile.resize((side, side), Image.Resampling.NEAREST), (padding + column * (side + padding), y))
        y += side + padding
    return page


__all__ = ["Attribution", "attribute_words", "explain_page", "heat_overlay", "interpolate_prompts", "latent_traversal", "noise_walk",
           "peak", "pixel_change", "word_spans", "without"]
