"""How trustworthy is the shapes judge? Its accuracy on the dataset's own images, noise and blanks.

    python benchmarks/shapes_judge.py
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from limner.data import shapes


def main(count: int = 1800) -> None:
    for resolution in (32, 64, 128):
        pairs = shapes.generate_split(shapes.all_compositions(), count, resolution, seed=11)
        verdicts = [shapes.judge(image, composition) for image, composition in pairs]
        per = {name: np.mean([v[name] for v in verdicts]) for name in ("color", "shape", "size", "position", "all")}
        print(f"dataset images {resolution:>3}px  all-four {per['all']:.4f}  "
              + "  ".join(f"{k} {v:.4f}" for k, v in per.items() if k != "all") + f"  ({count} images)")
    rng = np.random.default_rng(0)
    target = shapes.all_compositions()[0]
    noise = [shapes.judge(Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), target)["all"] for _ in range(500)]
    blank = shapes.judge(Image.new("RGB", (32, 32)), target)["all"]
    print(f"noise images passed: {sum(noise)}/500   blank image passed: {int(blank)}/1")


if __name__ == "__main__":
    main()
