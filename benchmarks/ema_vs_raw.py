"""The averaged generator against the trained one: a GAN run samples from an exponential moving
average of its generator's weights (`ema_decay`, 0.999 by default: a half-life of about 690
steps). On a run of 2,600 to 5,400 steps (an hour on these 2 cores) that half-life is a quarter to
a seventh of the run. This reads both from the run's newest checkpoint (its ema/ and generator/ folders) with
`limner evaluate` on the whole test split, so the lag's cost or gain is measured, not guessed.

    python benchmarks/ema_vs_raw.py --model-dir outputs/benchmarks/emoji_styles_bf16_fast_hour/model \
        --evaluator-dir outputs/benchmarks/emoji_styles_bf16_fast_hour/evaluator
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from emoji_styles import print_row, summary_row  # benchmarks/ is on the path when run as a script

from limner.evaluation import evaluate
from limner.training.checkpoint import list_checkpoints

NOT_COPIED = ("checkpoints", "validation", "generator")


def model_with_generator(model_dir: Path, generator_dir: Path, out: Path) -> Path:
    """A copy of the saved pipeline in `model_dir` whose generator is the one in `generator_dir`."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(model_dir, out, ignore=lambda folder, names: [n for n in names if folder == str(model_dir) and n in NOT_COPIED])
    shutil.copytree(generator_dir, out / "generator")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a GAN run's output folder (the saved pipeline and checkpoints/)")
    parser.add_argument("--evaluator-dir", required=True)
    parser.add_argument("--data", default="emoji-styles", help="a built-in dataset's name or an image folder")
    parser.add_argument("--output-dir", default="outputs/benchmarks/ema_vs_raw")
    parser.add_argument("--max-images", type=int, default=2000)
    args = parser.parse_args()
    model_dir, out = Path(args.model_dir), Path(args.output_dir)
    checkpoints = list_checkpoints(model_dir / "checkpoints")
    if not checkpoints:
        raise SystemExit(f"{model_dir / 'checkpoints'}: no checkpoint to read the trained generator from")
    step, newest = checkpoints[-1]
    rows = []
    for name in ("ema", "generator"):
        model = model_with_generator(model_dir, newest / name, out / f"model-{name}")
        report = evaluate(model, args.data, args.evaluator_dir, output_dir=out / f"evaluation-{name}",
                          max_images=args.max_images, progress=False)
        rows.append({**summary_row(0, step, report), "weights": name})
        print(f"{'averaged (ema)' if name == 'ema' else 'trained (raw)':>15}:", end="")
        print_row(rows[-1])
    (out / "summary.json").write_text(json.dumps({"model": str(model_dir), "checkpoint": newest.name, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
