"""What the evaluator and the aligner share: one InfoNCE step of an image-text dual encoder,
and retrieval on the test split. A dual encoder has image_embedding(images) and
text_embedding(sentence) (unit vectors in one space) and temperature()."""

from __future__ import annotations

from pathlib import Path

import torch

from limner.metrics.alignment import recall_at_k
from limner.text import CachedTextEncoder, TextEncoder
from limner.training.config import QuickTrainConfig
from limner.training.data import CaptionedImages, load_test_split
from limner.training.loop import LoopResult, StepLoop
from limner.training.losses import contrastive_loss


def fit(model, data: CaptionedImages, config: QuickTrainConfig, *, learning_rate: float, name: str, progress: bool = True,
        step_fn=None) -> LoopResult:
    """Train `model` with `step_fn` (contrastive_step unless given; same signature) and AdamW until
    the step or time budget is spent (or SIGTERM). The model is left in eval mode."""
    step_fn = step_fn or contrastive_step
    rng = torch.Generator().manual_seed(config.seed)
    augment = config.image_augmenter(torch.Generator().manual_seed(config.seed + 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    loop = StepLoop(max_steps=config.max_train_steps, max_minutes=config.max_train_minutes, name=f"training {name}",
                    progress=progress, logging_steps=config.logging_steps)

    def step() -> dict[str, float]:
        loss = step_fn(model, optimizer, data, config.train_batch_size, rng, augment=augment)
        return {"loss": loss, "temperature": model.temperature().item()}

    model.train()
    ran = loop.run(step)
    model.eval()
    return ran


def contrastive_step(model, optimizer: torch.optim.Optimizer, data: CaptionedImages, batch_size: int, rng: torch.Generator, *,
                     augment=lambda images: images) -> float:
    """One step of symmetric InfoNCE with the model's learnt temperature on `augment`ed real images; returns the loss."""
    images, sentence, _ = data.sample(batch_size, rng)
    loss = pair_loss(model, model.image_embedding(augment(images)), sentence)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def pair_loss(model, image_vectors: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between image vectors (B, E) and their sentences (B, D); pairs that share
    a caption are not counted as negatives."""
    same_caption = (sentence[:, None, :] == sentence[None, :, :]).all(-1)
    return contrastive_loss(image_vectors, model.text_embedding(sentence), same_caption, temperature=model.temperature())


@torch.no_grad()
def retrieval_scores(model, text_encoder: TextEncoder, data_dir: Path, resolution: int, *, max_images: int = 2000) -> dict | None:
    """Recall@1 and @5 on the test split's real images (None without one): image to caption among
    the split's distinct captions, and caption to image among its images (any image of the caption counts)."""
    split = load_test_split(data_dir, resolution, max_images=max_images)
    if split is None:
        return None
    records, images = split
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
        **{f"{direction}_r{k}": round(recall_at_k(scores, truth, k), 4) for k in (1, 5)
           for direction, scores, truth in (("image_to_caption", similarity, belongs), ("caption_to_image", similarity.T, belongs.T))},
    }
