"""Bidirectional ablation on shapes: the GAN alone, + cycle, + alignment, + both.

Trains (or reuses) a captioner and an aligner on the shapes training split, then
the default shapes preset (all-MiniLM-L6-v2) four times under the same wall-clock
budget: without the bidirectional terms, with a frozen captioner's cross-entropy
for the true caption of each generated image (cycle), with a frozen aligner's
1 - cosine (alignment), and with both. Prints for each the judge's all-four
accuracy on held-out compositions and on paraphrases, and the round trip: the
share of held-out captions whose generated image the captioner describes exactly.

    python benchmarks/bidirectional.py                     # 10 minutes per arm, about 50 minutes in all
    python benchmarks/bidirectional.py --minutes 2 --arms alone both
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from shapes_gan import evaluate

from limner.data import shapes
from limner.pipelines import TextToImagePipeline, round_trip
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.pipelines.round_trip import exact_rate
from limner.training import build_train_config, train
from limner.training.aligner_trainer import train_aligner
from limner.training.captioner_trainer import train_captioner

ARMS = {"alone": {}, "cycle": {"cycle_weight": 1.0}, "alignment": {"alignment_weight": 1.0},
        "both": {"cycle_weight": 1.0, "alignment_weight": 1.0}}


def held_out_round_trip(generator: TextToImagePipeline, captioner: ImageToTextPipeline, images_per_caption: int = 10) -> float:
    """Text -> image -> text on the held-out compositions: the share of images captioned exactly as asked."""
    trips = [trip for composition in shapes.held_out_compositions()  # each caption with its own seeded noise
             for trip in round_trip(generator, captioner, [composition.caption], num_images_per_prompt=images_per_caption, seed=7)]
    return exact_rate(trips)


def guide(folder: Path, model: str, minutes: float) -> Path:
    if (folder / "model_index.json").is_file():
        return folder
    config = build_train_config("shapes", {"model": model, "output_dir": str(folder), "max_train_minutes": minutes,
                                           "max_train_steps": 100_000, "train_batch_size": 64, "seed": 4321})
    (train_aligner if model == "aligner" else train_captioner)(config)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="GAN training budget per arm")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--output-dir", default="outputs/benchmarks/bidirectional")
    parser.add_argument("--images-per-caption", type=int, default=10)
    args = parser.parse_args()

    root = Path(args.output_dir)
    aligner_dir = guide(root / "aligner", "aligner", 3)
    captioner_dir = guide(root / "captioner", "captioner", 5)
    captioner = ImageToTextPipeline.from_pretrained(captioner_dir)
    results = {}
    for arm in args.arms:
        out = root / arm
        config = build_train_config("shapes", {"output_dir": str(out), "max_train_minutes": args.minutes, "max_train_steps": 100_000,
                                               "aligner_dir": str(aligner_dir), "captioner_dir": str(captioner_dir), **ARMS[arm]})
        started = time.perf_counter()
        result = train(config)
        pipe = TextToImagePipeline.from_pretrained(out)
        scores = evaluate(pipe, args.images_per_caption)
        results[arm] = {"steps": result.steps, "images_per_second": round(result.images_per_second, 1), **ARMS[arm],
                        "held_out": scores["held_out"]["all"], "paraphrase": scores["paraphrase"]["all"], "train": scores["train"]["all"],
                        "round_trip_exact": round(held_out_round_trip(pipe, captioner), 4), "total_seconds": round(time.perf_counter() - started, 1)}
        print(f"\n== {arm}: {result.steps} steps ({result.images_per_second:.0f} img/s); held-out {results[arm]['held_out']:.3f}, "
              f"paraphrase {results[arm]['paraphrase']:.3f}, train {results[arm]['train']:.3f}, round trip {results[arm]['round_trip_exact']:.3f}")
        (root / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\narm        steps  held-out  paraphrase  round trip")
    for arm, row in results.items():
        print(f"{arm:<10} {row['steps']:>5}  {row['held_out']:.3f}     {row['paraphrase']:.3f}       {row['round_trip_exact']:.3f}")


if __name__ == "__main__":
    main()
