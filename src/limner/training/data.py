"""Training batches from an in-memory image tensor and a table of caption embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from limner.data import ImageFolder
from limner.text import CachedTextEncoder
from limner.utils.images import from_uint8


@dataclass
class CaptionedImages:
    images: torch.Tensor          # uint8 (N, 3, H, W)
    captions: list[str]           # the U distinct captions
    sentence_table: torch.Tensor  # (U, D) sentence embedding of each distinct caption
    caption_ids: torch.Tensor     # long (sum of captions per image,) into `captions`
    offsets: torch.Tensor         # long (N,) where each image's caption ids start
    counts: torch.Tensor          # long (N,) how many captions each image has

    @classmethod
    def from_folder(cls, folder: ImageFolder, images: torch.Tensor, encoder: CachedTextEncoder) -> "CaptionedImages":
        captions = folder.captions
        index = {caption: i for i, caption in enumerate(captions)}
        ids = [[index[c] for c in record.captions] for record in folder.records]
        counts = torch.tensor([len(row) for row in ids])
        offsets = torch.cumsum(counts, 0) - counts
        return cls(
            images=images,
            captions=captions,
            sentence_table=encoder.sentence_table(captions),
            caption_ids=torch.tensor([i for row in ids for i in row]),
            offsets=offsets,
            counts=counts,
        )

    def __len__(self) -> int:
        return self.images.shape[0]

    def draw(self, batch_size: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random image indices (B,) and, for each, one of its captions drawn at random (B,) into `captions`."""
        index = torch.randint(len(self), (batch_size,), generator=rng)
        pick = (torch.rand(batch_size, generator=rng) * self.counts[index]).long()
        return index, self.caption_ids[self.offsets[index] + pick]

    def sample(self, batch_size: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images (B, 3, H, W) in [-1, 1], sentence (B, D), mismatched sentence (B, D)).

        Each image's caption is drawn at random from its captions; the mismatched
        caption is a random caption of the dataset that differs from the true one.
        """
        index, own = self.draw(batch_size, rng)
        if len(self.captions) == 1:  # nothing to mismatch with: the term then teaches nothing
            other = own
        else:
            other = torch.randint(len(self.captions) - 1, (batch_size,), generator=rng)
            other = other + (other >= own).long()  # skip the true caption
        return from_uint8(self.images[index]), self.sentence_table[own], self.sentence_table[other]
