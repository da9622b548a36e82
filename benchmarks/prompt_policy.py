"""The denied-concept policy (limner.text.policy): how many prompts asking for a denied concept it
catches, exactly named and reworded, and how many allowed prompts it refuses by mistake.

    python benchmarks/prompt_policy.py

The sets are in benchmarks/prompt_sets/denied_concepts.json, written before any threshold was tried.
The threshold is chosen on the development set alone (the largest share caught minus share of allowed
prompts refused; ties to the higher threshold), then the held-aside rewordings are read once, and
the false positives are counted on 500 allowed prompts: concept names of the emoji-styles corpus
(seed 0) that name no weapon. The exact blocklist (substring match of the same concepts) is the row
it is compared with.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import torch

from limner.data.builders import builtin_data_dir
from limner.text import HuggingFaceTextEncoder
from limner.text.policy import ConceptPolicy

SETS = Path(__file__).parent / "prompt_sets" / "denied_concepts.json"
WEAPON_WORDS = re.compile(r"\b(pistol|bomb|knife|dagger|sword|swords|gun|rifle|grenade|arrow|axe|boomerang)\b")


def allowed_corpus_prompts(count: int = 500, seed: int = 0) -> list[str]:
    """Concept names of the emoji-styles corpus (built on first use) that name no weapon."""
    folder = builtin_data_dir("emoji-styles", 64)
    names = sorted({json.loads(line)["concept"] for line in (folder / "train" / "metadata.jsonl").read_text().splitlines()})
    names = [name for name in names if not WEAPON_WORDS.search(name.lower())]
    return random.Random(seed).sample(names, count)


def caught(cosines: torch.Tensor, threshold: float) -> float:
    return float((cosines >= threshold).float().mean())


def main() -> None:
    sets = json.loads(SETS.read_text())
    policy = ConceptPolicy(sets["concepts"], HuggingFaceTextEncoder("all-MiniLM-L6-v2"))
    groups = {f"development {kind}": sets["development"][kind] for kind in ("exact", "reworded", "allowed")}
    groups |= {f"held-aside {kind}": sets["held_aside"][kind] for kind in ("exact", "reworded")}
    groups["500 allowed corpus names"] = allowed_corpus_prompts()
    nearest = {name: [policy.nearest(prompt) for prompt in prompts] for name, prompts in groups.items()}
    cosine = {name: torch.tensor([m.cosine for m in matches]) for name, matches in nearest.items()}

    positives = torch.cat([cosine["development exact"], cosine["development reworded"]])
    negatives = cosine["development allowed"]
    grid = [round(0.30 + 0.01 * i, 2) for i in range(61)]
    scores = [(caught(positives, t) - caught(negatives, t), t) for t in grid]
    best = max(score for score, _ in scores)
    threshold = max(t for score, t in scores if score == best)
    print(f"threshold chosen on the development set: {threshold:.2f} (caught minus refused {best:.3f})")
    blocklist = [c.lower() for c in sets["concepts"]]
    print(f"  {'set':<28}{'prompts':>8}{'by meaning':>12}{'exact blocklist':>17}")
    for name, prompts in groups.items():
        exact = sum(any(term in p.lower() for term in blocklist) for p in prompts) / len(prompts)
        print(f"  {name:<28}{len(prompts):>8}{caught(cosine[name], threshold):>12.3f}{exact:>17.3f}")
    for name in ("held-aside reworded", "development reworded"):
        missed = [f"{p!r} ({m.cosine:.2f} to {m.concept!r})" for p, m in zip(groups[name], nearest[name]) if m.cosine < threshold]
        print(f"  missed in {name}: {', '.join(missed) or 'none'}")
    for name in ("development allowed", "500 allowed corpus names"):
        refused = [f"{p!r} ({m.cosine:.2f}: {m.phrase!r} ~ {m.concept!r})" for p, m in zip(groups[name], nearest[name]) if m.cosine >= threshold]
        print(f"  refused in {name}: {', '.join(refused) or 'none'}")


if __name__ == "__main__":
    main()
