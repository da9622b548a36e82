"""Captioner benchmark: train `limner train --model captioner` under a wall-clock budget, then score.

shapes: greedy and beam-3 captions of the test split's real images, which show
only the 36 held-out compositions: exact-match accuracy and per-attribute accuracy
(a caption that names no valid composition gets every attribute wrong).
emoji: BLEU-1..4 and CIDEr-D of greedy captions on the test split, whose names
never appear in training.

    python benchmarks/captioner.py                          # shapes and emoji, 5 minutes each
    python benchmarks/captioner.py --datasets shapes --minutes 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from limner.data import ImageFolder, shapes
from limner.metrics.captions import cider_d, corpus_bleu
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.training import build_train_config
from limner.training.captioner_trainer import train_captioner
from limner.training.data import resolve_data_dir
from limner.utils.images import from_uint8, to_pil


def attributes_of(caption: str) -> dict[str, str | None]:
    try:
        return shapes.parse_caption(caption).attributes()
    except ValueError:
        return {name: None for name in shapes.ATTRIBUTES}


def score_shapes(predicted: list[str], truth: list[str]) -> dict[str, float]:
    result = {"exact": sum(p == t for p, t in zip(predicted, truth)) / len(truth)}
    for name in shapes.ATTRIBUTES:
        result[name] = sum(attributes_of(p)[name] == attributes_of(t)[name] for p, t in zip(predicted, truth)) / len(truth)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["shapes", "emoji"])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--output-dir", default="outputs/benchmarks/captioner")
    parser.add_argument("--override", default="{}", help="JSON of config values over the preset (GANTrainConfig, VAETrainConfig, ... by kind)")
    args = parser.parse_args()

    results = {}
    for dataset in args.datasets:
        out = Path(args.output_dir) / dataset
        config = build_train_config(dataset, {
            "model": "captioner", "output_dir": str(out), "max_train_minutes": args.minutes, "max_train_steps": 1_000_000,
            "train_batch_size": 64, **json.loads(args.override),
        })
        result = train_captioner(config)
        pipe = ImageToTextPipeline.from_pretrained(out)
        folder = ImageFolder(resolve_data_dir(config), "test")
        images = to_pil(from_uint8(folder.load_images(config.resolution, progress=False)))
        references = [list(r.captions) for r in folder.records]
        started = time.perf_counter()
        greedy = [p["generated_text"] for p in pipe(images)]
        seconds = time.perf_counter() - started
        row = {"steps": result.steps, "train_seconds": round(result.train_seconds), "test_images": len(images),
               "captions_per_second": round(len(images) / seconds, 1)}
        if dataset == "shapes":
            row["greedy"] = score_shapes(greedy, [refs[0] for refs in references])
            row["beam3"] = score_shapes([p["generated_text"] for p in pipe(images, beams=3)], [refs[0] for refs in references])
        else:
            row["greedy"] = {**corpus_bleu(greedy, references), "cider_d": cider_d(greedy, references)["cider_d"]}
            row["examples"] = [{"truth": refs[0], "caption": g} for refs, g in list(zip(references, greedy))[:12]]
        results[dataset] = row
        print(f"\n== {dataset}: {result.steps} steps in {result.train_seconds:.0f}s; {len(images)} test images")
        for mode in ("greedy", "beam3"):
            if mode in row:
                print(f"  {mode:<7}" + "  ".join(f"{k} {v:.3f}" for k, v in row[mode].items()))
        for example in row.get("examples", [])[:6]:
            print(f"    {example['truth']!r:<40} -> {example['caption']!r}")
        (out / "benchmark.json").write_text(json.dumps(row, indent=2) + "\n")
    Path(args.output_dir, "summary.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
