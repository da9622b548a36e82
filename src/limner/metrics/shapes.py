"""The shapes judge applied to a text-to-image pipeline."""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from limner.data.shapes import _FOREGROUND_THRESHOLD as FOREGROUND_THRESHOLD
from limner.data.shapes import ATTRIBUTES, Composition, judge, render


def shapes_accuracy(
    pipeline,
    targets: Sequence[tuple[str, Composition]],
    *,
    images_per_caption: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """Mean judge verdict per attribute (and "all") over `images_per_caption` images of each caption.

    `targets` pairs the prompt given to the pipeline with the composition it
    means, so paraphrased prompts are judged against their canonical attributes.
    """
    if not targets:
        raise ValueError("shapes_accuracy needs at least one (prompt, composition) pair")
    prompts = [prompt for prompt, _ in targets]
    images = pipeline(prompts, num_images_per_prompt=images_per_caption, seed=seed)
    totals = {name: 0 for name in (*ATTRIBUTES, "all")}
    for i, image in enumerate(images):
        verdict = judge(image, targets[i // images_per_caption][1])
        for name, ok in verdict.items():
            totals[name] += int(ok)
    totals_count = len(images)
    return {name: count / totals_count for name, count in totals.items()} | {"images": totals_count}


def placement(image) -> tuple[float, float, float] | None:
    """(centre x, centre y, sqrt of area) of the object, in pixels; None when nothing is drawn.
    Read from the foreground mask the judge uses (a max channel above its threshold)."""
    array = np.asarray(image.convert("RGB"))
    mask = array.max(axis=2) > FOREGROUND_THRESHOLD
    if mask.sum() < 2:
        return None
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean()), float(np.sqrt(mask.sum()))


def placement_spread(images_per_caption: Sequence[Sequence]) -> dict[str, float]:
    """How much the object moves and changes size among images of one caption: the standard
    deviation of its centre (pixels, x and y pooled) and of the sqrt of its area, averaged over captions."""
    position, size = [], []
    for images in images_per_caption:
        placed = np.array([p for p in map(placement, images) if p is not None])
        if len(placed) < 2:
            continue
        position.append(float(np.sqrt((placed[:, 0].var() + placed[:, 1].var()) / 2)))
        size.append(float(placed[:, 2].std()))
    return {"position_std_px": float(np.mean(position)), "size_std_px": float(np.mean(size)), "captions": len(position)}


def real_placement_spread(compositions: Sequence[Composition], resolution: int, images_per_caption: int, seed: int = 0) -> dict[str, float]:
    """placement_spread of the dataset's own renderer: the jitter the specification allows."""
    rng = random.Random(seed)
    return placement_spread([[render(c, resolution, rng) for _ in range(images_per_caption)] for c in compositions])


def generated_placement_spread(pipeline, compositions: Sequence[Composition], images_per_caption: int, seed: int = 0) -> dict[str, float]:
    images = pipeline([c.caption for c in compositions], num_images_per_prompt=images_per_caption, seed=seed)
    groups = [images[i * images_per_caption:(i + 1) * images_per_caption] for i in range(len(compositions))]
    return placement_spread(groups)
