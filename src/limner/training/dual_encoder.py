"""What the evaluator and the aligner share: one InfoNCE step of an image-text dual encoder,
and retrieval on the test split. A dual encoder has image_embedding(images) and
text_embedding(sentence) (unit vectors in one space) and temperature()."""

from __future__ import annotations

from pathlib import Path

import torch

from limner.data import ImageFolder
from limner.errors import DataError
from limner.text import CachedTextEncoder, TextEncoder
from limner.training.data import CaptionedImages
from limner.training.losses import contrastive_loss
from limner.utils.images import from_uint8


def contrastive_step(model, optimizer: torch.optim.Optimizer, data: CaptionedImages, batch_size: int, rng: torch.Generator) -> float:
    """One step of symmetric InfoNCE with the model's learnt temperature; returns the loss."""
    images, sentence, _ = data.sample(batch_size, rng)
    same_caption = (sentence[:, None, :] == sentence[None, :, :]).all(-1)
    loss = contrastive_loss(model.image_embedding(images), model.text_embedding(sentence), same_caption, temperature=model.temperature())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def test_retrieval(model, text_encoder: TextEncoder, data_dir: Path, resolution: int, *, max_images: int = 2000) -> dict | None:
    """Recall@1 and @5 on the test split's real images (None without one): image to caption among
    the split's distinct captions, and caption to image among its images (any image of the caption counts)."""
    try:
        folder = ImageFolder(data_dir, "test")
    except DataError:
        return None
    records = folder.records[:max_images]
    images = from_uint8(folder.load_images(resolution, progress=False)[: len(records)])
    captions = sorted({c for r in records for c in r.captions})
    index = {c: i for i, c in enumerate(captions)}
    image_vectors = torch.cat([model.image_embedding(chunk) for chunk in images.split(256)])
    text_vectors = model.text_embedding(CachedTextEncoder(text_encoder).sentence_table(captions, progress=False))
    similarity = image_vectors @ text_vectors.T  # (images, captions)
    belongs = torch.zeros_like(similarity, dtype=torch.bool)
    for row, record in enumerate(records):
        belongs[row, [index[c] for c in record.captions]] = True
    return {
        "images": len(records), "captions": len(captions),
        "image_to_caption_r1": _recall(similarity, belongs, 1), "image_to_caption_r5": _recall(similarity, belongs, 5),
        "caption_to_image_r1": _recall(similarity.T, belongs.T, 1), "caption_to_image_r5": _recall(similarity.T, belongs.T, 5),
    }


def _recall(scores: torch.Tensor, truth: torch.Tensor, k: int) -> float:
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return round(truth.gather(1, top).any(1).float().mean().item(), 4)
