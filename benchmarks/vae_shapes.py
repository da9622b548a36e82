"""The conditional VAE on shapes: judge accuracy of prior samples, reconstructions, round trip.

Trains `limner train --model vae --preset shapes` under a wall-clock budget, then prints
the shapes judge's all-four accuracy on training compositions, held-out compositions and
paraphrases (sampling the learnt prior), PSNR and SSIM of the test split's reconstructions,
and, with a captioner, the round trip (text -> VAE image -> text) exact-match rate on the
held-out compositions.

    python benchmarks/vae_shapes.py                       # 10 minutes
    python benchmarks/vae_shapes.py --minutes 2 --captioner outputs/shapes-captioner
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bidirectional import held_out_round_trip
from shapes_gan import evaluate

from limner.pipelines import TextToImagePipeline
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.training import build_train_config
from limner.training.vae_trainer import train_vae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--output-dir", default="outputs/benchmarks/vae_shapes")
    parser.add_argument("--captioner", default="outputs/benchmarks/bidirectional/captioner", help="for the round trip (skipped if absent)")
    parser.add_argument("--override", default="{}", help="JSON of config values over the preset (GANTrainConfig, VAETrainConfig, ... by kind)")
    args = parser.parse_args()

    config = build_train_config("shapes", {"model": "vae", "output_dir": args.output_dir, "max_train_minutes": args.minutes,
                                           "max_train_steps": 100_000, **json.loads(args.override)})
    result = train_vae(config)
    pipe = TextToImagePipeline.from_pretrained(args.output_dir)
    scores = evaluate(pipe, images_per_caption=10)
    report = {"steps": result.steps, "train_seconds": round(result.train_seconds, 1),
              **{split: score["all"] for split, score in scores.items()}, "held_out_detail": scores["held_out"],
              "reconstruction": result.reconstruction}
    if (Path(args.captioner) / "model_index.json").is_file():
        report["round_trip_exact"] = round(held_out_round_trip(pipe, ImageToTextPipeline.from_pretrained(args.captioner)), 4)
    Path(args.output_dir, "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nVAE: {result.steps} steps in {result.train_seconds:.0f}s")
    print(f"  judge all-four: train {report['train']:.3f}, held-out {report['held_out']:.3f}, paraphrase {report['paraphrase']:.3f}")
    print(f"  test reconstructions: PSNR {result.reconstruction['psnr']:.2f} dB, SSIM {result.reconstruction['ssim']:.3f}")
    if "round_trip_exact" in report:
        print(f"  round trip (held-out, exact): {report['round_trip_exact']:.3f}")


if __name__ == "__main__":
    main()
