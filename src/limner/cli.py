"""The `limner` command: a thin layer that turns domain errors into one-line messages.

    limner data shapes --out DIR --resolution 32
    limner data emoji --out DIR --resolution 64
    limner data emoji-styles --out DIR --resolution 64
    limner train --preset shapes [--train-data-dir DIR] [--max-train-steps N] ...
    limner generate MODEL_DIR "a small red circle in the top left" -n 8 -o grid.png
    limner caption MODEL_DIR a.png b.png [--beams 3]
    limner serve [NAME=]MODEL_DIR ... [--host H --port P --api-keys FILE]
    limner export MODEL_DIR --format onnx [--quantize dynamic|static]
    limner prune MODEL_DIR --amount 0.3 --output-dir DIR [--distill-minutes 5]
    limner keys create|revoke|list --file FILE [NAME]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from limner.config import read_config_file
from limner.errors import DataError, LimnerError

BACKEND_CHOICES = ("torch", "compile", "onnx", "onnx-int8")  # TextToImagePipeline's BACKENDS, without importing torch here

EXIT_USER_ERROR = 2

# (flag, TrainConfig field, type, help); None as a default means "leave the preset's value".
_TRAIN_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--train-data-dir", "train_data_dir", str, "imagefolder path, or a builtin dataset: shapes, emoji, emoji-styles"),
    ("--resolution", "resolution", int, "image side: 32, 64, 128 or 256"),
    ("--text-encoder", "text_encoder", str, "Hugging Face path or hub id, or bag-of-words"),
    ("--text-pooling", "text_pooling", str, "mean, last, eos, cls (default: the family's own) or anchored (word embeddings mapped onto the training words)"),
    ("--text-hidden-layer", "text_hidden_layer", int, "which hidden state to pool: 0 embeddings, -1 last (default)"),
    ("--text-anchor-temperature", "text_anchor_temperature", float, "anchored pooling: lower maps a new word harder onto its nearest known word"),
    ("--text-anchor-margin", "text_anchor_margin", float, "anchored pooling: a new word weighs fully once its two nearest known words are this far apart"),
    ("--contrastive-weight", "contrastive_weight", float, "weight of the image-text contrastive loss (0: off)"),
    ("--train-batch-size", "train_batch_size", int, "images per step"),
    ("--max-train-steps", "max_train_steps", int, "stop after this many steps"),
    ("--max-train-minutes", "max_train_minutes", float, "stop after this much training time"),
    ("--learning-rate", "learning_rate", float, "generator learning rate"),
    ("--discriminator-learning-rate", "discriminator_learning_rate", float, "discriminator learning rate"),
    ("--checkpointing-steps", "checkpointing_steps", int, "save a resumable checkpoint every N steps"),
    ("--checkpoints-total-limit", "checkpoints_total_limit", int, "keep only the newest N checkpoints"),
    ("--resume-from-checkpoint", "resume_from_checkpoint", str, "a checkpoint folder, or latest"),
    ("--output-dir", "output_dir", str, "where the model, grids, logs and checkpoints go"),
    ("--seed", "seed", int, "random seed"),
    ("--validation-steps", "validation_steps", int, "write a validation grid every N steps"),
    ("--logging-steps", "logging_steps", int, "log losses every N steps"),
    ("--ema-decay", "ema_decay", float, "decay of the generator's moving average"),
    ("--evaluation-steps", "evaluation_steps", int, "every N steps log KID, FID and R-precision and keep the best model (needs --evaluator-dir)"),
    ("--evaluator-dir", "evaluator_dir", str, "a folder written by `limner train --model evaluator`"),
    ("--best-metric", "best_metric", str, "kid_mean (default), fid or r_precision: which figure picks outputs/.../best"),
    ("--alignment-weight", "alignment_weight", float, "weight of a frozen aligner's 1 - cosine on generated images (needs --aligner-dir)"),
    ("--aligner-dir", "aligner_dir", str, "a folder written by `limner train --model aligner`"),
    ("--cycle-weight", "cycle_weight", float, "weight of a frozen captioner's cross-entropy for the true caption (needs --captioner-dir)"),
    ("--captioner-dir", "captioner_dir", str, "a folder written by `limner train --model captioner`"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="limner", description="Words into pictures: text-to-image GANs on a pretrained language model.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_data(commands)
    _add_train(commands)
    _add_generate(commands)
    _add_evaluate(commands)
    _add_serve(commands)
    _add_roundtrip(commands)
    _add_rank(commands)
    _add_export(commands)
    _add_prune(commands)
    _add_keys(commands)
    return parser


def _add_data(commands) -> None:
    """`limner data`: builtin datasets and tar shards."""
    data = commands.add_parser("data", help="build a builtin dataset as an imagefolder").add_subparsers(dest="dataset", required=True)
    shapes = data.add_parser("shapes", help="the compositional shapes dataset")
    shapes.add_argument("--out", required=True)
    shapes.add_argument("--resolution", type=int, default=32)
    shapes.add_argument("--train-size", type=int, default=20_000)
    shapes.add_argument("--test-size", type=int, default=2_000)
    shapes.add_argument("--seed", type=int, default=0)
    emoji = data.add_parser("emoji", help="Noto Color Emoji glyphs captioned by their names")
    emoji.add_argument("--out", required=True)
    emoji.add_argument("--resolution", type=int, default=64)
    emoji.add_argument("--font", default=None, help="path to NotoColorEmoji.ttf")
    styles = data.add_parser("emoji-styles", help="open emoji sets (Google, Twitter, OpenMoji, Fluent x3) joined by concept, six styles")
    styles.add_argument("--out", required=True)
    styles.add_argument("--resolution", type=int, default=64, help="32, 64 or 128")
    styles.add_argument("--seed", type=int, default=0, help="the seed of the held-out concepts and combinations")
    styles.add_argument("--skin-tones", action="store_true", help="also the skin-tone variants (base emoji only by default)")
    styles.add_argument("--tarball-dir", default=None,
                        help="folder of the npm tarballs (fetched there with `npm pack` when absent; default $LIMNER_DATA/npm)")
    styles.add_argument("--skip-invalid-images", action="store_true", help="skip and count images that fail to draw instead of stopping")
    pack = data.add_parser("pack", help="write an imagefolder as tar shards that training streams (datasets past memory)")
    pack.add_argument("folder", help="an imagefolder dataset")
    pack.add_argument("--out", required=True, help="an empty folder for SPLIT-000000.tar, ...")
    pack.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    pack.add_argument("--splits", nargs="+", default=["train", "test"], help="splits to pack (missing ones are skipped)")
    pack.add_argument("--skip-invalid-images", action="store_true", help="skip and count bad entries instead of stopping")


def _add_train(commands) -> None:
    """`limner train`: every TrainConfig flag of the table above."""
    train = commands.add_parser("train", help="train a text-to-image GAN")
    train.add_argument("--preset", default="shapes", help="shapes, emoji, emoji-styles or emoji-styles-32 (flags override it)")
    train.add_argument("--model", default="gan", choices=["gan", "vae", "evaluator", "captioner", "aligner"],
                       help="gan (default); vae: a conditional VAE with a learnt text prior; evaluator: the independent image-text scorer `limner evaluate` uses; captioner: image to text; "
                            "aligner: an image-text matcher for `limner rank` and for training generators against")
    train.add_argument("--config", default=None, help="a JSON file of TrainConfig values, applied over the preset")
    for flag, _, kind, text in _TRAIN_FLAGS:
        train.add_argument(flag, type=kind, default=None, help=text)
    train.add_argument("--validation-prompts", nargs="+", default=None, help="captions for the validation grid")
    train.add_argument("--skip-invalid-images", action="store_true", help="skip and count bad images instead of stopping")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_generate(commands) -> None:
    """`limner generate` and `limner caption`."""
    generate = commands.add_parser("generate", help="generate images from a trained model")
    generate.add_argument("model_dir")
    generate.add_argument("prompts", nargs="+")
    generate.add_argument("-n", "--num-images", type=int, default=4, help="images per prompt")
    generate.add_argument("-o", "--output", default="grid.png")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--truncation", type=float, default=None, help="noise truncation (default: the model's)")
    generate.add_argument("--backend", choices=BACKEND_CHOICES, default="torch", help="how the generator runs: torch (eager), compile (torch.compile), onnx or onnx-int8 (after `limner export`, with --quantize for int8)")
    caption = commands.add_parser("caption", help="describe images in words with a trained captioner")
    caption.add_argument("model_dir")
    caption.add_argument("images", nargs="+")
    caption.add_argument("--beams", type=int, default=None, help="beam width (default: the model's; 1 is greedy)")
    caption.add_argument("--max-length", type=int, default=None, help="at most this many tokens")


def _add_evaluate(commands) -> None:
    """`limner evaluate`."""
    evaluate = commands.add_parser("evaluate", help="score a model: metrics.json and report.html")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("--data", required=True, help="the imagefolder the model was trained on, or a builtin dataset: shapes, emoji")
    evaluate.add_argument("--evaluator", required=True, help="a folder written by `limner train --model evaluator`")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--output-dir", default=None, help="default: MODEL_DIR/evaluation")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--max-images", type=int, default=2000, help="score at most this many real images of the split")
    evaluate.add_argument("--fid-features", default="evaluator", choices=["evaluator", "inception"],
                          help="FID/KID features: the evaluator (default) or Inception-v3 (needs torch-fidelity and its weights)")
    evaluate.add_argument("--no-progress", action="store_true")


def _add_serve(commands) -> None:
    """`limner serve`."""
    serve = commands.add_parser("serve", help="serve models over the OpenAI Images API, with a web page at /")
    serve.add_argument("models", nargs="+", metavar="[NAME=]MODEL_DIR", help="model folders; the name defaults to the folder's")
    serve.add_argument("--host", default="127.0.0.1", help="listen address; anything beyond loopback needs --api-keys")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-keys", default=None, help="key file from `limner keys create`")
    serve.add_argument("--config", default=None, help="a JSON file of ServeConfig values (limits, batching, blocklist)")
    serve.add_argument("--no-batching", action="store_true", help="one request per generator call")
    serve.add_argument("--max-batch-size", type=int, default=None, help="images per generator call")
    serve.add_argument("--backend", choices=BACKEND_CHOICES, default="torch", help="how the generator runs: torch (eager), compile (torch.compile), onnx or onnx-int8 (after `limner export`, with --quantize for int8)")


def _add_roundtrip(commands) -> None:
    """`limner roundtrip`."""
    roundtrip = commands.add_parser("roundtrip", help="text to image to text: generate, then caption what was drawn")
    roundtrip.add_argument("generator_dir")
    roundtrip.add_argument("captioner_dir")
    roundtrip.add_argument("prompts", nargs="+")
    roundtrip.add_argument("-n", "--num-images", type=int, default=4, help="images per prompt")
    roundtrip.add_argument("--seed", type=int, default=0)
    roundtrip.add_argument("-o", "--output", default="roundtrip.png", help="a grid of the images, each row labelled with its prompt")


def _add_rank(commands) -> None:
    """`limner rank`."""
    rank = commands.add_parser("rank", help="rank captions for an image, or images for a caption, with a trained aligner")
    rank.add_argument("model_dir")
    rank.add_argument("--image", default=None, help="an image whose --captions to rank")
    rank.add_argument("--captions", nargs="+", default=None)
    rank.add_argument("--caption", default=None, help="a caption whose --images to rank")
    rank.add_argument("--images", nargs="+", default=None)


def _add_export(commands) -> None:
    """`limner export`."""
    export = commands.add_parser("export", help="export a text-to-image model for fast inference (ONNX)")
    export.add_argument("model_dir")
    export.add_argument("--format", choices=["onnx"], default="onnx")
    export.add_argument("--quantize", choices=["dynamic", "static"], default=None,
                        help="also write the generator in int8 (onnxruntime): dynamic, or static calibrated on the model's own captions")
    export.add_argument("--calibration-captions", default=None,
                        help="static: a text file of captions, one per line (default: the training data's captions)")


def _add_prune(commands) -> None:
    """`limner prune`."""
    prune = commands.add_parser("prune", help="remove a share of the generator's channels, then distil it from the original")
    prune.add_argument("model_dir")
    prune.add_argument("--amount", type=float, required=True, help="share of each stage's channels to remove, e.g. 0.3")
    prune.add_argument("--output-dir", required=True, help="where the pruned model goes (not the original's folder)")
    prune.add_argument("--distill-minutes", type=float, default=5.0, help="wall-clock budget of the distillation")
    prune.add_argument("--distill-steps", type=int, default=100_000)
    prune.add_argument("--captions", default=None, help="a text file of captions, one per line (default: the training data's)")
    prune.add_argument("--no-progress", action="store_true")


def _add_keys(commands) -> None:
    """`limner keys`."""
    keys = commands.add_parser("keys", help="create, revoke or list API keys for `limner serve`")
    keys.add_argument("action", choices=["create", "revoke", "list"])
    keys.add_argument("name", nargs="?", help="the key's name (create, revoke)")
    keys.add_argument("--file", required=True, help="the key file (created if absent)")
    keys.add_argument("--rate-limit-per-minute", type=float, default=None, help="create: this key's own limit (default: the server's)")
    keys.add_argument("--rate-limit-burst", type=int, default=None, help="create: this key's own burst (default: the server's)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except LimnerError as err:
        if args.verbose:
            raise
        print(f"limner: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


def _run_data(args: argparse.Namespace) -> int:
    from limner.data import build_emoji, build_shapes

    if args.dataset == "pack":
        return _pack(args)
    if args.dataset == "emoji-styles":
        return _emoji_styles(args)
    if args.dataset == "shapes":
        info = build_shapes(args.out, resolution=args.resolution, train_size=args.train_size, test_size=args.test_size, seed=args.seed)
    else:
        info = build_emoji(args.out, resolution=args.resolution, font_path=args.font)
    print(f"wrote {args.out}: " + ", ".join(f"{n} {split}" for split, n in info["splits"].items()))
    return 0


def _emoji_styles(args: argparse.Namespace) -> int:
    from limner.data.emoji_sources import cache_folder, fetch_tarballs
    from limner.data.emoji_styles import build_emoji_styles

    tarballs = fetch_tarballs(Path(args.tarball_dir) if args.tarball_dir else cache_folder())
    info = build_emoji_styles(args.out, resolution=args.resolution, seed=args.seed, skin_tones=args.skin_tones,
                              skip_invalid=args.skip_invalid_images, tarballs=tarballs)
    print(f"wrote {args.out}: {info['concepts']} concepts ({info['concepts_in_all_styles']} in all six styles), "
          + ", ".join(f"{n} {split}" for split, n in info["splits"].items())
          + f"; test: {info['split_kinds']['unseen_combination']} unseen combinations, {info['split_kinds']['unseen_concept']} images of unseen concepts"
          + (f"; skipped {len(info['skipped'])}" if info["skipped"] else ""))
    return 0


def _pack(args: argparse.Namespace) -> int:
    from limner.data import ImageFolder
    from limner.data.shards import pack_shards

    written = {}
    for split in args.splits:
        try:
            ImageFolder(args.folder, split, skip_invalid=True)
        except DataError:
            if split == "train":
                raise
            continue  # an optional split the folder does not have
        paths = pack_shards(args.folder, args.out, split=split, shard_size=args.shard_size, skip_invalid=args.skip_invalid_images)
        written[split] = len(paths)
    print(f"wrote {args.out}: " + ", ".join(f"{n} {split} shard(s)" for split, n in written.items()))
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from limner.training import build_train_config, train

    overrides = {field: getattr(args, flag[2:].replace("-", "_")) for flag, field, _, _ in _TRAIN_FLAGS}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.validation_prompts:
        overrides["validation_prompts"] = args.validation_prompts
    if args.skip_invalid_images:
        overrides["skip_invalid_images"] = True
    if args.config:
        overrides = {**read_config_file(args.config), **overrides}
    if args.model == "evaluator":
        return _train_evaluator(args, overrides)
    if args.model == "captioner":
        return _train_captioner(args, overrides)
    if args.model == "aligner":
        return _train_aligner(args, overrides)
    if args.model == "vae":
        return _train_vae(args, overrides)
    config = build_train_config(args.preset, overrides)
    result = train(config, progress=not args.no_progress)
    print(f"trained {result.steps} steps in {result.train_seconds:.0f}s ({result.images_per_second:.0f} img/s)")
    if result.scores:
        print("held-out judge accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items() if k != "images"))
    print(f"model: {result.output_dir}  samples: {result.output_dir / 'samples.png'}")
    return 130 if result.interrupted else 0


def _train_evaluator(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from limner.training import build_train_config
    from limner.training.evaluator_trainer import train_evaluator

    # an evaluator trains in minutes and must not land on the generator's folder
    defaults = {"max_train_minutes": 3, "max_train_steps": 100_000, "output_dir": f"outputs/{args.preset}-evaluator", "seed": 1234,
                "train_batch_size": 64}
    config = build_train_config(args.preset, {**defaults, **overrides, "model": "evaluator"})
    result = train_evaluator(config, progress=not args.no_progress)
    recall = "n/a (no test split)" if result.test_recall_at_1 is None else f"{result.test_recall_at_1:.3f}"
    print(f"trained the evaluator {result.steps} steps in {result.train_seconds:.0f}s; final loss {result.final_loss:.3f}; "
          f"test recall@1 (image to caption) {recall}")
    info = json.loads((result.output_dir / "evaluator_index.json").read_text())
    if info.get("test_style_accuracy") is not None:
        print(f"style head: accuracy {info['test_style_accuracy']:.3f} on the test split's real images")
    print(f"evaluator: {result.output_dir}")
    return 0


def _train_captioner(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from limner.training import build_train_config
    from limner.training.captioner_trainer import train_captioner

    defaults = {"max_train_minutes": 5, "max_train_steps": 100_000, "output_dir": f"outputs/{args.preset}-captioner", "train_batch_size": 64}
    config = build_train_config(args.preset, {**defaults, **overrides, "model": "captioner"})
    result = train_captioner(config, progress=not args.no_progress)
    exact = "n/a (no test split)" if result.test_exact_match is None else f"{result.test_exact_match:.3f}"
    print(f"trained the captioner {result.steps} steps in {result.train_seconds:.0f}s; final loss {result.final_loss:.3f}; "
          f"test exact match (greedy) {exact}")
    print(f"captioner: {result.output_dir}")
    return 0


def _train_vae(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from limner.training import build_train_config
    from limner.training.vae_trainer import train_vae

    defaults = {"output_dir": f"outputs/{args.preset}-vae"}
    config = build_train_config(args.preset, {**defaults, **overrides, "model": "vae"})
    result = train_vae(config, progress=not args.no_progress)
    print(f"trained the VAE {result.steps} steps in {result.train_seconds:.0f}s; last losses "
          + ", ".join(f"{k} {v:.3f}" for k, v in result.last_losses.items()))
    if result.held_out:
        print("held-out judge accuracy (sampling the prior): " + ", ".join(f"{k} {v:.3f}" for k, v in result.held_out.items() if k != "images"))
    if result.reconstruction:
        print(f"test reconstructions: PSNR {result.reconstruction['psnr']:.2f} dB, SSIM {result.reconstruction['ssim']:.3f}")
    print(f"model: {result.output_dir}  samples: {result.output_dir / 'samples.png'}")
    return 0


def _train_aligner(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from limner.training import build_train_config
    from limner.training.aligner_trainer import train_aligner

    defaults = {"max_train_minutes": 3, "max_train_steps": 100_000, "output_dir": f"outputs/{args.preset}-aligner", "seed": 4321,
                "train_batch_size": 64}
    config = build_train_config(args.preset, {**defaults, **overrides, "model": "aligner"})
    result = train_aligner(config, progress=not args.no_progress)
    test = result.test_scores
    recall = "n/a (no test split)" if test is None else (f"image to caption R@1 {test['image_to_caption_r1']:.3f} R@5 {test['image_to_caption_r5']:.3f}, "
                                                         f"caption to image R@1 {test['caption_to_image_r1']:.3f} R@5 {test['caption_to_image_r5']:.3f}")
    print(f"trained the aligner {result.steps} steps in {result.train_seconds:.0f}s; final loss {result.final_loss:.3f}; test {recall}")
    print(f"aligner: {result.output_dir}")
    return 0


def _run_roundtrip(args: argparse.Namespace) -> int:
    from limner.pipelines import TextToImagePipeline, round_trip
    from limner.pipelines.image_to_text import ImageToTextPipeline
    from limner.pipelines.round_trip import exact_rate
    from limner.utils.images import make_grid, save_png

    if not 1 <= args.num_images <= 64:
        print(f"limner: error: -n must be between 1 and 64, got {args.num_images}", file=sys.stderr)
        return EXIT_USER_ERROR
    trips = round_trip(TextToImagePipeline.from_pretrained(args.generator_dir), ImageToTextPipeline.from_pretrained(args.captioner_dir),
                       args.prompts, num_images_per_prompt=args.num_images, seed=args.seed)
    for trip in trips:
        print(f"{'=' if trip['exact'] else '~'} {trip['prompt']}  ->  {trip['caption']}")
    grid = make_grid([t["image"] for t in trips], args.num_images, row_labels=args.prompts, scale=max(1, 96 // trips[0]["image"].width))
    save_png(grid, args.output, {"prompts": json.dumps(args.prompts), "captions": json.dumps([t["caption"] for t in trips]), "seed": str(args.seed)})
    print(f"{exact_rate(trips):.0%} came back exactly; images: {args.output}")
    return 0


def _run_rank(args: argparse.Namespace) -> int:
    from limner.pipelines.alignment import AlignmentPipeline

    if bool(args.image) == bool(args.caption):
        print("limner: error: rank needs either --image FILE with --captions, or --caption TEXT with --images", file=sys.stderr)
        return EXIT_USER_ERROR
    pipe = AlignmentPipeline.from_pretrained(args.model_dir)
    if args.image:
        if not args.captions:
            print("limner: error: --image needs --captions to rank", file=sys.stderr)
            return EXIT_USER_ERROR
        for caption, score in pipe.rank_captions(_open_image(args.image), args.captions):
            print(f"{score:+.4f}\t{caption}")
    else:
        if not args.images:
            print("limner: error: --caption needs --images to rank", file=sys.stderr)
            return EXIT_USER_ERROR
        images = [_open_image(path) for path in args.images]
        for index, score in pipe.rank_images(args.caption, images):
            print(f"{score:+.4f}\t{args.images[index]}")
    return 0


def _open_image(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from err


def _run_caption(args: argparse.Namespace) -> int:
    from PIL import Image, UnidentifiedImageError

    from limner.pipelines.image_to_text import ImageToTextPipeline

    pipe = ImageToTextPipeline.from_pretrained(args.model_dir)
    images = []
    for path in args.images:
        try:
            with Image.open(path) as image:
                image.load()
                images.append(image.copy())
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"{path}: not a readable image ({err})") from err
    for path, result in zip(args.images, pipe(images, beams=args.beams, max_length=args.max_length)):
        print(f"{path}\t{result['generated_text']}")
    return 0


def _run_generate(args: argparse.Namespace) -> int:
    from limner.pipelines import TextToImagePipeline
    from limner.utils.images import make_grid, save_png

    if not 1 <= args.num_images <= 256:
        print(f"limner: error: -n must be between 1 and 256, got {args.num_images}", file=sys.stderr)
        return EXIT_USER_ERROR
    pipe = TextToImagePipeline.from_pretrained(args.model_dir, backend=args.backend)
    images = pipe(args.prompts, num_images_per_prompt=args.num_images, seed=args.seed, truncation=args.truncation)
    scale = max(1, 96 // images[0].width)
    grid = make_grid(images, args.num_images, row_labels=args.prompts if len(args.prompts) > 1 else None, scale=scale)
    metadata = {"prompt": " | ".join(args.prompts), "seed": args.seed, "model": str(Path(args.model_dir).resolve())}
    save_png(grid, args.output, metadata)
    print(f"wrote {args.output} ({len(images)} images)")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from limner.evaluation import evaluate

    report = evaluate(args.model_dir, args.data, args.evaluator, split=args.split, output_dir=args.output_dir,
                      seed=args.seed, max_images=args.max_images, fid_features=args.fid_features, progress=not args.no_progress)
    out = Path(args.output_dir) if args.output_dir else Path(args.model_dir) / "evaluation"
    generated, floor = report["generated"], report["real_floor"]
    print(f"{report['n_images']} images of split {report['split']}; feature network: limner evaluator ({report['feature_network']['path']})")
    print(f"  {'metric':<24}{'generated':>12}{'real floor':>12}")
    print(f"  {'R-precision':<24}{generated['r_precision']['mean']:>12.4f}{floor['r_precision']['mean']:>12.4f}")
    for key in ("fid", "kid_mean", "psnr", "ssim", "alignment", "image_to_text_r@1", "diversity", "nearest_train_distance"):
        floor_value = floor.get(key)
        print(f"  {key:<24}{generated[key]:>12.4f}" + (f"{floor_value:>12.4f}" if floor_value is not None else f"{'n/a':>12}"))
    if "shapes_judge" in report:
        print("  shapes judge: " + ", ".join(f"{k} {v:.3f}" for k, v in report["shapes_judge"]["accuracy"].items()))
    if "styles" in report:
        _print_styles(report["styles"])
    print(f"wrote {out / 'metrics.json'} and {out / 'report.html'}")
    return 0


def _print_styles(styles: dict) -> None:
    free = styles["style_free"]
    rows = [("style accuracy", styles, "style_accuracy"), ("concept accuracy", styles, "concept_accuracy"),
            ("style-free: styles of 12", free, "distinct_styles"), ("style-free: diversity", free, "diversity")]
    print(f"  on {styles['images']} unseen combinations and {free['prompts']} style-free prompts:")
    for label, source, key in rows:
        print(f"  {label:<24}{source['generated'][key]:>12.4f}{source['real_floor'][key]:>12.4f}")
    precision = [styles[side]["concept_r_precision"]["mean"] for side in ("generated", "real_floor")]
    print(f"  {'concept R-precision':<24}{precision[0]:>12.4f}{precision[1]:>12.4f}")


def _run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from limner.config import config_from_dict
    from limner.errors import ConfigError
    from limner.pipelines import load_pipeline
    from limner.serving import ServeConfig, create_app
    from limner.serving.connections import raise_open_file_limit, uvicorn_config

    values = read_config_file(args.config) if args.config else {}
    values.update(host=args.host, port=args.port)
    if args.api_keys:
        values["api_keys_file"] = args.api_keys
    if args.no_batching:
        values["batching"] = False
    if args.max_batch_size:
        values["max_batch_size"] = args.max_batch_size
    config = config_from_dict(ServeConfig, values, where=args.config or "serve flags")
    models = {}
    for spec in args.models:
        name, sep, folder = spec.partition("=")
        name, folder = (name, folder) if sep else (Path(spec).resolve().name, spec)
        if name in models:
            raise ConfigError(f"two models are named {name!r}; name them with NAME=DIR")
        models[name] = load_pipeline(folder, backend=args.backend)
    app = create_app(models, config)
    print(f"limner serving {', '.join(models)} on http://{config.host}:{config.port}/ (API at /v1)")
    raise_open_file_limit(4 * config.max_connections)  # one descriptor per connection, with room to spare
    uvicorn.Server(uvicorn_config(app, config, timeout_graceful_shutdown=30)).run()
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from limner.export import export_onnx

    captions = _own_captions(args.model_dir, args.calibration_captions, limit=256, flag="--calibration-captions") if args.quantize == "static" else None
    report = export_onnx(args.model_dir, quantize=args.quantize, calibration_captions=captions)
    differences = ", ".join(f"{k.removesuffix('_max_abs_diff')} {v:.1e}" for k, v in report.items() if k.endswith("_max_abs_diff"))
    print(f"wrote {Path(args.model_dir) / 'onnx'} (opset {report['opset']}); largest difference from PyTorch: {differences}")
    if "int8" in report:
        int8 = report["int8"]
        print(f"int8 ({int8['mode']}): mean difference from PyTorch {int8['mean_abs_diff']:.3f}, largest {int8['max_abs_diff']:.3f} "
              "(pixels in [-1, 1]); run it with --backend onnx-int8")
    return 0


def _own_captions(model_dir: str, captions_file: str | None, *, limit: int, flag: str) -> list[str]:
    """The lines of `captions_file`, else up to `limit` captions of the data the model was trained on
    (`flag`: the option that names such a file, for the error that asks for one)."""
    from limner.training.data import model_training_captions

    if captions_file:
        try:
            lines = Path(captions_file).read_text().splitlines()
        except OSError as err:
            raise DataError(f"{captions_file}: cannot read the captions ({err})") from err
        captions = [line.strip() for line in lines if line.strip()]
        if not captions:
            raise DataError(f"{captions_file}: holds no captions (one per line)")
        return captions
    return model_training_captions(model_dir, limit=limit, hint=f"; give {flag} FILE (one caption per line)")


def _run_prune(args: argparse.Namespace) -> int:
    from limner.training.prune import prune_model

    captions = _own_captions(args.model_dir, args.captions, limit=4096, flag="--captions")
    report = prune_model(args.model_dir, args.output_dir, amount=args.amount, captions=captions, distill_minutes=args.distill_minutes,
                         distill_steps=args.distill_steps, progress=not args.no_progress)
    distilled = report["distillation"]
    print(f"pruned {args.amount:.0%} of the channels: {report['parameters_before']:,} -> {report['parameters_after']:,} parameters "
          f"(channels {report['channels_before']} -> {report['channels_after']}); distilled {distilled['steps']} steps in "
          f"{distilled['seconds']:.0f}s, L1 to the original {distilled['l1_to_teacher_first']:.3f} -> {distilled['l1_to_teacher_last']:.3f}")
    print(f"model: {args.output_dir}")
    return 0


def _run_keys(args: argparse.Namespace) -> int:
    from limner.serving.keys import create_key, read_key_file, revoke_key

    if args.action in ("create", "revoke") and not args.name:
        print(f"limner: error: keys {args.action} needs a NAME", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.action == "create":
        key = create_key(Path(args.file), args.name, rate_limit_per_minute=args.rate_limit_per_minute, rate_limit_burst=args.rate_limit_burst)
        print(key)
        print(f"(key {args.name!r} added to {args.file}; only its hash is stored, so keep the key now)", file=sys.stderr)
    elif args.action == "revoke":
        count = revoke_key(Path(args.file), args.name)
        print(f"revoked {count} key(s) named {args.name!r}; a running server notices within a second")
    else:
        for record in read_key_file(Path(args.file)):
            limit = "server limit" if record.rate_limit_per_minute is None else f"{record.rate_limit_per_minute:g}/min"
            print(f"{record.name}\t{'revoked' if record.revoked else 'live'}\t{limit}")
    return 0


_COMMANDS = {"data": _run_data, "train": _run_train, "generate": _run_generate, "caption": _run_caption, "evaluate": _run_evaluate,
             "serve": _run_serve, "roundtrip": _run_roundtrip, "rank": _run_rank, "export": _run_export, "prune": _run_prune,
             "keys": _run_keys}

if __name__ == "__main__":
    sys.exit(main())
