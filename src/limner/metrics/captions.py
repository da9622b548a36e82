"""Caption metrics: corpus BLEU-1..4 (Papineni et al. 2002) and CIDEr-D (Vedantam et al. 2015).

Both take, per image, one candidate caption and a list of reference captions.
Tokenisation is lower-case words with punctuation removed, as the COCO
caption toolkit does before scoring.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(caption: str) -> list[str]:
    return _WORD.findall(caption.lower())


def ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _check_pairs(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    if not candidates:
        raise ValueError("no captions to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references[{i}] must be a non-empty list of captions")


def corpus_bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], *, max_n: int = 4) -> dict[str, float]:
    """{"bleu1": ..., "bleu4": ...}: corpus-level BLEU with clipped counts and one brevity penalty.

    Each candidate n-gram counts at most as often as it appears in any one reference;
    the brevity penalty uses, per candidate, the reference length closest to it.
    """
    _check_pairs(candidates, references)
    matched, total = [0] * max_n, [0] * max_n
    candidate_length = reference_length = 0
    for candidate, refs in zip(candidates, references):
        words = tokenize(candidate)
        ref_words = [tokenize(r) for r in refs]
        candidate_length += len(words)
        reference_length += min((abs(len(r) - len(words)), len(r)) for r in ref_words)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(words, n)
            best_ref = Counter()
            for r in ref_words:
                best_ref |= ngrams(r, n)  # element-wise max over references
            matched[n - 1] += sum(min(c, best_ref[g]) for g, c in counts.items())
            total[n - 1] += max(len(words) - n + 1, 0)
    if candidate_length == 0:
        return {f"bleu{n}": 0.0 for n in range(1, max_n + 1)}
    brevity = 1.0 if candidate_length > reference_length else math.exp(1 - reference_length / candidate_length)
    scores, log_sum = {}, 0.0
    for n in range(1, max_n + 1):
        precision = matched[n - 1] / total[n - 1] if total[n - 1] else 0.0
        log_sum += math.log(precision) if precision > 0 else -math.inf
        scores[f"bleu{n}"] = brevity * math.exp(log_sum / n) if log_sum > -math.inf else 0.0
    return scores


def cider_d(
    candidates: Sequence[str], references: Sequence[Sequence[str]], *, max_n: int = 4, sigma: float = 6.0
) -> dict[str, float | list[float]]:
    """{"cider_d": corpus mean, "per_image": [...]}: CIDEr-D as the COCO toolkit defines it.

    n-gram vectors weighted by tf * idf, idf = log(images / images whose references hold
    the n-gram); cosine with the candidate's counts clipped to the reference's; a Gaussian
    penalty on the length difference (sigma 6); mean over n = 1..4 and over references,
    times 10. Document frequencies come from the references of the scored set.
    """
    _check_pairs(candidates, references)
    ref_words = [[tokenize(r) for r in refs] for refs in references]
    document_frequency: Counter = Counter()
    for refs in ref_words:
        document_frequency.update({g for r in refs for n in range(1, max_n + 1) for g in ngrams(r, n)})
    log_images = math.log(float(len(candidates)))

    def vectors(words: list[str]) -> list[dict[tuple, float]]:
        out = []
        for n in range(1, max_n + 1):
            out.append({g: c * (log_images - math.log(max(1.0, document_frequency[g]))) for g, c in ngrams(words, n).items()})
        return out

    per_image = []
    for candidate, refs in zip(candidates, ref_words):
        words = tokenize(candidate)
        cand_vecs = vectors(words)
        score = 0.0
        for ref in refs:
            ref_vecs = vectors(ref)
            penalty = math.exp(-((len(words) - len(ref)) ** 2) / (2 * sigma**2))
            per_n = []
            for cand, other in zip(cand_vecs, ref_vecs):
                dot = sum(min(v, other[g]) * other[g] for g, v in cand.items() if g in other)
                norms = math.sqrt(sum(v * v for v in cand.values())) * math.sqrt(sum(v * v for v in other.values()))
                per_n.append(dot / norms * penalty if norms > 0 else 0.0)
            score += sum(per_n) / max_n
        per_image.append(10.0 * score / len(refs))
    return {"cider_d": sum(per_image) / len(per_image), "per_image": per_image}
