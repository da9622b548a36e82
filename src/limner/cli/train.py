"""`limner train`: one command for every model kind, over one table of flags. Each kind's defaults live
in its config class and its section of the preset (limner.training.presets); a flag that is no setting
of the chosen kind is refused by name."""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any, Callable

from limner.config import read_config_file

# (flag, config field, type, help); None as a default means "leave the preset's value".
TRAIN_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--train-data-dir", "train_data_dir", str, "imagefolder path, or a builtin dataset: shapes, emoji, emoji-styles"),
    ("--resolution", "resolution", int, "image side: 32, 64, 128 or 256"),
    ("--text-encoder", "text_encoder", str, "Hugging Face path or hub id, or bag-of-words"),
    ("--text-pooling", "text_pooling", str, "mean, last, eos, cls (default: the family's own) or anchored (word embeddings mapped onto the training words)"),
    ("--text-hidden-layer", "text_hidden_layer", int, "which hidden state to pool: 0 embeddings, -1 last (default)"),
    ("--text-anchor-temperature", "text_anchor_temperature", float, "anchored pooling: lower maps a new word harder onto its nearest known word"),
    ("--text-anchor-margin", "text_anchor_margin", float, "anchored pooling: a new word weighs fully once its two nearest known words are this far apart"),
    ("--text-anchor-floor", "text_anchor_floor", float, "anchored pooling: a new word nearer no known word than this cosine weighs nothing (0: off)"),
    ("--text-anchor-lexicon", "text_anchor_lexicon", str, "anchored pooling: read WordNet's other names for the known words as them ('wordnet' or its folder)"),
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

SAFETY_CHECKER = "safety-checker"  # trained by limner.training.safety_trainer over its own config

# model kind -> (module, function) that trains it; imported only when asked for (torch is heavy)
TRAINERS = {
    "gan": ("limner.training", "train"),
    "vae": ("limner.training.vae_trainer", "train_vae"),
    "evaluator": ("limner.training.evaluator_trainer", "train_evaluator"),
    "captioner": ("limner.training.captioner_trainer", "train_captioner"),
    "aligner": ("limner.training.aligner_trainer", "train_aligner"),
}


def add_parsers(commands) -> None:
    train = commands.add_parser("train", help="train a model: a text-to-image GAN (default), VAE, evaluator, captioner, aligner or safety checker")
    train.add_argument("--preset", default="shapes", help="shapes, emoji, emoji-styles or emoji-styles-32 (flags override it)")
    train.add_argument("--model", default="gan", choices=[*TRAINERS, SAFETY_CHECKER],
                       help="gan (default); vae: a conditional VAE with a learnt text prior; evaluator: the independent image-text scorer `limner evaluate` uses; captioner: image to text; "
                            "aligner: an image-text matcher for `limner rank` and for training generators against; "
                            "safety-checker: flags unwanted pictures (needs --evaluator-dir, --unwanted-images, --allowed-images)")
    train.add_argument("--config", default=None, help="a JSON file of the chosen kind's config values, applied over the preset")
    for flag, _, kind, text in TRAIN_FLAGS:
        train.add_argument(flag, type=kind, default=None, help=text)
    train.add_argument("--unwanted-images", default=None, help="safety-checker: a folder of pictures to flag")
    train.add_argument("--allowed-images", default=None, help="safety-checker: a folder of pictures to let through")
    train.add_argument("--held-out-fraction", type=float, default=None, help="safety-checker: share of each folder kept out to measure it (0.25)")
    train.add_argument("--validation-prompts", nargs="+", default=None, help="captions for the validation grid")
    train.add_argument("--skip-invalid-images", action="store_true", help="skip and count bad images instead of stopping")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    finetune = commands.add_parser("finetune", help="adapt a trained GAN to new images: low-rank adapters (a few hundred KB) or every weight")
    finetune.add_argument("base_model_dir", help="a GAN folder written by `limner train` (its checkpoints give the discriminator)")
    finetune.add_argument("--train-data-dir", required=True, help="the new images: an imagefolder with captions")
    finetune.add_argument("--output-dir", required=True, help="where the adapter (or, with --method full, the model) goes")
    finetune.add_argument("--method", choices=("lora", "full", "textual-inversion"), default="lora",
                          help="lora: adapters on the frozen generator; full: every weight; textual-inversion: one new word (--token)")
    finetune.add_argument("--token", default=None, help='textual-inversion: the new word your captions use, e.g. "<my-style>"')
    finetune.add_argument("--initializer-word", default=None, help="textual-inversion: the word it starts from (style)")
    finetune.add_argument("--lora-rank", type=int, default=None, help="rank of each adapter (8)")
    finetune.add_argument("--lora-alpha", type=float, default=None, help="adapter scale numerator (default: the rank)")
    finetune.add_argument("--lora-discriminator", action="store_true", help="adapters on the discriminator too, instead of training all of it")
    finetune.add_argument("--preservation-weight", type=float, default=None,
                          help="lora and full: pull towards the base's own pictures of its training captions (10; 0: off)")
    for flag in ("--max-train-steps", "--max-train-minutes", "--learning-rate", "--discriminator-learning-rate", "--seed",
                 "--train-batch-size", "--validation-steps", "--checkpointing-steps"):
        field, kind, text = next((f, k, t) for name, f, k, t in TRAIN_FLAGS if name == flag)
        finetune.add_argument(flag, type=kind, default=None, help=text)
    finetune.add_argument("--validation-prompts", nargs="+", default=None, help="captions for the validation grid")
    finetune.add_argument("--skip-invalid-images", action="store_true", help="skip and count bad images instead of stopping")
    finetune.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from limner.training import build_train_config

    kind = args.model
    if kind == SAFETY_CHECKER:
        return _run_safety_checker(args)
    config = build_train_config(args.preset, {**_overrides(args), "model": kind})
    module, name = TRAINERS[kind]
    result = getattr(importlib.import_module(module), name)(config, progress=not args.no_progress)
    for line in REPORTS[kind](result):
        print(line)
    return 130 if getattr(result, "interrupted", False) else 0


