"""Noise codes taken in turn: a prompt's images drawn with the codes spread over them
(TextToImagePipeline.spread_codes, the default) against each image drawing its own code, on a
trained emoji-styles model, judged by `limner evaluate` on both halves of the test split that
benchmarks/guidance.py cuts (nothing is chosen here: both settings are read on both halves).

    python benchmarks/spread_codes.py --model-dir outputs/benchmarks/emoji_styles_pool2_hour/model \
        --evaluator-dir outputs/bench/evaluator
"""

from __future__ import annotations

import argparse
import json

from emoji_styles import print_row, summary_row  # benchmarks/ is on the path when run as a script
from corpus_cuts import add_halves_arguments, emoji_halves

from limner.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_halves_arguments(parser, "outputs/benchmarks/spread_codes")
    args = parser.parse_args()
    out, halves = emoji_halves(args)
    rows = []
    for half in ("development", "blind"):
        for spread in (False, True):
            report = evaluate(args.model_dir, halves[half], args.evaluator_dir, output_dir=out / f"{half}-{'spread' if spread else 'drawn'}",
                              spread_codes=spread, progress=False)
            rows.append({**summary_row(0, 0, report), "half": half, "spread_codes": spread})
            print(f"{half:>11}, codes {'in turn' if spread else 'drawn  '}:", end="")
            print_row(rows[-1])
    (out / "summary.json").write_text(json.dumps({"model": args.model_dir, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
