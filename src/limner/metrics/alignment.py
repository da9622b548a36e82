"""Image-text and image-image figures in an evaluator's space: R-precision, retrieval,
alignment, diversity and memorisation. Inputs are unit vectors (N, E) unless stated.
"""

from __future__ import annotations

import torch


def r_precision(
    image: torch.Tensor,
    caption_ids: torch.Tensor,
    text_table: torch.Tensor,
    *,
    candidates: int = 100,
    folds: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """R-precision as the text-to-image field defines it (AttnGAN, Xu et al. 2018).

    Each image is ranked against its true caption and `candidates - 1` captions drawn at
    random from the other captions of `text_table` (U, E); a hit is the true caption
    ranked first. The images are split into `folds` folds; the result is the mean and
    std of the per-fold hit rate. caption_ids (N,) index each image's caption in the table.
    """
    n, distinct = image.shape[0], text_table.shape[0]
    if distinct < 2:
        raise ValueError("R-precision needs at least two distinct captions")
    if n < folds:
        raise ValueError(f"R-precision needs at least {folds} images for {folds} folds, got {n}")
    rng = torch.Generator().manual_seed(seed)
    mismatched_count = min(candidates - 1, distinct - 1)
    hits = torch.empty(n, dtype=torch.bool)
    for i in range(n):
        others = torch.randperm(distinct - 1, generator=rng)[:mismatched_count]
        others = others + (others >= caption_ids[i]).long()  # skip the true caption
        pool = torch.cat([caption_ids[i : i + 1], others])
        scores = text_table[pool] @ image[i]  # (candidates,)
        hits[i] = scores[0] > scores[1:].max()
    per_fold = torch.stack([chunk.float().mean() for chunk in hits.tensor_split(folds)])
    return {"mean": float(per_fold.mean()), "std": float(per_fold.std(unbiased=False)), "candidates": mismatched_count + 1, "folds": folds}


def retrieval_recall(image: torch.Tensor, caption_ids: torch.Tensor, text_table: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k both ways over the distinct captions.

    image to text: is the image's own caption among its k best captions (of U)?
    text to image: for each distinct caption present, is one of its images among its k best images (of N)?
    """
    similarity = image @ text_table.T  # (N, U)
    relevant = caption_ids[:, None] == torch.arange(text_table.shape[0])[None, :]
    out = {f"image_to_text_r@{k}": recall_at_k(similarity, relevant, k) for k in ks}
    out.update({f"text_to_image_r@{k}": recall_at_k(similarity.T, relevant.T, k) for k in ks})
    return out


def recall_at_k(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> float:
    """Share of queries (rows of `scores`, (Q, C)) with a relevant candidate among their k best;
    `relevant` (Q, C) bool. Queries with nothing relevant (a caption no image carries) are not asked."""
    asked = relevant.any(1)
    top = scores[asked].topk(min(k, scores.shape[1]), dim=1).indices
    return float(relevant[asked].gather(1, top).any(1).float().mean())


def alignment_score(image: torch.Tensor, text: torch.Tensor) -> float:
    """Mean cosine between each image and its own caption (rows paired)."""
    return float((image * text).sum(1).mean())


def diversity(features: torch.Tensor, group_ids: torch.Tensor) -> float:
    """Mean pairwise L2 distance among the features of each group (one prompt), averaged over groups."""
    distances = []
    for group in group_ids.unique():
        members = features[group_ids == group]
        if members.shape[0] < 2:
            continue
        pairwise = torch.cdist(members, members)
        count = members.shape[0]
        distances.append(pairwise.sum() / (count * (count - 1)))
    if not distances:
        raise ValueError("diversity needs at least one group with two or more images")
    return float(torch.stack(distances).mean())


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor, *, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query feature, the L2 distance to and index of its nearest reference feature."""
    distances, indices = [], []
    for part in queries.split(chunk):
        d = torch.cdist(part, reference)
        best = d.min(dim=1)
        distances.append(best.values)
        indices.append(best.indices)
    return torch.cat(distances), torch.cat(indices)
