"""Step speed of a preset's GAN in fp32 and under bf16 autocast (GANTrainConfig.mixed_precision),
one after the other in one process, on the same data and seed. Prints the sgemm ceiling, whether
the CPU computes bf16 natively, steps per second of each and their ratio, and each run's last
losses (the two runs start alike, so their losses should stay close).

    python benchmarks/mixed_precision.py                            # emoji-styles, 60 steps each
    python benchmarks/mixed_precision.py --preset shapes --steps 200
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from machine import sgemm_gflops  # benchmarks/ is on the path when run as a script

from limner.training import build_train_config, train
from limner.training.trainer import cpu_has_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="emoji-styles")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--output-dir", default="outputs/benchmarks/mixed_precision")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"sgemm ceiling: {sgemm_gflops():.0f} GFLOP/s; bf16 instructions on this CPU: {cpu_has_bf16()}", flush=True)
    rows = {}
    for mixed_precision in ("no", "bf16"):
        config = build_train_config(args.preset, {
            "output_dir": str(Path(args.output_dir) / mixed_precision), "max_train_steps": args.steps, "max_train_minutes": None,
            "mixed_precision": mixed_precision, "validation_steps": 10**9, "checkpointing_steps": 10**9, "device": "cpu"})
        result = train(config, progress=False)
        rows[mixed_precision] = {"steps": result.steps, "seconds": round(result.train_seconds, 1),
                                 "steps_per_second": result.steps / result.train_seconds,
                                 "last_losses": {name: round(value, 3) for name, value in result.last_losses.items()}}
        print(f"{mixed_precision:>4}: {result.steps} steps in {result.train_seconds:.1f} s, "
              f"{rows[mixed_precision]['steps_per_second']:.2f} steps/s; last losses {rows[mixed_precision]['last_losses']}", flush=True)
    ratio = rows["bf16"]["steps_per_second"] / rows["no"]["steps_per_second"]
    print(f"bf16 / fp32 steps per second: {ratio:.2f}x", flush=True)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "summary.json").write_text(json.dumps({"preset": args.preset, "ratio": ratio, **rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
