"""Compression benchmark: one trained generator as fp32 PyTorch, fp32 onnxruntime, int8 by
onnxruntime's dynamic and static (QDQ, calibrated on the model's own captions) quantisation, and
channel-pruned by 30% and 50% (distilled from the original; fp32 and static int8), each made
through the user's own path (`limner export --quantize MODE`, `limner prune`, then the matching
backend): size on disk, images/s at batch 1 and 64 on this machine's cores, and quality.

    python benchmarks/compress.py --shapes-model outputs/shapes
    python benchmarks/compress.py --emoji-model outputs/emoji-styles --evaluator-dir outputs/emoji-styles-evaluator

Quality: for a shapes model the judge's all-four accuracy on held-out compositions and on the
benchmark's paraphrases (benchmarks/shapes_gan.py); for an emoji-styles model the evaluator's
FID and KID and concept R-precision on the test split (`limner evaluate`).
Target (issue "Deploy at scale"): an int8 model at least 1.8x the fp32 onnxruntime images/s at
batch 64, held-out judge within 0.01 and FID within 10%.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import torch
from machine import sgemm_gflops  # benchmarks/ is on the path when run as a script

from limner.export import export_onnx
from limner.pipelines import TextToImagePipeline
from limner.pipelines.onnx_backend import INT8_GENERATOR, ONNX_FOLDER
from limner.training.data import model_training_captions

QUANTIZED = ("dynamic", "static")


def copy_model(model_dir: Path, folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns("checkpoints", "logs", "validation", "evaluation*", ONNX_FOLDER))
    return folder


def prepare(model_dir: Path, work: Path, *, prune_amounts: list[float], distill_minutes: float) -> dict[str, tuple[Path, str]]:
    """Each variant as a model folder and the backend that runs it, made as a user would
    (`limner export [--quantize]`, `limner prune`): fp32 PyTorch and onnxruntime, int8 dynamic
    and static, and for each pruning amount the pruned model in fp32 and static int8."""
    from limner.training.prune import prune_model

    calibration = model_training_captions(model_dir, limit=256)
    variants = {"torch": (copy_model(model_dir, work / "fp32"), "torch")}
    export_onnx(work / "fp32")
    variants["onnx"] = (work / "fp32", "onnx")
    for mode in QUANTIZED:
        folder = copy_model(model_dir, work / f"int8-{mode}")
        export_onnx(folder, quantize=mode, calibration_captions=calibration if mode == "static" else None)
        variants[f"int8-{mode}"] = (folder, "onnx-int8")
    for amount in prune_amounts:
        name = f"pruned-{amount:.0%}"
        folder = work / name
        report = prune_model(model_dir, folder, amount=amount, captions=model_training_captions(model_dir, limit=4096), distill_minutes=distill_minutes)
        print(f"  {name}: {report['parameters_before']:,} -> {report['parameters_after']:,} parameters; distilled "
              f"{report['distillation']['steps']} steps, L1 to the original {report['distillation']['l1_to_teacher_first']:.3f} -> "
              f"{report['distillation']['l1_to_teacher_last']:.3f}", flush=True)
        export_onnx(folder, quantize="static", calibration_captions=calibration)
        variants[name] = (folder, "onnx")
        variants[f"{name}+int8-static"] = (folder, "onnx-int8")
    return variants


def size_mb(folder: Path, backend: str) -> float:
    path = {"torch": folder / "generator" / "model.safetensors", "onnx": folder / ONNX_FOLDER / "generator.onnx",
            "onnx-int8": folder / ONNX_FOLDER / INT8_GENERATOR}[backend]
    return path.stat().st_size / 2**20


@torch.no_grad()
def images_per_second(pipe: TextToImagePipeline, batch: int, *, seconds: float = 4.0) -> float:
    """The generator alone (text encoding excluded): calls of `batch` images until `seconds` pass."""
    config = pipe.generator.config
    noise, sentence = torch.randn(batch, config.noise_dim), torch.randn(batch, config.text_dim)
    pipe.generator(noise, sentence)  # warm-up
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < 2:
        pipe.generator(noise, sentence)
        calls += 1
    return calls * batch / (time.perf_counter() - started)


def quality_shapes(pipe: TextToImagePipeline, images_per_caption: int) -> dict:
    from shapes_gan import evaluate as judge  # benchmarks/ is on the path when run as a script

    scores = judge(pipe, images_per_caption)
    return {"held_out": scores["held_out"]["all"], "paraphrase": scores["paraphrase"]["all"]}


def quality_emoji(folder: Path, backend: str, evaluator_dir: Path, out: Path, max_images: int) -> dict:
    from limner.evaluation import evaluate

    report = evaluate(folder, "emoji-styles", evaluator_dir, output_dir=out / f"evaluation-{folder.name}-{backend}", max_images=max_images,
                      backend=backend, progress=False)
    figures = {"fid": report["generated"]["fid"], "kid": report["generated"]["kid_mean"]}
    if "styles" in report:
        figures["concept_r_precision"] = report["styles"]["generated"]["concept_r_precision"]["mean"]
    return figures


def run(name: str, model_dir: Path, out: Path, quality, *, prune_amounts: list[float], distill_minutes: float,
        rounds: int = 3) -> list[dict]:
    """Each variant's size and quality, then its speed: `rounds` rounds that time every variant in
    turn, each variant's figure the median of its rounds (the machine's speed drifts within a run;
    interleaving puts every variant under the same drift)."""
    rows, pipes = [], []
    for variant, (folder, backend) in prepare(model_dir, out / "variants", prune_amounts=prune_amounts, distill_minutes=distill_minutes).items():
        pipe = TextToImagePipeline.from_pretrained(folder, backend=backend)
        row = {"model": name, "variant": variant, "size_mb": round(size_mb(folder, backend), 2), **quality(folder, backend, pipe)}
        if backend == "onnx-int8":
            row["int8_mean_abs_diff"] = json.loads((folder / ONNX_FOLDER / "export.json").read_text())["int8"]["mean_abs_diff"]
        rows.append(row)
        pipes.append(pipe)
    for batch in (1, 64):
        timings = [[images_per_second(pipe, batch, seconds=3.0) for pipe in pipes] for _ in range(rounds)]
        for index, row in enumerate(rows):
            row[f"images_per_second_batch_{batch}"] = round(statistics.median(t[index] for t in timings), 1)
            row[f"images_per_second_batch_{batch}_rounds"] = [round(t[index], 1) for t in timings]
    base = next(r for r in rows if r["variant"] == "onnx")
    for row in rows:
        row["speedup_vs_onnx_fp32_batch_64"] = round(row["images_per_second_batch_64"] / base["images_per_second_batch_64"], 2)
        print("  " + " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes-model", default=None, help="a trained shapes model folder")
    parser.add_argument("--emoji-model", default=None, help="a trained emoji-styles model folder")
    parser.add_argument("--evaluator-dir", default=None, help="the emoji-styles evaluator (needed with --emoji-model)")
    parser.add_argument("--images-per-caption", type=int, default=4, help="shapes judge")
    parser.add_argument("--max-images", type=int, default=1000, help="emoji-styles evaluation")
    parser.add_argument("--prune-amounts", type=float, nargs="*", default=[0.3, 0.5])
    parser.add_argument("--distill-minutes", type=float, default=5.0, help="per pruned model")
    parser.add_argument("--output-dir", default="outputs/benchmarks/compress")
    args = parser.parse_args()
    if not (args.shapes_model or args.emoji_model):
        parser.error("give --shapes-model and/or --emoji-model")
    if args.emoji_model and not args.evaluator_dir:
        parser.error("--emoji-model needs --evaluator-dir")
    out = Path(args.output_dir)
    print(f"sgemm ceiling: {sgemm_gflops():.0f} GFLOP/s ({torch.get_num_threads()} threads)", flush=True)
    rows = []
    if args.shapes_model:
        print("shapes:", flush=True)
        rows += run("shapes", Path(args.shapes_model), out / "shapes", lambda folder, backend, pipe: quality_shapes(pipe, args.images_per_caption),
                    prune_amounts=args.prune_amounts, distill_minutes=args.distill_minutes)
    if args.emoji_model:
        print("emoji-styles:", flush=True)
        rows += run("emoji-styles", Path(args.emoji_model), out / "emoji",
                    lambda folder, backend, pipe: quality_emoji(folder, backend, Path(args.evaluator_dir), out / "emoji", args.max_images),
                    prune_amounts=args.prune_amounts, distill_minutes=args.distill_minutes)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(f"{row['model']:>12} {row['variant']:>22}: {row['size_mb']:6.2f} MB, {row['images_per_second_batch_1']:7.1f} img/s at 1, "
              f"{row['images_per_second_batch_64']:7.1f} img/s at 64 ({row['speedup_vs_onnx_fp32_batch_64']:.2f}x fp32 onnx)")


if __name__ == "__main__":
    main()
