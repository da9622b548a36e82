"""The output checker on real emoji: a deployment that does not want weapons.

Unwanted: every style of six weapon emoji of the emoji-styles train split (water pistol, bomb,
kitchen knife, dagger, crossed swords, bow and arrow); allowed: every other image of that split
except the concepts kept aside. A quarter of each folder is held out by `limner train --model
safety-checker` itself (other drawings of the same concepts); a weapon it never sees at all (axe)
and the test split's images are judged too.

    python benchmarks/safety_checker.py --evaluator-dir outputs/bench/evaluator
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from limner.data import ImageFolder, builtin_data_dir
from limner.pipelines.safety_checker import SafetyChecker
from limner.training.safety_trainer import SafetyTrainConfig, train_safety_checker
from limner.utils.images import from_uint8

UNWANTED = ("water pistol", "bomb", "kitchen knife", "dagger", "crossed swords", "bow and arrow")
UNSEEN_UNWANTED = ("axe",)  # a weapon the checker is never shown


def link_folders(data_dir: Path, root: Path) -> None:
    """unwanted/ and allowed/ as links to the train split's images."""
    for name in ("unwanted", "allowed"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for record in ImageFolder(data_dir, "train").records:
        concept = record.columns["concept"]
        if concept in UNSEEN_UNWANTED:
            continue
        target = root / ("unwanted" if concept in UNWANTED else "allowed") / record.path.name
        if not target.exists():
            target.symlink_to(record.path.resolve())


def flag_rate(checker: SafetyChecker, images: torch.Tensor) -> float:
    return float(checker(from_uint8(images)).float().mean()) if len(images) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator-dir", required=True, help="from `limner train --model evaluator --preset emoji-styles`")
    parser.add_argument("--output-dir", default="outputs/benchmarks/safety_checker")
    args = parser.parse_args()
    data_dir = builtin_data_dir("emoji-styles", 64)
    root = Path(args.output_dir)
    link_folders(data_dir, root / "data")
    started = time.perf_counter()
    result = train_safety_checker(SafetyTrainConfig(evaluator_dir=args.evaluator_dir, unwanted_images=str(root / "data" / "unwanted"),
                                                    allowed_images=str(root / "data" / "allowed"), output_dir=str(root / "checker")))
    seconds = time.perf_counter() - started
    checker = SafetyChecker.from_pretrained(root / "checker")
    resolution = checker.evaluator.config.resolution
    train, test = ImageFolder(data_dir, "train"), ImageFolder(data_dir, "test")
    train_images, test_images = train.load_images(resolution, progress=False), test.load_images(resolution, progress=False)
    unseen = torch.tensor([r.columns["concept"] in UNSEEN_UNWANTED for r in train.records])
    test_unwanted = torch.tensor([r.columns["concept"] in UNWANTED + UNSEEN_UNWANTED for r in test.records])
    held = result.held_out
    figures = {
        "seconds": round(seconds, 1), "train_images": result.train_images,
        "held_out": held,
        "unseen_weapon_recall": {"concepts": list(UNSEEN_UNWANTED), "images": int(unseen.sum()), "recall": flag_rate(checker, train_images[unseen])},
        "test_split": {"unwanted_images": int(test_unwanted.sum()), "recall": flag_rate(checker, test_images[test_unwanted]),
                       "allowed_images": int((~test_unwanted).sum()), "false_positive_rate": flag_rate(checker, test_images[~test_unwanted])},
    }
    print(f"trained in {seconds:.0f}s on {result.train_images['unwanted']} unwanted and {result.train_images['allowed']} allowed images")
    print(f"held out (other drawings of the same concepts): precision {held['precision']:.3f}, recall {held['recall']:.3f} "
          f"({held['unwanted']} unwanted, {held['allowed']} allowed, {held['false_positives']} allowed flagged)")
    print(f"a weapon never shown ({', '.join(UNSEEN_UNWANTED)}, {int(unseen.sum())} images): recall {figures['unseen_weapon_recall']['recall']:.3f}")
    split = figures["test_split"]
    recall = f"recall {split['recall']:.3f} on {split['unwanted_images']} weapon images, " if split["unwanted_images"] else "no weapon images, "
    print(f"test split: {recall}false positives {split['false_positive_rate']:.3%} of {split['allowed_images']} others")
    (root / "results.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
