"""Noise truncation on a trained emoji-styles model: the generator's noise (not its style code) cut
at `truncation` standard deviations (TextToImagePipeline.truncation; the presets sample at 1),
judged by `limner evaluate` on the test split cut in two halves by concept.

A tighter cut trades variety for fidelity. The value is chosen on the development half only, by a
rule fixed before any figure was seen: the highest concept R-precision among the values whose FID
stays within 2x the real floor, whose style-free prompts keep at least 3 distinct styles of 12 and
at least 50% of the real diversity (the issue's targets), and whose style accuracy does not fall
below the model's own truncation's. The chosen value and the model's own are then measured once on
the blind half.

    python benchmarks/truncation.py --model-dir outputs/benchmarks/emoji_styles_class_tied/model \\
        --evaluator-dir outputs/bench/evaluator --values 0.25 0.5 0.75 1 2
"""

from __future__ import annotations

import argparse
import json

from corpus_cuts import add_halves_arguments, emoji_halves  # benchmarks/ is on the path when run as a script
from guidance import measure

from limner.pipelines import TextToImagePipeline


def choose(rows: list[dict], own: float) -> dict:
    """The rule in the module's docstring."""
    plain = next(row for row in rows if row["truncation"] == own)
    allowed = [row for row in rows if row["fid"] <= 2 * row["fid_floor"] and row["distinct_styles"] >= 3
               and row["style_free_diversity"] >= 0.5 * row["style_free_diversity_real"]
               and row["style_accuracy"] >= plain["style_accuracy"]]
    return max(allowed or [plain], key=lambda row: row["concept_r_precision"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_halves_arguments(parser, "outputs/benchmarks/truncation")
    parser.add_argument("--values", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0, 2.0])
    args = parser.parse_args()
    own = TextToImagePipeline.from_pretrained(args.model_dir).truncation
    out, halves = emoji_halves(args)
    development = [measure(args, halves, out, "development", "truncation", value) for value in sorted({own, *args.values})]
    chosen = choose(development, own)
    print(f"chosen on the development half: truncation {chosen['truncation']:g} (the model's own: {own:g})", flush=True)
    blind = [measure(args, halves, out, "blind", "truncation", value) for value in sorted({own, chosen["truncation"]})]
    (out / "summary.json").write_text(json.dumps({"model": args.model_dir, "own": own, "chosen": chosen["truncation"],
                                                  "development": development, "blind": blind}, indent=2) + "\n")


if __name__ == "__main__":
    main()
