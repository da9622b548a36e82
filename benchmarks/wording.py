"""Whole sentences and everyday colour words: does a shapes model draw what people type?

Reads benchmarks/prompt_sets/wording_development.json (settings may be chosen on it)
and, with --kept-aside, wording_kept_aside.json (read once, at the end). Each set
words all 180 compositions once as whole sentences (requests, sentences that begin
with the place, filler words, other nouns for the shapes), then the same sentences
with colour words other than the six training names, and prints the shapes judge's
all-four and per-attribute accuracy for each, beside the canonical held-out captions.

    python benchmarks/wording.py --model-dir outputs/benchmarks/shapes_gan/all-MiniLM-L6-v2
    python benchmarks/wording.py --model-dir ... --kept-aside       # the final, blind read
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from limner.data import shapes
from limner.metrics import shapes_accuracy
from limner.pipelines import TextToImagePipeline

PROMPT_SETS = Path(__file__).parent / "prompt_sets"
SETS = {"development": PROMPT_SETS / "wording_development.json", "kept_aside": PROMPT_SETS / "wording_kept_aside.json"}


def worded(spec: dict, *, colour_synonyms: bool) -> list[tuple[str, shapes.Composition]]:
    """Every composition once, through the templates in turn; where an attribute has several
    words, compositions take them in turn. colour_synonyms: the colour words of spec["color_synonyms"]."""
    colours = spec["color_synonyms"] if colour_synonyms else spec["color"]
    targets = []
    for i, composition in enumerate(shapes.all_compositions()):
        template = spec["templates"][i % len(spec["templates"])]
        pick = lambda words: words[(i // len(spec["templates"])) % len(words)]  # noqa: E731
        prompt = template.format(size=pick(spec["size"][composition.size]), color=pick(colours[composition.color]),
                                 shape=pick(spec["shape"][composition.shape]), position=pick(spec["position"][composition.position]))
        targets.append((prompt, composition))
    return targets


def wording_sets(name: str) -> dict[str, list[tuple[str, shapes.Composition]]]:
    """{"sentences": ..., "colour_synonyms": ...} of one prompt set ("development" or "kept_aside")."""
    spec = json.loads(SETS[name].read_text())
    return {"sentences": worded(spec, colour_synonyms=False), "colour_synonyms": worded(spec, colour_synonyms=True)}


def evaluate_wording(pipe: TextToImagePipeline, names: tuple[str, ...], *, images_per_caption: int, seed: int = 5) -> dict[str, dict]:
    """The judge's accuracy on each set of each named prompt set: {"development/sentences": {...}, ...}."""
    return {f"{name}/{kind}": shapes_accuracy(pipe, targets, images_per_caption=images_per_caption, seed=seed)
            for name in names for kind, targets in wording_sets(name).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a shapes model (e.g. from benchmarks/shapes_gan.py)")
    parser.add_argument("--kept-aside", action="store_true", help="also read the kept-aside set (once, at the end)")
    parser.add_argument("--images-per-caption", type=int, default=10)
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model_dir)
    names = ("development", "kept_aside") if args.kept_aside else ("development",)
    held_out = [(c.caption, c) for c in shapes.held_out_compositions()]
    scores = {"held_out": shapes_accuracy(pipe, held_out, images_per_caption=args.images_per_caption, seed=2),
              **evaluate_wording(pipe, names, images_per_caption=args.images_per_caption)}
    for name, score in scores.items():
        detail = "  ".join(f"{k} {score[k]:.3f}" for k in shapes.ATTRIBUTES)
        print(f"{name:<28} all-four {score['all']:.3f}   ({detail}; {score['images']} images)")
    for prompt, _ in wording_sets(names[-1])["colour_synonyms"][:3]:
        print(f"  e.g. {prompt!r}")


if __name__ == "__main__":
    main()
