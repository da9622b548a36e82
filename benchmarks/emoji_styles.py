"""Emoji-styles benchmark: train the preset's evaluator, then the GAN in segments under a
wall-clock budget, evaluating after each segment, so every figure comes with its curve
against training minutes (and steps: the machine's speed varies from day to day, so the
sgemm ceiling measured at the start is printed too).

    python benchmarks/emoji_styles.py                                   # 64 px, 10/20/40/60 minutes
    python benchmarks/emoji_styles.py --preset emoji-styles-32 --marks 5 10 15
    python benchmarks/emoji_styles.py --override '{"diversity_weight": 0}' --output-dir outputs/benchmarks/no_diversity
    python benchmarks/emoji_styles.py --model vae --marks 10 --evaluator-dir outputs/benchmarks/emoji_styles/evaluator

Targets (issue "Real pictures", 64 px, 60 minutes): style accuracy on unseen combinations >= 0.80;
concept R-precision >= 70% of the real images'; FID <= 2x the real floor; style-free prompts
>= 3 distinct styles among 12 samples and diversity >= 50% of the real.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from machine import sgemm_gflops  # benchmarks/ is on the path when run as a script

from limner.evaluation import evaluate
from limner.training import build_train_config, train
from limner.training.evaluator_trainer import train_evaluator
from limner.training.vae_trainer import train_vae


def summary_row(minutes: float, steps: int, report: dict) -> dict:
    generated, floor = report["generated"], report["real_floor"]
    styles = report["styles"]
    free = styles["style_free"]
    return {
        "minutes": minutes, "steps": steps,
        "style_accuracy": styles["generated"]["style_accuracy"], "style_accuracy_real": styles["real_floor"]["style_accuracy"],
        "concept_r_precision": styles["generated"]["concept_r_precision"]["mean"],
        "concept_r_precision_real": styles["real_floor"]["concept_r_precision"]["mean"],
        "fid": generated["fid"], "fid_floor": floor["fid"],
        "distinct_styles": free["generated"]["distinct_styles"], "distinct_styles_real": free["real_floor"]["distinct_styles"],
        "style_free_diversity": free["generated"]["diversity"], "style_free_diversity_real": free["real_floor"]["diversity"],
        "banding": generated["banding"], "banding_real": floor["banding"],
        "fine_grain": generated["fine_grain"], "fine_grain_real": floor["fine_grain"],
    }


def print_row(row: dict) -> None:
    print(f"  {row['minutes']:>4g} min {row['steps']:>6} steps | style acc {row['style_accuracy']:.3f} (real {row['style_accuracy_real']:.3f})"
          f" | concept R-prec {row['concept_r_precision']:.3f} (real {row['concept_r_precision_real']:.3f},"
          f" {row['concept_r_precision'] / max(row['concept_r_precision_real'], 1e-9):.0%})"
          f" | FID {row['fid']:.2f} (floor {row['fid_floor']:.2f}, {row['fid'] / max(row['fid_floor'], 1e-9):.1f}x)"
          f" | style-free: {row['distinct_styles']:.2f} styles of 12 (real {row['distinct_styles_real']:.2f}),"
          f" diversity {row['style_free_diversity']:.3f} (real {row['style_free_diversity_real']:.3f},"
          f" {row['style_free_diversity'] / max(row['style_free_diversity_real'], 1e-9):.0%})"
          f" | banding {row['banding']:.2f} (real {row['banding_real']:.2f})"
          f" | fine grain {row['fine_grain']:.4f} (real {row['fine_grain_real']:.4f},"
          f" {row['fine_grain'] / max(row['fine_grain_real'], 1e-9):.1f}x)", flush=True)


def sample_grid(model_dir: Path, data_dir: Path, path: Path, *, combinations: int = 8, style_free: int = 4, seeds: int = 8) -> None:
    """Rows of unseen combinations (the real image of that concept in that style first, then `seeds`
    samples), then style-free prompts (a blank first, then `seeds` samples)."""
    from PIL import Image

    from limner.data import ImageFolder
    from limner.pipelines import TextToImagePipeline
    from limner.utils.images import make_grid, save_png

    pipe = TextToImagePipeline.from_pretrained(model_dir)
    resolution = pipe.generator.config.resolution
    records = [r for r in ImageFolder(data_dir, "test").records if r.columns.get("split_kind") == "unseen_combination"]
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(0)).tolist()
    picked = [records[i] for i in order[:combinations]]
    free = sorted({r.columns["concept"] for r in records})
    free = [free[i] for i in torch.randperm(len(free), generator=torch.Generator().manual_seed(1))[:style_free].tolist()]
    tiles, labels = [], []
    for record in picked:
        tiles.append(Image.open(record.path).convert("RGB").resize((resolution, resolution)))
        tiles += pipe([record.captions[0]], num_images_per_prompt=seeds, seed=0)
        labels.append(record.captions[0])
    for concept in free:
        tiles.append(Image.new("RGB", (resolution, resolution), (255, 255, 255)))
        tiles += pipe([concept], num_images_per_prompt=seeds, seed=0)
        labels.append(f"{concept} (no style)")
    grid = make_grid(tiles, seeds + 1, row_labels=labels, scale=max(1, 128 // resolution))
    save_png(grid, path, {"model": str(model_dir), "seeds": "0..7"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="emoji-styles")
    parser.add_argument("--marks", type=float, nargs="+", default=[10, 20, 40, 60], help="cumulative training minutes to evaluate at")
    parser.add_argument("--model", choices=("gan", "vae"), default="gan",
                        help="vae: the conditional VAE on the same data, trained once for the last mark (it does not resume)")
    parser.add_argument("--evaluator-minutes", type=float, default=12)
    parser.add_argument("--evaluator-dir", default=None, help="reuse a trained evaluator")
    parser.add_argument("--output-dir", default="outputs/benchmarks/emoji_styles")
    parser.add_argument("--override", default="{}", help="JSON of config values over the preset (GANTrainConfig, VAETrainConfig, ... by kind)")
    parser.add_argument("--max-images", type=int, default=2000)
    parser.add_argument("--grid-only", action="store_true", help="only draw the sample grid of the model in --output-dir")
    args = parser.parse_args()
    out = Path(args.output_dir)
    if args.grid_only:
        config = build_train_config(args.preset, {})
        from limner.training.data import resolve_data_dir

        sample_grid(out / "model", resolve_data_dir(config), out / "samples_grid.png")
        return
    print(f"sgemm ceiling: {sgemm_gflops():.0f} GFLOP/s (2 threads)", flush=True)
    overrides = json.loads(args.override)

    evaluator_dir = Path(args.evaluator_dir) if args.evaluator_dir else out / "evaluator"
    if not args.evaluator_dir:
        config = build_train_config(args.preset, {"model": "evaluator", "output_dir": str(evaluator_dir), "seed": 1234,
                                                   "max_train_minutes": args.evaluator_minutes, "train_batch_size": 64})
        result = train_evaluator(config)
        info = json.loads((evaluator_dir / "model_index.json").read_text())
        print(f"evaluator: {result.steps} steps, test recall@1 {result.test_recall_at_1}, style head accuracy on real test "
              f"images {info['test_style_accuracy']}", flush=True)

    rows, done_minutes = [], 0.0
    model_dir = out / "model"
    marks = args.marks[-1:] if args.model == "vae" else args.marks
    for mark in marks:
        if args.model == "vae":
            config = build_train_config(args.preset, {**overrides, "model": "vae", "output_dir": str(model_dir), "max_train_minutes": mark})
            trained = train_vae(config)
        else:
            config = build_train_config(args.preset, {**overrides, "output_dir": str(model_dir), "max_train_minutes": mark - done_minutes,
                                                      "resume_from_checkpoint": "latest" if done_minutes else None})
            trained = train(config)
        if trained.interrupted:  # Ctrl-C or SIGTERM: the model is saved; the later marks are not run
            raise SystemExit(f"interrupted at step {trained.steps}: the model so far is in {model_dir}; the later marks were not run")
        done_minutes = mark
        report = evaluate(model_dir, config.train_data_dir, evaluator_dir, output_dir=out / f"evaluation-{mark:g}min",
                          max_images=args.max_images, progress=False)
        rows.append(summary_row(mark, trained.steps, report))
        print_row(rows[-1])
        (out / "summary.json").write_text(json.dumps({"preset": args.preset, "model": args.model, "override": overrides, "rows": rows}, indent=2) + "\n")
    sample_grid(model_dir, Path(report["data"]), out / "samples_grid.png")


if __name__ == "__main__":
    main()
