"""Figures for datasets whose metadata names a `style` and a `concept` (emoji-styles): does the
model draw the asked style on combinations it never saw, the right concept, and, for a
style-free prompt, several styles? Each beside the same figure for real images.

The style of an image is read by the evaluator's style head (a linear probe fitted on real
images when the evaluator was trained); the concept by ranking the concept names in the
evaluator's joint space.
"""

from __future__ import annotations

import torch

from limner.data import ImageFolder
from limner.metrics.alignment import diversity, r_precision
from limner.models.dual_encoder import DualEncoder
from limner.pipelines import TextToImagePipeline
from limner.text import TextEncoder
from limner.utils.images import from_uint8

UNSEEN_COMBINATION = "unseen_combination"


def has_styles(columns: list[dict], evaluator: DualEncoder) -> bool:
    return bool(evaluator.config.styles) and bool(columns) and all("style" in c and "concept" in c for c in columns)


def _read_styles(evaluator: DualEncoder, features: torch.Tensor) -> torch.Tensor:
    return evaluator.style_logits(features).argmax(1)


def _style_labels(evaluator: DualEncoder, columns: list[dict]) -> torch.Tensor:
    index = {style: i for i, style in enumerate(evaluator.config.styles)}
    return torch.tensor([index.get(c["style"], -1) for c in columns])


@torch.no_grad()
def style_figures(evaluator: DualEncoder, evaluator_text: TextEncoder, pipe: TextToImagePipeline, data_dir, *,
                  columns: list[dict], real: torch.Tensor, fake: torch.Tensor, seed: int,
                  style_free_prompts: int = 50, samples: int = 12) -> dict:
    """columns: the metadata of each real test image; fake[i] was drawn from real[i]'s styled caption."""
    unseen = torch.tensor([c.get("split_kind") == UNSEEN_COMBINATION for c in columns])
    if not unseen.any():
        unseen = torch.ones(len(columns), dtype=torch.bool)  # no split kinds: every test image
    concepts = _all_concepts(data_dir, columns)
    concept_table = evaluator.text_embedding(evaluator_text.encode(concepts).sentence)
    concept_index = {name: i for i, name in enumerate(concepts)}
    picked = [c for c, keep in zip(columns, unseen.tolist()) if keep]
    concept_ids = torch.tensor([concept_index[c["concept"]] for c in picked])
    labels = _style_labels(evaluator, picked)
    figures = {"images": int(unseen.sum()), "concepts_ranked": len(concepts)}
    for name, images in (("generated", fake[unseen]), ("real_floor", real[unseen])):
        features = evaluator.pooled_features(images)
        vectors = evaluator.embed_features(features)
        folds = min(10, len(picked))
        figures[name] = {
            "style_accuracy": round((_read_styles(evaluator, features) == labels).float().mean().item(), 4),
            "concept_r_precision": r_precision(vectors, concept_ids, concept_table, folds=folds, seed=seed),
            "concept_accuracy": round(((vectors @ concept_table.T).argmax(1) == concept_ids).float().mean().item(), 4),
        }
    figures["style_free"] = style_free_figures(evaluator, pipe, data_dir, sorted({c["concept"] for c in picked}),
                                               prompts=style_free_prompts, samples=samples, seed=seed)
    return figures


def _all_concepts(data_dir, columns: list[dict]) -> list[str]:
    train = ImageFolder(data_dir, "train").records
    return sorted({c["concept"] for c in columns} | {r.columns.get("concept") for r in train if r.columns.get("concept")})


@torch.no_grad()
def style_free_figures(evaluator: DualEncoder, pipe: TextToImagePipeline, data_dir, concepts: list[str], *,
                       prompts: int, samples: int, seed: int) -> dict:
    """For up to `prompts` concept names asked without a style, `samples` images each: the mean
    number of distinct styles the style head reads, and per-prompt diversity; for real images,
    the same over every real image of the concept (train and test)."""
    order = torch.randperm(len(concepts), generator=torch.Generator().manual_seed(seed))[:prompts]
    chosen = [concepts[i] for i in order.tolist()]
    generated = pipe.generate_tensors(chosen, num_images_per_prompt=samples, seed=seed + 7)  # grouped by prompt
    ids = torch.arange(len(chosen)).repeat_interleave(samples)
    features = evaluator.pooled_features(generated)
    real_images, real_ids = _real_images_of(data_dir, chosen, evaluator.config.resolution)
    real_features = evaluator.pooled_features(real_images)
    return {
        "prompts": len(chosen), "samples_per_prompt": samples,
        "generated": {"distinct_styles": _distinct(_read_styles(evaluator, features), ids),
                      "diversity": round(diversity(features, ids), 4)},
        "real_floor": {"distinct_styles": _distinct(_read_styles(evaluator, real_features), real_ids),
                       "diversity": round(diversity(real_features, real_ids), 4),
                       "real_images_per_prompt": round(real_ids.numel() / len(chosen), 2)},
    }


def _distinct(styles: torch.Tensor, ids: torch.Tensor) -> float:
    counts = [styles[ids == group].unique().numel() for group in ids.unique()]
    return round(sum(counts) / len(counts), 3)


def _real_images_of(data_dir, concepts: list[str], resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    index = {name: i for i, name in enumerate(concepts)}
    images, ids = [], []
    for split in ("train", "test"):
        folder = ImageFolder(data_dir, split)
        folder.records = [r for r in folder.records if r.columns.get("concept") in index]
        if folder.records:
            images.append(from_uint8(folder.load_images(resolution, progress=False)))
            ids += [index[r.columns["concept"]] for r in folder.records]
    return torch.cat(images), torch.tensor(ids)
