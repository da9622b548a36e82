"""Adaptation benchmark (issue "Adapt, explain, govern"): a base GAN trained on emoji-styles
without one style at all, then adapted to that style from 50 of its images by LoRA (ranks 4, 8
and 16) by textual inversion (one new word) and by full fine-tuning, each for at most `--adapt-minutes`. For each: the held-out
style's accuracy (the evaluator's style head) and FID on it, before (the base) and after; the
other styles' accuracy after (forgetting); trainable parameters, minutes, size on disk.

    python benchmarks/adapt.py --evaluator-dir outputs/bench/evaluator
    python benchmarks/adapt.py --evaluator-dir outputs/bench/evaluator --base-dir outputs/benchmarks/adapt/base  # reuse a base

The data folders are cut from the 64 px emoji-styles corpus (built once by `limner data
emoji-styles`): base/ (every style but the held-out one, train and test), adapt/ (50 images of
the held-out style, styled captions only), measure-style/ (300 further images of the held-out
style, never trained on) and measure-others/ (the test split's other styles); textual inversion
reads adapt-word/ and measure-style-word/, the same with "<held-style> style" in the captions.

Target: LoRA reaches at least 90% of full fine-tuning's style accuracy with under 5% of its
trainable parameters, in at most 5 minutes, and the other styles lose at most 0.05.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from corpus_cuts import read_split_rows, write_split  # benchmarks/ is on the path when run as a script
from machine import sgemm_gflops

from limner.data import ImageFolder
from limner.data.builders import builtin_data_dir
from limner.metrics.images import distribution_metrics
from limner.models import lora
from limner.pipelines import TextToImagePipeline
from limner.pipelines.dual_encoder import load_evaluator
from limner.training import build_train_config, train
from limner.training.finetune import finetune, finetune_config
from limner.utils.images import from_uint8

METHODS = (("lora", 4), ("lora", 8), ("lora", 16), ("textual-inversion", None), ("full", None))
WORD = "<held-style>"  # textual inversion's new word: the held-out style's captions say "NAME, <held-style> style"


def worded(rows: list[dict], style: str) -> list[dict]:
    """The rows with the style's name in their captions replaced by the new word."""
    return [{**row, "text": [text.replace(f"{style} style", f"{WORD} style") for text in row["text"]]} for row in rows]


def cut_folders(corpus: Path, style: str, out: Path, *, adapt_images: int, measure_images: int, seed: int) -> dict[str, Path]:
    train, test = read_split_rows(corpus, "train"), read_split_rows(corpus, "test")
    held = [row for row in train if row["style"] == style]
    if len(held) < adapt_images + 10:
        raise SystemExit(f"style {style!r} has {len(held)} training images; styles: {sorted({r['style'] for r in train})}")
    random.Random(seed).shuffle(held)
    styled_only = lambda rows: [{**row, "text": [row["text"][0]]} for row in rows]  # "name, STYLE style"
    folders = {name: out / name for name in ("base", "adapt", "adapt-word", "measure-style", "measure-style-word", "measure-others")}
    write_split(corpus, "train", [r for r in train if r["style"] != style], folders["base"], "train")
    write_split(corpus, "test", [r for r in test if r["style"] != style], folders["base"], "test")
    write_split(corpus, "train", styled_only(held[:adapt_images]), folders["adapt"], "train")
    write_split(corpus, "train", worded(styled_only(held[:adapt_images]), style), folders["adapt-word"], "train")
    measured = styled_only(held[adapt_images : adapt_images + measure_images])
    write_split(corpus, "train", measured, folders["measure-style"], "test")
    write_split(corpus, "train", worded(measured, style), folders["measure-style-word"], "test")
    others = [r for r in test if r["style"] != style]
    random.Random(seed + 1).shuffle(others)
    write_split(corpus, "test", styled_only(others[:measure_images]), folders["measure-others"], "test")
    return folders


@torch.no_grad()
def measure(pipe: TextToImagePipeline, evaluator, folder: Path, *, seed: int = 0) -> dict:
    """Style accuracy of images drawn from the folder's styled captions (the style head against each
    caption's style) and FID on evaluator features (real half A against the drawings of half B,
    beside the floor: real half A against real half B)."""
    records = ImageFolder(folder, "test").records
    real = from_uint8(ImageFolder(folder, "test").load_images(pipe.resolution, progress=False))
    fake = torch.cat([pipe.generate_tensors([r.captions[0]], seed=seed + i) for i, r in enumerate(records)])
    index = {name: i for i, name in enumerate(evaluator.config.styles)}
    labels = torch.tensor([index[r.columns["style"]] for r in records])
    read = evaluator.style_logits(evaluator.pooled_features(fake)).argmax(1)
    read_real = evaluator.style_logits(evaluator.pooled_features(real)).argmax(1)
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed))
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2 :]
    return {
        "style_accuracy": round((read == labels).float().mean().item(), 4),
        "style_accuracy_real": round((read_real == labels).float().mean().item(), 4),  # the judge on the real images
        "fid": round(distribution_metrics(evaluator, real[half_a], fake[half_b])["fid"], 2),
        "fid_floor": round(distribution_metrics(evaluator, real[half_a], real[half_b])["fid"], 2),
    }


