"""Robustness benchmark: does the captioner still read pictures drawn or delivered another way?

Trains the shapes captioner (the preset's 10 minutes, or --minutes) once plainly and once with each
`--read-augment` setting asked for, then captions the held-out compositions' images:

  - clean: the test split as limner.data.shapes renders it (anti-aliased, Lanczos);
  - under each perturbation a user's picture may carry: resampled with and without
    anti-aliasing, JPEG at quality 30, blurred, noisy, shifted by a pixel;
  - a second renderer of the same specification (held aside): written here, independently of
    limner.data.shapes, with numpy and hard pixel edges (a pixel is the object's colour when its
    centre lies inside the shape, else black), no supersampling.

Target (issue "Robust to what people type and show"): at least 0.95 exact on held-out
compositions under every perturbation and on the second renderer, losing at most 0.01 clean.

    python benchmarks/robustness.py                                   # plain, then all five augmentations
    python benchmarks/robustness.py --arms plain "jpeg,blur" --minutes 3
    python benchmarks/robustness.py --arms plain resample --probability 0.2   # each transform on a fifth of the images
    python benchmarks/robustness.py --arms plain --token-dropout 0 0.3 0.5     # word dropout in the decoder, each arm at each rate
    python benchmarks/robustness.py --arms resample --read-blur 0 0.5 0.8     # also read every image through a small blur
"""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from machine import sgemm_gflops  # benchmarks/ is on the path when run as a script

from limner.data import ImageFolder, shapes
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.training import build_train_config
from limner.training.captioner_trainer import train_captioner
from limner.training.data import resolve_data_dir

ALL = "resample,jpeg,blur,noise,shift"


def hard_edged(composition: shapes.Composition, side: int, rng: random.Random) -> Image.Image:
    """The specification drawn another way: pixel centres tested against the shape, no anti-aliasing."""
    size = shapes.SIZES[composition.size] * rng.uniform(0.95, 1.05) * side
    cx, cy = shapes.POSITIONS[composition.position]
    cx, cy = (cx + rng.uniform(-0.04, 0.04)) * side, (cy + rng.uniform(-0.04, 0.04)) * side
    ys, xs = np.mgrid[0:side, 0:side] + 0.5
    dx, dy = xs - cx, ys - cy
    half = size / 2
    if composition.shape == "circle":
        inside = dx**2 + dy**2 <= half**2
    elif composition.shape == "square":
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    else:  # apex at the top centre, base along the bottom edge of the box
        depth = (dy + half) / size  # 0 at the apex, 1 at the base
        inside = (depth >= 0) & (depth <= 1) & (np.abs(dx) <= depth * half)
    pixels = np.zeros((side, side, 3), dtype=np.uint8)
    pixels[inside] = shapes.COLORS[composition.color]
    return Image.fromarray(pixels)


def perturbations() -> dict:
    def resampled(image: Image.Image, smooth: bool) -> Image.Image:
        mode = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
        small = image.resize((image.width * 5 // 8, image.height * 5 // 8), mode)
        return small.resize(image.size, mode)

    def jpeg(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=30)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")

    def noisy(image: Image.Image) -> Image.Image:
        pixels = np.asarray(image, dtype=np.float32) + np.random.default_rng(0).normal(0, 8, (image.height, image.width, 3))
        return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))

    def shifted(image: Image.Image) -> Image.Image:
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
        moved = F.pad(tensor, (1, 0, 1, 0), mode="replicate")[..., : image.height, : image.width]
        return Image.fromarray(moved[0].permute(1, 2, 0).byte().numpy())

    return {
        "resampled, smooth": lambda im: resampled(im, True),
        "resampled, nearest": lambda im: resampled(im, False),
        "jpeg q30": jpeg,
        "blur 0.8 px": lambda im: im.filter(ImageFilter.GaussianBlur(0.8)),
        "noise 8/255": noisy,
        "shift 1 px": shifted,
    }


def exact(pipe: ImageToTextPipeline, images: list[Image.Image], truth: list[str], read_blur: float = 0.0) -> float:
    if read_blur:
        images = [im.filter(ImageFilter.GaussianBlur(read_blur)) for im in images]
    predicted = [p["generated_text"] for p in pipe(images)]
    return sum(" ".join(p.split()) == t for p, t in zip(predicted, truth)) / len(truth)


def score(pipe: ImageToTextPipeline, data_dir: Path, resolution: int, max_images: int, read_blur: float = 0.0) -> dict[str, float]:
    """Exact match on the clean test images, under each perturbation and on the second renderer;
    read_blur > 0 smooths every image (Gaussian, that sigma in pixels) just before the captioner reads it."""
    records = ImageFolder(data_dir, "test").records[:max_images]
    clean = [Image.open(r.path).convert("RGB") for r in records]
    truth = [r.captions[0] for r in records]
    scores = {"clean": exact(pipe, clean, truth, read_blur)}
    for name, perturb in perturbations().items():
        scores[name] = exact(pipe, [perturb(im) for im in clean], truth, read_blur)
    rng = random.Random(7)
    held = [c for c in shapes.held_out_compositions() for _ in range(10)]
    scores["second renderer (held aside)"] = exact(pipe, [hard_edged(c, resolution, rng) for c in held], [c.caption for c in held],
                                                   read_blur)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", default=["plain", ALL], help='"plain" or a read_augment policy, e.g. "jpeg,blur"')
    parser.add_argument("--minutes", type=float, default=None, help="training minutes per arm (default: the preset's)")
    parser.add_argument("--max-images", type=int, default=720)
    parser.add_argument("--probability", type=float, default=0.5, help="read_augment_probability of the augmented arms")
    parser.add_argument("--token-dropout", nargs="+", type=float, default=[0.0],
                        help="captioner_token_dropout: every arm is trained at each rate given")
    parser.add_argument("--read-blur", nargs="+", type=float, default=[0.0],
                        help="also read every image through a Gaussian blur of each sigma (px) given; 0 reads it as it is")
    parser.add_argument("--output-dir", default="outputs/benchmarks/robustness")
    args = parser.parse_args()
    print(f"sgemm ceiling: {sgemm_gflops():.0f} GFLOP/s (2 threads)", flush=True)
    results = {}
    for arm in args.arms:
        for dropout in args.token_dropout:
            name = arm if dropout == 0 else f"{arm}, token dropout {dropout:g}"
            out = Path(args.output_dir) / (arm.replace(",", "+") + ("" if dropout == 0 else f"-dropout{dropout:g}"))
            minutes = {} if args.minutes is None else {"max_train_minutes": args.minutes}
            config = build_train_config("shapes", {"model": "captioner", "output_dir": str(out), **minutes,
                                                   "read_augment": "" if arm == "plain" else arm,
                                                   "read_augment_probability": args.probability,
                                                   "captioner_token_dropout": dropout})
            trained = train_captioner(config)
            pipe = ImageToTextPipeline.from_pretrained(out)
            for read_blur in args.read_blur:
                read_name = name if read_blur == 0 else f"{name}, read through blur {read_blur:g} px"
                scores = score(pipe, resolve_data_dir(config), config.resolution, args.max_images, read_blur)
                results[read_name] = {"steps": trained.steps, "probability": None if arm == "plain" else args.probability,
                                      "token_dropout": dropout, "read_blur": read_blur, **scores}
                print(f"\n== {read_name}: {trained.steps} steps in {trained.train_seconds:.0f}s", flush=True)
                for perturbation, value in scores.items():
                    print(f"  {perturbation:<30} exact {value:.3f}", flush=True)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "summary.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
