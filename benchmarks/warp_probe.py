"""What a finished-image warp costs a shapes model by itself: draw a trained model as it is, then with
a random move and resize of every finished image (limner.models.gan.warped, bound 0.06 of the side,
moves tanh(scale x a standard normal)), and judge both on the held-out compositions.

    python benchmarks/warp_probe.py outputs/benchmarks/shapes_preset/all-MiniLM-L6-v2 --scales 0.2 0.5 1
    python benchmarks/warp_probe.py MODEL --resample bilinear lanczos   # how each resampling softens
    python benchmarks/warp_probe.py MODEL --real    # the judge on real images moved the same ways

Prints held-out accuracy (all four, and shape) and the spread of position and size among 10 images
of a caption, beside the real images' spread; for a model with a warp, how far its own warp head
moves the images (the spread of its moves in pixels) beside how far the drawn objects end up moving.
--real also reads the held-out compositions' real renders as they are, moved by half a pixel through
their Fourier transform (limner.training.losses.subpixel_phases), and under each random warp: what
any resampling costs the judge (its shape reading tests single corner pixels) before a generator is involved.
"""

from __future__ import annotations

import argparse
import logging
import random

import numpy as np
import torch
from PIL import Image

from limner.data import shapes
from limner.metrics import shapes_accuracy
from limner.metrics.shapes import generated_placement_spread, real_placement_spread
from limner.models.gan import WARP_RESAMPLING, warped
from limner.pipelines import TextToImagePipeline
from limner.training.losses import subpixel_phases
from limner.utils.images import from_uint8, to_pil

BOUND = 0.06
IMAGES_PER_CAPTION = 10


def with_random_warp(pipe: TextToImagePipeline, scale: float, seed: int, resample: str) -> None:
    """Wrap the pipeline's generator so that every image it draws is moved and resized at random."""
    draw = pipe.generator.forward
    rng = torch.Generator().manual_seed(seed)

    def forward(noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        moves = torch.tanh(scale * torch.randn(noise.shape[0], 3, generator=rng))
        return warped(draw(noise, sentence), moves, BOUND, resample).clamp(-1.0, 1.0)

    pipe.generator.forward = forward


def recording_head_moves(pipe: TextToImagePipeline) -> list[torch.Tensor]:
    """Wrap the generator's warp head so that every move it gives is kept (in the returned list)."""
    generator, kept = pipe.generator, []
    give = generator._warp_moves

    def moves(coded: torch.Tensor, text: torch.Tensor) -> torch.Tensor | None:
        given = give(coded, text)
        if given is not None:
            kept.append(given.detach())
        return given

    generator._warp_moves = moves
    return kept


def report(name: str, pipe: TextToImagePipeline, real: dict[str, float]) -> None:
    held_out = shapes.held_out_compositions()
    kept = recording_head_moves(pipe)
    accuracy = shapes_accuracy(pipe, [(c.caption, c) for c in held_out], images_per_caption=IMAGES_PER_CAPTION, seed=2)
    spread = generated_placement_spread(pipe, held_out, IMAGES_PER_CAPTION, seed=2)
    print(f"  {name:<22} held-out {accuracy['all']:.3f} (shape {accuracy['shape']:.3f}); spread position "
          f"{spread['position_std_px']:.2f} px ({spread['position_std_px'] / real['position_std_px']:.0%} of real), "
          f"size {spread['size_std_px']:.2f} px ({spread['size_std_px'] / real['size_std_px']:.0%})", flush=True)
    if kept:
        config = pipe.generator.config
        shifts = torch.cat(kept)[:, :2] * config.noise_warp * config.resolution
        print(f"  {'':<22} its warp head's moves: x {shifts[:, 0].std():.2f} px, y {shifts[:, 1].std():.2f} px (std over all images)")


def tensor(image: Image.Image) -> torch.Tensor:
    """One PIL image -> (1, 3, H, W) in [-1, 1]."""
    return from_uint8(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None])


def picture(images: torch.Tensor) -> Image.Image:
    return to_pil(images)[0]


def report_real(scales: list[float], resamplings: list[str]) -> None:
    """The judge's shape reading of real held-out renders: as rendered, at each half-pixel phase, and warped."""
    held_out = shapes.held_out_compositions()
    rng = random.Random(3)
    renders = [(shapes.render(c, 32, rng), c) for c in held_out for _ in range(IMAGES_PER_CAPTION)]
    phases = [[shapes.judge(picture(moved), c)["shape"] for moved in subpixel_phases(tensor(image), 2)] for image, c in renders]
    read = np.mean(phases, axis=0)
    print(f"  real renders: shape read {read[0]:.3f}; moved half a pixel (Fourier) right {read[1]:.3f}, down {read[2]:.3f}, "
          f"both {read[3]:.3f}")
    for resample in resamplings:
        for scale in scales:
            noise = torch.Generator().manual_seed(7)
            verdicts = [shapes.judge(picture(warped(tensor(image), torch.tanh(scale * torch.randn(1, 3, generator=noise)), BOUND,
                                                    resample)), c)["shape"] for image, c in renders]
            print(f"  real renders, {resample} warp, scale {scale:g}: shape read {np.mean(verdicts):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a trained shapes text-to-image model (its folder)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.2, 0.5, 1.0])
    parser.add_argument("--resample", nargs="+", choices=WARP_RESAMPLING, default=["bilinear"],
                        help="how the warp reads the finished image (each is drawn at every scale)")
    parser.add_argument("--real", action="store_true", help="also judge the real held-out renders, moved the same ways")
    args = parser.parse_args()
    logging.getLogger("limner").setLevel(logging.ERROR)
    pipe = TextToImagePipeline.from_pretrained(args.model_dir)
    real = real_placement_spread(shapes.held_out_compositions(), pipe.generator.config.resolution, IMAGES_PER_CAPTION, seed=2)
    print(f"{args.model_dir}, drawn at truncation {pipe.truncation:g}")
    report("as trained", pipe, real)
    if args.real:
        report_real(args.scales, args.resample)
    for resample in args.resample:
        for scale in args.scales:
            pipe = TextToImagePipeline.from_pretrained(args.model_dir)
            with_random_warp(pipe, scale, seed=7, resample=resample)
            report(f"{resample} warp, scale {scale:g}", pipe, real)


if __name__ == "__main__":
    main()
