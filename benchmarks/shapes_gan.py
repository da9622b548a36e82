"""Shapes benchmark: train the default shapes preset under a wall-clock budget, then judge.

Prints the judge's accuracy (all four attributes right, and per attribute) on
  (a) training compositions, (b) held-out compositions, (c) paraphrased captions,
  (d) the development rewordings on which text settings are chosen (other new words), and
  (e) whole sentences and everyday colour words (benchmarks/wording.py's development set),
for the pretrained language model and for a from-scratch bag-of-words encoder.

    python benchmarks/shapes_gan.py                 # 10 minutes per encoder
    python benchmarks/shapes_gan.py --minutes 2 --encoders all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from machine import sgemm_gflops  # benchmarks/ is on the path when run as a script
from wording import evaluate_wording

from limner.data import shapes
from limner.metrics import shapes_accuracy
from limner.metrics.shapes import generated_placement_spread, real_placement_spread
from limner.pipelines import TextToImagePipeline
from limner.training import build_train_config, train

SIZE_WORDS = {"small": ["little", "tiny"], "large": ["big", "huge"]}
POSITION_WORDS = {
    "top left": "upper left", "top right": "upper right", "bottom left": "lower left",
    "bottom right": "lower right", "center": "middle",
}
TEMPLATES = (
    "a {size} {color} {shape}, {position}",
    "{color} {shape}, {size}, in the {position}",
    "in the {position} there is a {size} {color} {shape}",
    "a {color} {shape} that is {size}, placed {position}",
)


def reworded(templates: tuple[str, ...], size_words: dict, position_words: dict) -> list[tuple[str, shapes.Composition]]:
    """Every composition once, in turn through each template, alternating two words per size."""
    targets = []
    for i, composition in enumerate(shapes.all_compositions()):
        template = templates[i % len(templates)]
        position = position_words[composition.position]
        if template.endswith("placed {position}") and composition.position == "center":
            position = "in the middle"
        prompt = template.format(size=size_words[composition.size][i % 2], color=composition.color,
                                 shape=composition.shape, position=position)
        targets.append((prompt, composition))
    return targets


def paraphrases() -> list[tuple[str, shapes.Composition]]:
    """Captions never seen in training: synonyms for size and position, new word orders."""
    return reworded(TEMPLATES, SIZE_WORDS, POSITION_WORDS)


DEV_SIZE_WORDS = {"small": ["petite", "mini"], "large": ["giant", "massive"]}
DEV_POSITION_WORDS = {
    "top left": "top-left corner", "top right": "top-right corner", "bottom left": "bottom-left corner",
    "bottom right": "bottom-right corner", "center": "centre",
}
DEV_TEMPLATES = (
    "there's a {size} {shape} coloured {color} at the {position}",
    "{size}, {color}, {shape}; {position}",
    "one {color} {shape} of {size} size near the {position}",
)


def development_paraphrases() -> list[tuple[str, shapes.Composition]]:
    """Rewordings with none of the benchmark's new words, for choosing settings."""
    return reworded(DEV_TEMPLATES, DEV_SIZE_WORDS, DEV_POSITION_WORDS)


def evaluate(pipe: TextToImagePipeline, images_per_caption: int) -> dict[str, dict]:
    canonical = lambda compositions: [(c.caption, c) for c in compositions]  # noqa: E731
    return {
        "train": shapes_accuracy(pipe, canonical(shapes.train_compositions()), images_per_caption=images_per_caption, seed=1),
        "held_out": shapes_accuracy(pipe, canonical(shapes.held_out_compositions()), images_per_caption=images_per_caption, seed=2),
        "paraphrase": shapes_accuracy(pipe, paraphrases(), images_per_caption=images_per_caption, seed=3),
        "development": shapes_accuracy(pipe, development_paraphrases(), images_per_caption=images_per_caption, seed=4),
        # whole sentences and everyday colour words (benchmarks/wording.py; its kept-aside set is read there, once)
        **evaluate_wording(pipe, ("development",), images_per_caption=images_per_caption),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per encoder")
    parser.add_argument("--encoders", nargs="+", default=["all-MiniLM-L6-v2", "bag-of-words"])
    parser.add_argument("--images-per-caption", type=int, default=10)
    parser.add_argument("--output-dir", default="outputs/benchmarks/shapes_gan")
    parser.add_argument("--max-train-steps", type=int, default=100_000)
    parser.add_argument("--evaluate-only", action="store_true", help="judge the models already in --output-dir")
    parser.add_argument("--truncation", type=float, default=None,
                        help="draw with this truncation instead of the model's own (its figures go to benchmark_truncation_T.json)")
    parser.add_argument("--override", default="{}", help='JSON of config values over the preset (GANTrainConfig, VAETrainConfig, ... by kind), e.g. \'{"learning_rate": 1e-4}\'')
    args = parser.parse_args()
    logging.getLogger("limner").setLevel(logging.ERROR)  # the wording sets' new words warn once per prompt

    print(f"sgemm ceiling: {sgemm_gflops():.0f} GFLOP/s (2 threads)", flush=True)
    results = {}
    for encoder in args.encoders:
        out = Path(args.output_dir) / Path(encoder).name  # a local path names its folder by its last part
        config = build_train_config("shapes", {
            "text_encoder": encoder, "output_dir": str(out),
            "max_train_minutes": args.minutes, "max_train_steps": args.max_train_steps,
            **json.loads(args.override),
        })
        started = time.perf_counter()
        if args.evaluate_only:
            result = json.loads((out / "benchmark.json").read_text())
        else:
            trained = train(config)
            result = {"steps": trained.steps, "train_seconds": round(trained.train_seconds, 1),
                      "images_per_second": round(trained.images_per_second, 1)}
        pipe = TextToImagePipeline.from_pretrained(out)
        if args.truncation is not None:
            pipe.truncation = args.truncation
        scores = evaluate(pipe, args.images_per_caption)
        held_out = shapes.held_out_compositions()
        spread = {"generated": generated_placement_spread(pipe, held_out, args.images_per_caption, seed=2),
                  "real": real_placement_spread(held_out, config.resolution, args.images_per_caption, seed=2)}
        results[encoder] = {
            "steps": result["steps"], "train_seconds": result["train_seconds"], "images_per_second": result["images_per_second"],
            "total_seconds": round(time.perf_counter() - started, 1), "truncation": pipe.truncation, **scores, "spread": spread,
        }
        (out / ("benchmark.json" if args.truncation is None else f"benchmark_truncation_{args.truncation:g}.json")).write_text(json.dumps(results[encoder], indent=2) + "\n")
        print(f"\n== {encoder}: {result['steps']} steps in {result['train_seconds']:.0f}s ({result['images_per_second']:.0f} img/s);"
              f" drawn at truncation {pipe.truncation:g}")
        for split, score in scores.items():
            detail = "  ".join(f"{k} {score[k]:.3f}" for k in ("color", "shape", "size", "position"))
            print(f"  {split:<30} all-four {score['all']:.3f}   ({detail}; {score['images']} images)")
        generated, real = spread["generated"], spread["real"]
        print(f"  spread among {args.images_per_caption} images of a held-out caption: position {generated['position_std_px']:.2f} px "
              f"(real {real['position_std_px']:.2f}, {generated['position_std_px'] / real['position_std_px']:.0%}), size "
              f"{generated['size_std_px']:.2f} px (real {real['size_std_px']:.2f}, {generated['size_std_px'] / real['size_std_px']:.0%})")
    suffix = "" if args.truncation is None else f"_truncation_{args.truncation:g}"
    Path(args.output_dir, f"summary{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
