"""Throughput of generation, text encoding and training, against this machine's ceiling.

Measures, in one run:
  - the sgemm ceiling: the best GFLOP/s of a 2048x2048 float32 matmul on all threads
  - generation images/s at 32 px (shapes preset generator) and 64 px (emoji preset), batch 1,
    16 and 64, for each backend: eager PyTorch, eager channels-last, torch.compile and
    onnxruntime; with the generator's FLOPs per image (counted by torch's FlopCounterMode,
    a multiply-add = 2 FLOPs) the figure is also a fraction of the ceiling
  - captions encoded per second by all-MiniLM-L6-v2, eager and onnxruntime, batch 64
  - training images/s of one GAN step (D update, G update, EMA) of each preset, batch 32,
    and its FLOPs (forward and backward) as a fraction of the ceiling. FlopCounterMode
    cannot follow the gradient penalty's autograd.grad, so the FLOPs are counted on the
    same step without it: a lower bound, and so is the fraction (the time is of the real step)
Weights are random: speed depends on the architecture, not on what was learnt.

    python benchmarks/throughput.py                 # everything (about 6 minutes on 2 cores)
    python benchmarks/throughput.py --seconds 1 --backends eager onnx
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from torch.utils.flop_counter import FlopCounterMode

from limner.models import Discriminator, Generator
from limner.training import build_train_config
from limner.training.gan_step import GANBatch, GANModels, GANOptimizers, gan_train_step

RESOLUTIONS = {32: "shapes", 64: "emoji"}
BATCHES = (1, 16, 64)
BACKENDS = ("eager", "channels_last", "compile", "onnx")


def sgemm_ceiling(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def timed_rate(step, items_per_call: int, seconds: float) -> float:
    """Items per second of `step()`, after one warm-up call, over at least `seconds` (and 3 calls)."""
    step()
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds:
        step()
        calls += 1
    return calls * items_per_call / (time.perf_counter() - started)


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def preset_models(preset: str, text_dim: int = 384) -> tuple:
    config = build_train_config(preset)
    sentences = torch.nn.functional.normalize(torch.randn(64, text_dim), dim=-1)
    generator_config, discriminator_config = config.model_configs(text_dim, sentences)
    generator = Generator(generator_config)
    generator.text_norm.fit(sentences)
    return config, generator.eval(), Discriminator(discriminator_config)


def generator_runner(generator: Generator, backend: str, folder: Path):
    """A function (noise, sentence) -> images for the backend."""
    if backend == "eager":
        return generator
    if backend == "channels_last":
        return generator.to(memory_format=torch.channels_last)
    if backend == "compile":
        return torch.compile(generator)
    from limner.export.onnx import export_generator
    from limner.pipelines.onnx_backend import OnnxGenerator

    path = folder / f"generator-{generator.config.resolution}.onnx"
    export_generator(generator, path)
    return OnnxGenerator(path, generator.config)


@torch.no_grad()
def generation(args, ceiling: float, folder: Path) -> list[dict]:
    rows = []
    for resolution, preset in RESOLUTIONS.items():
        _, generator, _ = preset_models(preset)
        z, d = generator.config.noise_dim, generator.config.text_dim
        per_image = flops(lambda: generator(torch.randn(1, z), torch.randn(1, d)))
        print(f"{resolution} px ({preset} preset): generator {sum(p.numel() for p in generator.parameters()) / 1e6:.2f}M params, "
              f"{per_image / 1e9:.3f} GFLOP per image")
        for backend in args.backends:
            run = generator_runner(generator, backend, folder)
            for batch in BATCHES:
                noise, sentence = torch.randn(batch, z), torch.randn(batch, d)
                rate = timed_rate(lambda: run(noise, sentence), batch, args.seconds)
                fraction = rate * per_image / 1e9 / ceiling
                rows.append({"resolution": resolution, "backend": backend, "batch": batch, "images_per_s": round(rate, 1),
                             "gflop_per_image": round(per_image / 1e9, 4), "fraction_of_ceiling": round(fraction, 3)})
                print(f"  {backend:<13} batch {batch:>2}: {rate:>8.1f} images/s  {fraction:>6.1%} of the sgemm ceiling")
            generator = generator.to(memory_format=torch.contiguous_format)
    return rows


@torch.no_grad()
def text_encoding(args, folder: Path) -> dict:
    from limner.export.onnx import export_text_encoder
    from limner.pipelines.onnx_backend import OnnxTextEncoder
    from limner.text import HuggingFaceTextEncoder

    encoder = HuggingFaceTextEncoder()
    captions = [f"a {s} {c} {shape} in the {p} number {i}" for i, (s, c, shape, p) in
                enumerate([(s, c, sh, p) for s in ("small", "large") for c in ("red", "green", "blue", "grey")
                           for sh in ("circle", "square", "triangle", "star") for p in ("top left", "center")])][:64]
    rates = {"eager": timed_rate(lambda: encoder.encode(captions), len(captions), args.seconds)}
    if "onnx" in args.backends:
        path = folder / "text_encoder.onnx"
        export_text_encoder(encoder, path)
        onnx = OnnxTextEncoder(path, encoder)
        rates["onnx"] = timed_rate(lambda: onnx.encode(captions), len(captions), args.seconds)
    for name, rate in rates.items():
        print(f"text encoding (all-MiniLM-L6-v2, batch 64) {name:<6}: {rate:>8.1f} captions/s")
    return {k: round(v, 1) for k, v in rates.items()}


def training(args, ceiling: float) -> list[dict]:
    rows = []
    for resolution, preset in RESOLUTIONS.items():
        config, generator, discriminator = preset_models(preset)
        generator.train()
        ema = Generator(generator.config)
        ema.load_state_dict(generator.state_dict())
        models = GANModels(generator, discriminator, ema)
        optimizers = GANOptimizers(torch.optim.Adam(generator.parameters(), lr=1e-4, betas=(0.0, 0.9)),
                                   torch.optim.Adam(discriminator.parameters(), lr=4e-4, betas=(0.0, 0.9)))
        b, z, d = 32, generator.config.noise_dim, generator.config.text_dim
        batch = GANBatch(images=torch.rand(b, 3, resolution, resolution) * 2 - 1, sentence=torch.randn(b, d),
                         mismatched=torch.randn(b, d), noise=torch.randn(b, z))

        def step():
            gan_train_step(models, optimizers, batch, gp_weight=config.gp_weight, gp_power=config.gp_power,
                           contrastive_weight=config.contrastive_weight, contrastive_temperature=config.contrastive_temperature,
                           image_contrastive_weight=config.image_contrastive_weight, reconstruction_weight=config.reconstruction_weight)

        with mock.patch("limner.training.gan_step.matching_aware_gp", lambda logits, *args, **kwargs: logits.sum() * 0):
            per_step = flops(step)  # without the penalty: a lower bound, see the module's docstring
        rate = timed_rate(step, b, args.seconds * 2)
        fraction = rate / b * per_step / 1e9 / ceiling
        rows.append({"resolution": resolution, "preset": preset, "batch": b, "images_per_s": round(rate, 1),
                     "gflop_per_step": round(per_step / 1e9, 2), "fraction_of_ceiling": round(fraction, 3)})
        print(f"training {resolution} px ({preset} preset, batch {b}): {rate:>7.1f} images/s, at least {per_step / 1e9:.2f} GFLOP "
              f"a step, at least {fraction:.1%} of the sgemm ceiling")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--parts", nargs="+", choices=("generation", "text", "training"), default=["generation", "text", "training"])
    parser.add_argument("--output", default="outputs/benchmarks/throughput.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    ceiling = sgemm_ceiling()
    print(f"sgemm ceiling ({torch.get_num_threads()} threads): {ceiling:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as scratch:
        results = {"threads": torch.get_num_threads(), "sgemm_gflops": round(ceiling, 1), "device": "cpu"}
        if "generation" in args.parts:
            results["generation"] = generation(args, ceiling, Path(scratch))
        if "text" in args.parts:
            results["text_encoding_captions_per_s"] = text_encoding(args, Path(scratch))
        if "training" in args.parts:
            results["training"] = training(args, ceiling)
    if "generation" in results:
        best = max((r for r in results["generation"] if r["resolution"] == 64 and r["batch"] == 64), key=lambda r: r["images_per_s"])
        print(f"fastest at 64 px, batch 64: {best['backend']}, {best['images_per_s']} images/s = {best['fraction_of_ceiling']:.1%} of the ceiling")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
