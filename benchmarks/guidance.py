"""Guidance scale on a trained emoji-styles model: each caption's embedding pushed `scale` times as
far from the training captions' mean (TextToImagePipeline.guidance_scale), judged by `limner
evaluate` on the test split cut in two halves by concept.

The scale is chosen on the development half only, by a rule fixed before any figure was seen: the
highest style accuracy on unseen combinations among the scales whose FID stays within 2x the real
floor (the issue's FID target) and whose concept R-precision does not fall below the plain model's.
The chosen scale and the plain model (scale 1) are then measured once on the blind half.

    python benchmarks/guidance.py --model-dir outputs/benchmarks/emoji_styles_pool2_hour/model \
        --evaluator-dir outputs/bench/evaluator --scales 1 1.5 2 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from corpus_cuts import add_halves_arguments, emoji_halves  # benchmarks/ is on the path when run as a script
from emoji_styles import print_row, summary_row

from limner.evaluation import evaluate


def choose(rows: list[dict]) -> dict:
    """The rule in the module's docstring."""
    plain = next(row for row in rows if row["guidance_scale"] == 1.0)
    allowed = [row for row in rows if row["fid"] <= 2 * row["fid_floor"] and row["concept_r_precision"] >= plain["concept_r_precision"]]
    return max(allowed or [plain], key=lambda row: row["style_accuracy"])


def trained_steps(model_dir: str) -> int:
    """The model's steps, read from the name of its last checkpoint (0 without one)."""
    checkpoints = (Path(model_dir) / "checkpoints").glob("checkpoint-*")
    return max((int(path.name.split("-")[1]) for path in checkpoints if path.name.split("-")[1].isdigit()), default=0)


def measure(args, halves: dict[str, Path], out: Path, half: str, knob: str, value: float) -> dict:
    """`limner evaluate` on one half of the test concepts with the pipeline's `knob` (an argument of
    limner.evaluation.evaluate) set to `value`; the summary row, printed."""
    report = evaluate(args.model_dir, halves[half], args.evaluator_dir, output_dir=out / f"{half}-{value:g}",
                      progress=False, **{knob: value})
    row = {**summary_row(value, trained_steps(args.model_dir), report), knob: value, "half": half}
    print(f"{half:>11} {knob} {value:g}:", end="")
    print_row(row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_halves_arguments(parser, "outputs/benchmarks/guidance")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    args = parser.parse_args()
    out, halves = emoji_halves(args)
    development = [measure(args, halves, out, "development", "guidance_scale", scale) for scale in sorted(set([1.0, *args.scales]))]
    chosen = choose(development)
    print(f"chosen on the development half: guidance scale {chosen['guidance_scale']:g}", flush=True)
    blind = [measure(args, halves, out, "blind", "guidance_scale", scale) for scale in sorted({1.0, chosen["guidance_scale"]})]
    (out / "summary.json").write_text(json.dumps({"model": args.model_dir, "chosen": chosen["guidance_scale"],
                                                  "development": development, "blind": blind}, indent=2) + "\n")


if __name__ == "__main__":
    main()
