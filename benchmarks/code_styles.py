"""Which style does each noise code draw? For 60 style-free test concepts of emoji-styles,
every image drawn from one code (2 images each), read by the evaluator's style head.

Prints one row per code: how many of its images the head reads as each style; and, for a
model whose codes were tied to the style column (noise_code_column), the share read as the
code's own style (chance: 1 in 6).

    python benchmarks/code_styles.py --model-dir outputs/benchmarks/emoji_styles_tied_hour/model \\
        --evaluator-dir outputs/bench/evaluator
"""

from __future__ import annotations

import argparse
import logging

import torch

from corpus_cuts import read_split_rows  # benchmarks/ is on the path when run as a script

from limner.data.builders import builtin_data_dir
from limner.pipelines import DualEncoderPipeline, TextToImagePipeline


@torch.no_grad()
def code_style_counts(pipe: TextToImagePipeline, evaluator: DualEncoderPipeline, concepts: list[str], *, images: int,
                      seed: int) -> torch.Tensor:
    """(codes, styles): how many images of each code the style head reads as each style."""
    styles = evaluator.model.config.styles
    counts = torch.zeros(pipe.generator.config.noise_codes, len(styles), dtype=torch.long)
    for code in range(counts.shape[0]):
        drawn = pipe.generate_tensors(concepts, num_images_per_prompt=images, seed=seed, code=code)
        read = evaluator.model.style_logits(evaluator.model.pooled_features(drawn)).argmax(1)
        counts[code] = torch.bincount(read, minlength=len(styles))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--evaluator-dir", required=True)
    parser.add_argument("--concepts", type=int, default=60)
    parser.add_argument("--images", type=int, default=2, help="images per concept and code")
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    logging.getLogger("limner").setLevel(logging.ERROR)
    pipe = TextToImagePipeline.from_pretrained(args.model_dir)
    if not pipe.generator.config.noise_codes:
        raise SystemExit(f"{args.model_dir} has no noise codes")
    evaluator = DualEncoderPipeline.from_pretrained(args.evaluator_dir, role="evaluator")
    rows = read_split_rows(builtin_data_dir("emoji-styles", args.resolution), "test")
    concepts = sorted({row["concept"] for row in rows if row.get("split_kind") == "unseen_combination"})
    order = torch.randperm(len(concepts), generator=torch.Generator().manual_seed(0))[:args.concepts]
    chosen = [concepts[i] for i in order.tolist()]
    counts = code_style_counts(pipe, evaluator, chosen, images=args.images, seed=1)
    styles = evaluator.model.config.styles
    names = pipe.code_names or tuple(str(code) for code in range(counts.shape[0]))
    print(f"{len(chosen)} style-free test concepts x {args.images} images per code; columns: the style head's reading")
    print(f"{'code':>22}  " + "  ".join(f"{style[:12]:>12}" for style in styles))
    for name, row in zip(names, counts.tolist()):
        print(f"{name:>22}  " + "  ".join(f"{count:>12}" for count in row))
    if pipe.code_names:
        own = sum(counts[code, styles.index(name)] for code, name in enumerate(names) if name in styles)
        print(f"read as the code's own style: {float(own) / float(counts.sum()):.0%} (chance {1 / len(styles):.0%})")


if __name__ == "__main__":
    main()
