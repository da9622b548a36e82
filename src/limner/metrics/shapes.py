"""The shapes judge applied to a text-to-image pipeline."""

from __future__ import annotations

from typing import Sequence

from limner.data.shapes import ATTRIBUTES, Composition, judge


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
