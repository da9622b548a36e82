"""A prompt policy by meaning: refuse prompts that ask for a denied concept in any words.

An exact blocklist misses "a handgun" when "pistol" is denied. ConceptPolicy embeds each denied
concept with a sentence encoder (all-MiniLM-L6-v2, whose cosine is trained to follow meaning) and
compares it with the prompt's phrases: the whole prompt and every run of one to three of its
descriptive words (limner.text.filler.NOT_DESCRIPTIVE dropped), so a concept named inside a longer
prompt ("a small handgun in the corner, twitter style") is still seen. A prompt is denied when some
phrase's cosine to some concept reaches `threshold`. The default threshold was chosen on a
development set of rewordings (benchmarks/prompt_policy.py, which also reports a set kept aside).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from limner.errors import ConfigError
from limner.text.base import TextEncoder, unit_sentences
from limner.text.filler import NOT_DESCRIPTIVE
from limner.text.prompts import prompt_words

DEFAULT_THRESHOLD = 0.63  # chosen on the development set of benchmarks/prompt_policy.py


@dataclass(frozen=True)
class ConceptMatch:
    concept: str   # the denied concept the prompt came nearest
    phrase: str    # the part of the prompt that came nearest it
    cosine: float


def prompt_phrases(prompt: str, *, longest: int = 3) -> list[str]:
    """The whole prompt, then every run of 1 to `longest` consecutive descriptive words."""
    words = [word for word in prompt_words(prompt) if word not in NOT_DESCRIPTIVE]
    runs = {" ".join(words[i:i + n]) for n in range(1, longest + 1) for i in range(len(words) - n + 1)}
    return [prompt.strip(), *sorted(runs - {prompt.strip()})]


class ConceptPolicy:
    def __init__(self, concepts: Sequence[str], encoder: TextEncoder, *, threshold: float = DEFAULT_THRESHOLD) -> None:
        concepts = [c.strip() for c in concepts if c.strip()]
        if not concepts:
            raise ConfigError("a concept policy needs at least one denied concept")
        if not 0 < threshold <= 1:
            raise ConfigError(f"the denied-concept threshold is a cosine in (0, 1], got {threshold}")
        self.concepts, self.encoder, self.threshold = concepts, encoder, threshold
        self.vectors = self._embed(concepts)  # (C, D), unit length

    def _embed(self, texts: list[str]) -> torch.Tensor:
        return unit_sentences(self.encoder, texts)

    def nearest(self, prompt: str) -> ConceptMatch:
        """The (phrase, concept) pair of highest cosine for this prompt."""
        phrases = prompt_phrases(prompt)
        cosines = self._embed(phrases) @ self.vectors.T  # (phrases, concepts)
        best = int(cosines.argmax())
        phrase, concept = divmod(best, len(self.concepts))
        return ConceptMatch(self.concepts[concept], phrases[phrase], float(cosines.flatten()[best]))

    def match(self, prompt: str) -> ConceptMatch | None:
        """The nearest denied concept when the prompt reaches the threshold, else None."""
        nearest = self.nearest(prompt)
        return nearest if nearest.cosine >= self.threshold else None
