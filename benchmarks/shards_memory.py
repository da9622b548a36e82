"""Peak memory of training when the data grows tenfold: tar shards against an imagefolder.

Builds the shapes dataset at 64 px with N and 10N training images, packs each into
tar shards (`limner data pack`), and runs the same short training (bag-of-words text,
so the language model's size does not hide the data's) four times, each in a fresh
process: {N, 10N} x {imagefolder in memory, shards streamed}. Prints each run's peak
resident memory (ru_maxrss) and wall time. With shards the peak should not move;
with the imagefolder it grows with the data.

    python benchmarks/shards_memory.py                 # N = 4,000 (about 4 minutes)
    python benchmarks/shards_memory.py --images 2000 --steps 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = """
import resource, sys
from limner.cli import main
code = main(sys.argv[1:])
print("PEAK_RSS_MIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(code)
"""


def limner(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "limner.cli", *args], check=True, capture_output=True)


def train_peak(data: Path, out: Path, steps: int) -> tuple[float, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", RUN, "train", "--preset", "shapes", "--train-data-dir", str(data), "--output-dir", str(out),
         "--resolution", "64", "--text-encoder", "bag-of-words", "--max-train-steps", str(steps), "--max-train-minutes", "0",
         "--validation-steps", "100000", "--checkpointing-steps", "100000", "--no-progress"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    peak = next(float(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_MIB"))
    return peak, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000, help="N: the smaller dataset's training images")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", default="outputs/benchmarks/shards_memory.json")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for size in (args.images, 10 * args.images):
            folder, shards = scratch / f"shapes-{size}", scratch / f"shards-{size}"
            limner("data", "shapes", "--out", str(folder), "--resolution", "64", "--train-size", str(size), "--test-size", "100")
            limner("data", "pack", str(folder), "--out", str(shards))
            on_disk = sum(p.stat().st_size for p in shards.glob("train-*.tar")) / 2**20
            for kind, data in (("imagefolder", folder), ("shards", shards)):
                peak, seconds = train_peak(data, scratch / f"run-{kind}-{size}", args.steps)
                rows.append({"images": size, "data": kind, "peak_rss_mib": round(peak, 1), "seconds": round(seconds, 1),
                             "shards_mib_on_disk": round(on_disk, 1)})
                print(f"{size:>6} images ({on_disk:6.1f} MiB of shards), {kind:<11}: peak RSS {peak:7.1f} MiB, {seconds:5.1f} s "
                      f"for {args.steps} steps")
    for kind in ("imagefolder", "shards"):
        small, large = (r["peak_rss_mib"] for r in rows if r["data"] == kind)
        print(f"{kind:<11}: peak RSS grew {large - small:+.1f} MiB ({large / small - 1:+.1%}) when the data grew tenfold")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
