"""What a finished-image warp costs a shapes model by itself: draw a trained model as it is, then with
a random move and resize of every finished image (limner.models.gan.warped, bound 0.06 of the side,
moves tanh(scale x a standard normal)), and judge both on the held-out compositions.

    python benchmarks/warp_probe.py outputs/benchmarks/shapes_preset/all-MiniLM-L6-v2 --scales 0.2 0.5 1

Prints held-out accuracy (all four, and shape) and the spread of position and size among 10 images
of a caption, beside the real images' spread.
"""

from __future__ import annotations

import argparse
import logging

import torch

from limner.data import shapes
from limner.metrics import shapes_accuracy
from limner.metrics.shapes import generated_placement_spread, real_placement_spread
from limner.models.gan import warped
from limner.pipelines import TextToImagePipeline

BOUND = 0.06
IMAGES_PER_CAPTION = 10


def with_random_warp(pipe: TextToImagePipeline, scale: float, seed: int) -> None:
    """Wrap the pipeline's generator so that every image it draws is moved and resized at random."""
    draw = pipe.generator.forward
    rng = torch.Generator().manual_seed(seed)

    def forward(noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        moves = torch.tanh(scale * torch.randn(noise.shape[0], 3, generator=rng))
        return warped(draw(noise, sentence), moves, BOUND)

    pipe.generator.forward = forward


def report(name: str, pipe: TextToImagePipeline, real: dict[str, float]) -> None:
    held_out = shapes.held_out_compositions()
    accuracy = shapes_accuracy(pipe, [(c.caption, c) for c in held_out], images_per_caption=IMAGES_PER_CAPTION, seed=2)
    spread = generated_placement_spread(pipe, held_out, IMAGES_PER_CAPTION, seed=2)
    print(f"  {name:<22} held-out {accuracy['all']:.3f} (shape {accuracy['shape']:.3f}); spread position "
          f"{spread['position_std_px']:.2f} px ({spread['position_std_px'] / real['position_std_px']:.0%} of real), "
          f"size {spread['size_std_px']:.2f} px ({spread['size_std_px'] / real['size_std_px']:.0%})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a trained shapes text-to-image model (its folder)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.2, 0.5, 1.0])
    args = parser.parse_args()
    logging.getLogger("limner").setLevel(logging.ERROR)
    pipe = TextToImagePipeline.from_pretrained(args.model_dir)
    real = real_placement_spread(shapes.held_out_compositions(), pipe.generator.config.resolution, IMAGES_PER_CAPTION, seed=2)
    print(f"{args.model_dir}, drawn at truncation {pipe.truncation:g}")
    report("as trained", pipe, real)
    for scale in args.scales:
        pipe = TextToImagePipeline.from_pretrained(args.model_dir)
        with_random_warp(pipe, scale, seed=7)
        report(f"random warp, scale {scale:g}", pipe, real)


if __name__ == "__main__":
    main()