def _run_safety_checker(args: argparse.Namespace) -> int:
    """The output checker has its own small config (limner.training.safety_trainer), not TrainConfig."""
    from limner.errors import ConfigError
    from limner.training.safety_trainer import build_safety_config, train_safety_checker

    values = read_config_file(args.config) if args.config else {}
    flags = {"evaluator_dir": args.evaluator_dir, "unwanted_images": args.unwanted_images, "allowed_images": args.allowed_images,
             "output_dir": args.output_dir, "seed": args.seed, "held_out_fraction": args.held_out_fraction}
    values.update({key: value for key, value in flags.items() if value is not None})
    if args.skip_invalid_images:
        values["skip_invalid_images"] = True
    missing = [f"--{name.replace('_', '-')}" for name in ("evaluator_dir", "unwanted_images", "allowed_images") if name not in values]
    if missing:
        raise ConfigError(f"--model safety-checker needs {', '.join(missing)}")
    result = train_safety_checker(build_safety_config(values), progress=not args.no_progress)
    scores = result.held_out
    print(f"trained on {result.train_images['unwanted']} unwanted and {result.train_images['allowed']} allowed images"
          + (f" ({result.skipped} unreadable skipped)" if result.skipped else ""))
    print(f"held out: precision {scores['precision']:.3f}, recall {scores['recall']:.3f} ({scores['unwanted']} unwanted, "
          f"{scores['allowed']} allowed, {scores['false_positives']} allowed images flagged)")
    print(f"safety checker: {result.output_dir}  (copy it into a model folder as safety_checker/ to check that model's pictures)")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from limner.training.finetune import finetune, finetune_config

    flags = {"train_data_dir": args.train_data_dir, "output_dir": args.output_dir, "method": args.method, "lora_rank": args.lora_rank,
             "lora_alpha": args.lora_alpha, "validation_prompts": args.validation_prompts, "token": args.token,
             "initializer_word": args.initializer_word, "preservation_weight": args.preservation_weight}
    flags.update({field: getattr(args, flag[2:].replace("-", "_")) for flag, field, _, _ in TRAIN_FLAGS if hasattr(args, flag[2:].replace("-", "_"))})
    overrides = {key: value for key, value in flags.items() if value is not None}
    if args.lora_discriminator:
        overrides["lora_discriminator"] = True
    if args.skip_invalid_images:
        overrides["skip_invalid_images"] = True
    result = finetune(finetune_config(args.base_model_dir, overrides), progress=not args.no_progress)
    info = json.loads((result.output_dir / "finetune.json").read_text())
    share = info["trainable_parameters"] / max(info["base_parameters"], 1)
    print(f"fine-tuned ({info['method']}) {result.steps} steps in {result.train_seconds:.0f}s; "
          f"{info['trainable_parameters']:,} trainable parameters ({share:.1%} of the generator's {info['base_parameters']:,})")
    if info["method"] == "lora":
        print(f"adapter: {result.output_dir}  (limner generate {args.base_model_dir} \"PROMPT\" --lora {result.output_dir})")
    elif info["method"] == "textual-inversion":
        print(f"learned word {info['token']!r}: {result.output_dir}  "
              f"(limner generate {args.base_model_dir} \"PROMPT with {info['token']}\" --textual-inversion {result.output_dir})")
    else:
        print(f"model: {result.output_dir}")
    print(f"samples: {result.output_dir / 'samples.png'}")
    return 130 if result.interrupted else 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config values from --config, then the flags given (flags win)."""
    overrides = {field: getattr(args, flag[2:].replace("-", "_")) for flag, field, _, _ in TRAIN_FLAGS}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.validation_prompts:
        overrides["validation_prompts"] = args.validation_prompts
    if args.skip_invalid_images:
        overrides["skip_invalid_images"] = True
    if args.config:
        overrides = {**read_config_file(args.config), **overrides}
    return overrides


def _gan_report(result) -> list[str]:
    lines = [f"trained {result.steps} steps in {result.train_seconds:.0f}s ({result.images_per_second:.0f} img/s)"]
    if result.scores:
        lines.append("held-out judge accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items() if k != "images"))
    lines.append(f"model: {result.output_dir}  samples: {result.output_dir / 'samples.png'}")
    return lines


def _vae_report(result) -> list[str]:
    lines = [f"trained the VAE {result.steps} steps in {result.train_seconds:.0f}s; last losses "
             + ", ".join(f"{k} {v:.3f}" for k, v in result.last_losses.items())]
    if result.held_out:
        lines.append("held-out judge accuracy (sampling the prior): "
                     + ", ".join(f"{k} {v:.3f}" for k, v in result.held_out.items() if k != "images"))
    if result.reconstruction:
        lines.append(f"test reconstructions: PSNR {result.reconstruction['psnr']:.2f} dB, SSIM {result.reconstruction['ssim']:.3f}")
    lines.append(f"model: {result.output_dir}  samples: {result.output_dir / 'samples.png'}")
    return lines


def _evaluator_report(result) -> list[str]:
    recall = "n/a (no test split)" if result.test_recall_at_1 is None else f"{result.test_recall_at_1:.3f}"
    lines = [f"trained the evaluator {result.steps} steps in {result.train_seconds:.0f}s; final loss {result.final_loss:.3f}; "
             f"test recall@1 (image to caption) {recall}"]
    info = json.loads((result.output_dir / "model_index.json").read_text())
    if info.get("test_style_accuracy") is not None:
        lines.append(f"style head: accuracy {info['test_style_accuracy']:.3f} on the test split's real images")
    lines.append(f"evaluator: {result.output_dir}")
    return lines


def _captioner_report(result) -> list[str]:
    exact = "n/a (no test split)" if result.test_exact_match is None else f"{result.test_exact_match:.3f}"
    return [f"trained the captioner {result.steps} steps in {result.train_seconds:.0f}s; final loss {result.final_loss:.3f}; "
            f"test exact match (greedy) {exact}", f"captioner: {result.output_dir}"]


def _aligner_report(result) -> list[str]:
    test = result.test_scores
    recall = "n/a (no test split)" if test is None else (
        f"image to caption R@1 {test['image_to_caption_r1']:.3f} R@5 {test['image_to_caption_r5']:.3f}, "
        f"caption to image R@1 {test['caption_to_image_r1']:.3f} R@5 {test['caption_to_image_r5']:.3f}")
    return [f"trained the aligner {result.steps} steps in {result.train_seconds:.0f}s; final loss {result.final_loss:.3f}; test {recall}",
            f"aligner: {result.output_dir}"]


REPORTS: dict[str, Callable[[Any], list[str]]] = {
    "gan": _gan_report, "vae": _vae_report, "evaluator": _evaluator_report, "captioner": _captioner_report, "aligner": _aligner_report,
}

COMMANDS = {"train": run_train, "finetune": run_finetune}
