"""Using trained models: `limner generate`, `caption`, `roundtrip`, `rank`, `evaluate` and `explain`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from limner.cli.common import BACKEND_CHOICES, BACKEND_HELP, open_image, user_error


def add_parsers(commands) -> None:
    generate = commands.add_parser("generate", help="generate images from a trained model")
    generate.add_argument("model_dir")
    generate.add_argument("prompts", nargs="+")
    generate.add_argument("-n", "--num-images", type=int, default=4, help="images per prompt")
    generate.add_argument("-o", "--output", default="grid.png")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--truncation", type=float, default=None, help="noise truncation (default: the model's)")
    generate.add_argument("--guidance-scale", type=float, default=None, help="how far each caption is pushed from the training captions' mean: above 1 exaggerates what sets it apart (its concept, its style); default: the model's (1)")
    generate.add_argument("--code", default=None, metavar="CODE",
                          help="draw every image from this noise code: its name where training tied the codes to a column "
                               "(e.g. twitter, with noise_code_column style) or its number; default: the codes in turn")
    generate.add_argument("--backend", choices=BACKEND_CHOICES, default="torch", help=BACKEND_HELP)
    generate.add_argument("--lora", action="append", default=[], metavar="DIR[:SCALE]",
                          help="an adapter from `limner finetune` at a scale (default 1); repeat to combine several")
    generate.add_argument("--textual-inversion", action="append", default=[], metavar="DIR",
                          help="a word learnt by `limner finetune --method textual-inversion`, for the prompts to use")
    caption = commands.add_parser("caption", help="describe images in words with a trained captioner")
    caption.add_argument("model_dir")
    caption.add_argument("images", nargs="+")
    caption.add_argument("--beams", type=int, default=None, help="beam width (default: the model's; 1 is greedy)")
    caption.add_argument("--max-length", type=int, default=None, help="at most this many tokens")
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
    evaluate.add_argument("--guidance-scale", type=float, default=None, help="how far each caption is pushed from the training captions' mean: above 1 exaggerates what sets it apart (its concept, its style); default: the model's (1)")
    evaluate.add_argument("--truncation", type=float, default=None, help="noise truncation for this evaluation (default: the model's)")
    evaluate.add_argument("--no-progress", action="store_true")
    roundtrip = commands.add_parser("roundtrip", help="text to image to text: generate, then caption what was drawn")
    roundtrip.add_argument("generator_dir")
    roundtrip.add_argument("captioner_dir")
    roundtrip.add_argument("prompts", nargs="+")
    roundtrip.add_argument("-n", "--num-images", type=int, default=4, help="images per prompt")
    roundtrip.add_argument("--seed", type=int, default=0)
    roundtrip.add_argument("-o", "--output", default="roundtrip.png", help="a grid of the images, each row labelled with its prompt")
    rank = commands.add_parser("rank", help="rank captions for an image, or images for a caption, with a trained aligner")
    rank.add_argument("model_dir")
    rank.add_argument("--image", default=None, help="an image whose --captions to rank")
    rank.add_argument("--captions", nargs="+", default=None)
    rank.add_argument("--caption", default=None, help="a caption whose --images to rank")
    rank.add_argument("--images", nargs="+", default=None)
    explain = commands.add_parser("explain", help="why a text-to-image model drew what it drew: each word's effect and where, a noise walk")
    explain.add_argument("model_dir")
    explain.add_argument("prompt")
    explain.add_argument("-o", "--output", default="explain.png")
    explain.add_argument("-n", "--seeds", type=int, default=6, help="noises each version of the prompt is drawn from")
    explain.add_argument("--seed", type=int, default=0)
    explain.add_argument("--towards", default=None, help="a second prompt: add the interpolation from the first to it")


def run_generate(args: argparse.Namespace) -> int:
    from limner.pipelines import TextToImagePipeline
    from limner.pipelines.adapters import parse_adapter_spec
    from limner.pipelines.text_to_image import check_guidance_scale, check_truncation
    from limner.utils.images import make_grid, save_png

    if not 1 <= args.num_images <= 256:
        return user_error(f"-n must be between 1 and 256, got {args.num_images}")
    if args.truncation is not None:
        check_truncation(args.truncation)
    pipe = TextToImagePipeline.from_pretrained(args.model_dir, backend=args.backend)
    if args.guidance_scale is not None:
        pipe.guidance_scale = check_guidance_scale(args.guidance_scale)
    for spec in args.lora:
        pipe.load_lora(*parse_adapter_spec(spec))
    for folder in args.textual_inversion:
        pipe.load_textual_inversion(folder)
    images = pipe(args.prompts, num_images_per_prompt=args.num_images, seed=args.seed, truncation=args.truncation, code=args.code)
    scale = max(1, 96 // images[0].width)
    grid = make_grid(images, args.num_images, row_labels=args.prompts if len(args.prompts) > 1 else None, scale=scale)
    metadata = {"prompt": " | ".join(args.prompts), "seed": args.seed, "model": str(Path(args.model_dir).resolve())}
    if args.code is not None:
        metadata["code"] = args.code
    save_png(grid, args.output, metadata)
    print(f"wrote {args.output} ({len(images)} images)")
    return 0


def run_caption(args: argparse.Namespace) -> int:
    from limner.pipelines.image_to_text import ImageToTextPipeline

    pipe = ImageToTextPipeline.from_pretrained(args.model_dir)
    images = [open_image(path) for path in args.images]
    for path, result in zip(args.images, pipe(images, beams=args.beams, max_length=args.max_length)):
        print(f"{path}\t{result['generated_text']}")
    return 0


def run_roundtrip(args: argparse.Namespace) -> int:
    from limner.pipelines import TextToImagePipeline, round_trip
    from limner.pipelines.image_to_text import ImageToTextPipeline
    from limner.pipelines.round_trip import exact_rate
    from limner.utils.images import make_grid, save_png

    if not 1 <= args.num_images <= 64:
        return user_error(f"-n must be between 1 and 64, got {args.num_images}")
    trips = round_trip(TextToImagePipeline.from_pretrained(args.generator_dir), ImageToTextPipeline.from_pretrained(args.captioner_dir),
                       args.prompts, num_images_per_prompt=args.num_images, seed=args.seed)
    for trip in trips:
        print(f"{'=' if trip['exact'] else '~'} {trip['prompt']}  ->  {trip['caption']}")
    grid = make_grid([t["image"] for t in trips], args.num_images, row_labels=args.prompts, scale=max(1, 96 // trips[0]["image"].width))
    save_png(grid, args.output, {"prompts": json.dumps(args.prompts), "captions": json.dumps([t["caption"] for t in trips]), "seed": str(args.seed)})
    print(f"{exact_rate(trips):.0%} came back exactly; images: {args.output}")
    return 0


def run_rank(args: argparse.Namespace) -> int:
    from limner.pipelines.dual_encoder import DualEncoderPipeline

    if bool(args.image) == bool(args.caption):
        return user_error("rank needs either --image FILE with --captions, or --caption TEXT with --images")
    if args.image and not args.captions:
        return user_error("--image needs --captions to rank")
    if args.caption and not args.images:
        return user_error("--caption needs --images to rank")
    pipe = DualEncoderPipeline.from_pretrained(args.model_dir, role="aligner")
    if args.image:
        for caption, score in pipe.rank_captions(open_image(args.image), args.captions):
            print(f"{score:+.4f}\t{caption}")
    else:
        images = [open_image(path) for path in args.images]
        for index, score in pipe.rank_images(args.caption, images):
            print(f"{score:+.4f}\t{args.images[index]}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from limner.evaluation import evaluate

    report = evaluate(args.model_dir, args.data, args.evaluator, split=args.split, output_dir=args.output_dir,
                      seed=args.seed, max_images=args.max_images, fid_features=args.fid_features, progress=not args.no_progress,
                      guidance_scale=args.guidance_scale, truncation=args.truncation)
    out = Path(args.output_dir) if args.output_dir else Path(args.model_dir) / "evaluation"
    generated, floor = report["generated"], report["real_floor"]
    print(f"{report['n_images']} images of split {report['split']}; feature network: limner evaluator ({report['feature_network']['path']})")
    print(f"  {'metric':<24}{'generated':>12}{'real floor':>12}")
    print(f"  {'R-precision':<24}{generated['r_precision']['mean']:>12.4f}{floor['r_precision']['mean']:>12.4f}")
    for key in ("fid", "kid_mean", "psnr", "ssim", "banding", "fine_grain", "alignment", "image_to_text_r@1", "diversity", "nearest_train_distance"):
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


def run_explain(args: argparse.Namespace) -> int:
    from limner.evaluation.explain import explain_page
    from limner.pipelines import TextToImagePipeline
    from limner.utils.images import save_png

    if not 1 <= args.seeds <= 32:
        return user_error(f"--seeds must be between 1 and 32, got {args.seeds}")
    pipe = TextToImagePipeline.from_pretrained(args.model_dir)
    page, found = explain_page(pipe, args.prompt, seeds=args.seeds, seed=args.seed, other_prompt=args.towards)
    save_png(page, args.output, {"prompt": args.prompt, "seed": args.seed, "model": str(Path(args.model_dir).resolve())})
    for attribution in sorted(found, key=lambda a: -a.score):
        print(f"{attribution.score:.4f}\t{attribution.words}")
    print(f"wrote {args.output}")
    return 0


COMMANDS = {"explain": run_explain, "generate": run_generate, "caption": run_caption, "evaluate": run_evaluate, "roundtrip": run_roundtrip, "rank": run_rank}