def named_methods() -> list[tuple[str, str, int | None]]:
    return [(f"lora-r{rank}" if method == "lora" else method, method, rank) for method, rank in METHODS]


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json") and "checkpoints" not in p.parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluator-dir", required=True, help="the judge: `limner train --model evaluator --preset emoji-styles`")
    parser.add_argument("--style", default="fluent flat", help="the style the base never sees")
    parser.add_argument("--preset", default="emoji-styles-32")
    parser.add_argument("--base-minutes", type=float, default=20)
    parser.add_argument("--base-dir", default=None, help="reuse a base trained by an earlier run")
    parser.add_argument("--adapt-minutes", type=float, default=5)
    parser.add_argument("--adapt-images", type=int, default=50)
    parser.add_argument("--measure-images", type=int, default=300)
    parser.add_argument("--methods", nargs="+", default=[name for name, _, _ in named_methods()],
                        help="which of lora-r4 lora-r8 lora-r16 textual-inversion full")
    parser.add_argument("--preservation-weight", type=float, default=None,
                        help="prior preservation for lora and full (default: limner finetune's, 10; 0: off)")
    parser.add_argument("--output-dir", default="outputs/benchmarks/adapt")
    args = parser.parse_args()
    out = Path(args.output_dir)
    print(f"sgemm ceiling: {sgemm_gflops():.0f} GFLOP/s (2 threads)", flush=True)
    corpus = builtin_data_dir("emoji-styles", 64)
    folders = cut_folders(corpus, args.style, out / "data", adapt_images=args.adapt_images, measure_images=args.measure_images, seed=0)
    evaluator, _, _ = load_evaluator(args.evaluator_dir)

    base_dir = Path(args.base_dir) if args.base_dir else out / "base"
    if not args.base_dir:
        config = build_train_config(args.preset, {"train_data_dir": str(folders["base"]), "output_dir": str(base_dir),
                                                  "max_train_minutes": args.base_minutes})
        result = train(config)
        print(f"base: {result.steps} steps in {result.train_seconds / 60:.1f} min, without any {args.style!r} image", flush=True)
    base = TextToImagePipeline.from_pretrained(base_dir)
    base_parameters = sum(p.numel() for p in base.generator.parameters())
    rows = [{"method": "base (before)", "trainable": 0, "steps": 0, "minutes": 0.0, "bytes": _size(base_dir),
             "style": measure(base, evaluator, folders["measure-style"]), "others": measure(base, evaluator, folders["measure-others"])}]
    print(json.dumps(rows[-1]), flush=True)
    prompts = [r.captions[0] for r in ImageFolder(folders["measure-style"], "test").records[:4]]
    for name, method, rank in named_methods():
        if name not in args.methods:
            continue
        word = method == "textual-inversion"
        overrides = {"train_data_dir": str(folders["adapt-word" if word else "adapt"]), "output_dir": str(out / name), "method": method,
                     "max_train_minutes": args.adapt_minutes, "validation_prompts": [p.replace(f"{args.style} style", f"{WORD} style") for p in prompts] if word else prompts}
        if rank:
            overrides["lora_rank"] = rank
        if word:
            overrides["token"] = WORD
        if args.preservation_weight is not None:
            overrides["preservation_weight"] = args.preservation_weight
        started = time.perf_counter()
        result = finetune(finetune_config(base_dir, overrides))
        minutes = (time.perf_counter() - started) / 60
        pipe = TextToImagePipeline.from_pretrained(base_dir)
        if method == "lora":
            pipe.load_lora(out / name)
            size = lora.adapter_size_bytes(out / name)
        elif word:
            pipe.load_textual_inversion(out / name)
            size = (out / name / "learned_embeds.safetensors").stat().st_size
        else:
            pipe = TextToImagePipeline.from_pretrained(out / name)
            size = _size(out / name)
        info = json.loads((out / name / "finetune.json").read_text())
        rows.append({"method": name, "trainable": info["trainable_parameters"], "steps": result.steps, "minutes": round(minutes, 2),
                     "bytes": size, "style": measure(pipe, evaluator, folders["measure-style-word" if word else "measure-style"]),
                     "others": measure(pipe, evaluator, folders["measure-others"])})
        print(json.dumps(rows[-1]), flush=True)
    (out / "summary.json").write_text(json.dumps({"style": args.style, "base_parameters": base_parameters, "rows": rows,
                                                  "preservation_weight": args.preservation_weight}, indent=2) + "\n")
    print_table(rows, base_parameters)


def print_table(rows: list[dict], base_parameters: int) -> None:
    full = next((r for r in rows if r["method"] == "full"), rows[0])
    before = rows[0]["others"]["style_accuracy"]
    print(f"\n{'method':<19}{'trainable':>12}{'% of full':>10}{'steps':>7}{'min':>6}{'size KB':>9}"
          f"{'style acc':>10}{'% of full':>10}{'FID (floor)':>16}{'others acc':>11}{'lost':>7}")
    for row in rows:
        share = row["trainable"] / max(full["trainable"], 1)
        of_full = row["style"]["style_accuracy"] / max(full["style"]["style_accuracy"], 1e-9)
        others = row["others"]["style_accuracy"]
        print(f"{row['method']:<19}{row['trainable']:>12,}{share:>10.1%}{row['steps']:>7}{row['minutes']:>6.1f}{row['bytes'] / 1024:>9.0f}"
              f"{row['style']['style_accuracy']:>10.3f}{of_full:>10.0%}{row['style']['fid']:>9.1f} ({row['style']['fid_floor']:.1f})"
              f"{others:>11.3f}{before - others:>7.3f}")
    print(f"(the generator has {base_parameters:,} parameters; full fine-tuning trains all of them)")


if __name__ == "__main__":
    main()
