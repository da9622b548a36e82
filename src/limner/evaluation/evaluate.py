"""`limner evaluate`: every figure for a text-to-image model, each beside its real-versus-real floor.

One generated image per real image of the split, from that image's own caption
(fixed seed), so generated and real sets have the same size and caption mix and
pair up for PSNR/SSIM. Floors: the same metrics between real images (the train
split against the split for FID/KID and memorisation, a second real image of the
same caption for PSNR/SSIM, the split's own real images for R-precision,
retrieval, alignment and diversity).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from tqdm.auto import tqdm

from limner.data import ImageFolder, builtin_data_dir
from limner.data.builders import BUILTIN_DATASETS
from limner.data import shapes
from limner.errors import ConfigError
from limner.evaluation.explain import explain_page
from limner.evaluation.styles import has_styles, style_figures
from limner.metrics.alignment import alignment_score, diversity, nearest_neighbours, r_precision, retrieval_recall
from limner.metrics.images import InceptionFeatures, banding, distribution_metrics, fine_grain, paired_image_metrics
from limner.models.dual_encoder import DualEncoder
from limner.pipelines import TextToImagePipeline
from limner.pipelines.text_to_image import check_guidance_scale, check_truncation
from limner.text import TextEncoder
from limner.pipelines.dual_encoder import load_evaluator
from limner.utils.images import from_uint8, to_pil


@dataclass
class EvaluationSet:
    """Real images of a split with their caption ids, and the generated twin of each."""

    captions: list[str]         # the U distinct captions of the split, then the train split's others
    caption_ids: torch.Tensor   # long (N,) each real image's caption
    real: torch.Tensor          # (N, 3, H, W) in [-1, 1]
    fake: torch.Tensor          # (N, 3, H, W) in [-1, 1], fake[i] drawn from captions[caption_ids[i]]
    train_real: torch.Tensor    # (M, 3, H, W) in [-1, 1], training images (floors, memorisation)
    diverse: torch.Tensor       # (K * P, 3, H, W): K images for each of P captions, for diversity
    diverse_ids: torch.Tensor   # long (K * P,) their caption ids
    extra: dict = field(default_factory=dict)


def load_split(data_dir: Path, split: str, resolution: int, *, max_images: int | None, seed: int
               ) -> tuple[list[str], torch.Tensor, torch.Tensor, list[dict]]:
    """(all distinct captions of the split, caption id per loaded image, images in [-1, 1], each
    loaded image's other metadata columns).

    With max_images, a seeded random subset of the records is chosen before any image is read.
    """
    folder = ImageFolder(data_dir, split)
    captions = folder.captions  # of the whole split, before any subsetting
    if max_images is not None and len(folder.records) > max_images:
        keep = torch.randperm(len(folder.records), generator=torch.Generator().manual_seed(seed))[:max_images].sort().values
        folder.records = [folder.records[i] for i in keep.tolist()]
    images = from_uint8(folder.load_images(resolution, progress=False))
    index = {c: i for i, c in enumerate(captions)}
    caption_ids = torch.tensor([index[r.captions[0]] for r in folder.records])
    return captions, caption_ids, images, [r.columns for r in folder.records]


@torch.no_grad()
def generate_twins(pipe: TextToImagePipeline, captions: list[str], caption_ids: torch.Tensor, *, seed: int, batch: int = 256, progress: bool = True) -> torch.Tensor:
    prompts = [captions[i] for i in caption_ids.tolist()]
    chunks = []
    for start in tqdm(range(0, len(prompts), batch), desc="generating", disable=not progress):
        chunks.append(pipe.generate_tensors(prompts[start : start + batch], seed=seed + start))
    return torch.cat(chunks)


def _second_real_of_same_caption(caption_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (i, j), i != j, of real images with one caption (each image with the next of its
    caption, cyclically): the PSNR/SSIM floor."""
    firsts, seconds = [], []
    for caption in caption_ids.unique():
        members = torch.nonzero(caption_ids == caption).flatten()
        if members.numel() >= 2:
            firsts.append(members)
            seconds.append(members.roll(1))
    if not firsts:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(firsts), torch.cat(seconds)


def _halves(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[: count // 2], order[count // 2 :]


def text_image_figures(evaluator: DualEncoder, text_table: torch.Tensor, features: torch.Tensor, caption_ids: torch.Tensor, *, seed: int) -> dict:
    """features: the evaluator's pooled features (N, F) of the images."""
    vectors = evaluator.embed_features(features)
    folds = min(10, features.shape[0])
    return {
        "r_precision": r_precision(vectors, caption_ids, text_table, folds=folds, seed=seed),
        **retrieval_recall(vectors, caption_ids, text_table),
        "alignment": alignment_score(vectors, text_table[caption_ids]),
    }


@torch.no_grad()
def compute_metrics(
    evaluator: DualEncoder, evaluator_text: TextEncoder, data: EvaluationSet, *, seed: int, progress: bool = True,
    distribution_features: torch.nn.Module | None = None,
) -> dict:
    """Every figure for the generated images and its real floor; FID/KID use `distribution_features`
    (default: the evaluator), everything else the evaluator."""
    features = distribution_features if distribution_features is not None else evaluator
    steps = tqdm(total=6, desc="metrics", disable=not progress)
    text_table = evaluator.text_embedding(evaluator_text.encode(data.captions).sentence)
    generated, floor = {}, {}

    # FID/KID: real half A against the generated twins of half B, and against real half B
    # (the floor): same number of images, same caption mix on both sides.
    half_a, half_b = _halves(data.real.shape[0], seed)
    generated.update(distribution_metrics(features, data.real[half_a], data.fake[half_b]))
    floor.update(distribution_metrics(features, data.real[half_a], data.real[half_b]))
    steps.update()

    generated.update(paired_image_metrics(data.fake, data.real))
    generated["banding"], floor["banding"] = banding(data.fake), banding(data.real)
    generated["fine_grain"], floor["fine_grain"] = fine_grain(data.fake), fine_grain(data.real)
    first, second = _second_real_of_same_caption(data.caption_ids)
    if first.numel():
        floor.update(paired_image_metrics(data.real[first], data.real[second]))
    else:  # no caption has two real images in this split: no floor
        floor.update({"psnr": None, "ssim": None, "n": 0})
    steps.update()

    fake_features, real_features = evaluator.pooled_features(data.fake), evaluator.pooled_features(data.real)
    generated.update(text_image_figures(evaluator, text_table, fake_features, data.caption_ids, seed=seed))
    floor.update(text_image_figures(evaluator, text_table, real_features, data.caption_ids, seed=seed))
    steps.update()

    generated["diversity"] = diversity(evaluator.pooled_features(data.diverse), data.diverse_ids)
    try:
        floor["diversity"] = diversity(real_features, data.caption_ids)
    except ValueError:  # no caption has two real images in this split: no floor
        floor["diversity"] = None
    steps.update()

    train_features = evaluator.pooled_features(data.train_real)
    fake_nn, fake_nn_index = nearest_neighbours(fake_features, train_features)
    real_nn, _ = nearest_neighbours(real_features, train_features)
    generated["nearest_train_distance"] = float(fake_nn.mean())
    floor["nearest_train_distance"] = float(real_nn.mean())
    data.extra["nearest_train_index"] = fake_nn_index
    steps.update()
    steps.close()
    return {"generated": generated, "real_floor": floor}


def shapes_figures(data: EvaluationSet) -> dict:
    """The judge per attribute, and a confusion table per attribute (caption value -> seen value)."""
    totals = {name: 0 for name in (*shapes.ATTRIBUTES, "all")}
    confusion = {name: {} for name in shapes.ATTRIBUTES}
    for image, caption_id in zip(to_pil(data.fake), data.caption_ids.tolist()):
        target = shapes.parse_caption(data.captions[caption_id])
        seen = shapes.read_attributes(image)
        verdict = {name: seen[name] == value for name, value in target.attributes().items()}
        for name, value in target.attributes().items():
            row = confusion[name].setdefault(value, {})
            key = seen[name] or "none"
            row[key] = row.get(key, 0) + 1
            totals[name] += int(verdict[name])
        totals["all"] += int(all(verdict.values()))
    n = data.fake.shape[0]
    return {"accuracy": {k: v / n for k, v in totals.items()}, "images": n, "confusion": confusion}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("limner", "torch", "torchmetrics", "transformers"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def evaluate(
    model_dir: str | Path,
    data_dir: str | Path,
    evaluator_dir: str | Path,
    *,
    split: str = "test",
    output_dir: str | Path | None = None,
    seed: int = 0,
    max_images: int | None = 2000,
    diversity_prompts: int = 50,
    diversity_images_per_prompt: int = 8,
    fid_features: str = "evaluator",
    backend: str = "torch",
    progress: bool = True,
    guidance_scale: float | None = None,
    spread_codes: bool | None = None,
    truncation: float | None = None,
) -> dict:
    """Score the model, write metrics.json and report.html, and return the metrics. `backend`:
    how the generator runs (TextToImagePipeline.from_pretrained's; "onnx-int8" judges the int8 export);
    guidance_scale, spread_codes, truncation: the pipeline's for this evaluation (default: the model's own)."""
    from limner.evaluation.report import write_report

    started = time.perf_counter()
    model_dir, evaluator_dir = Path(model_dir), Path(evaluator_dir)
    output_dir = Path(output_dir) if output_dir else model_dir / "evaluation"
    if fid_features not in ("evaluator", "inception"):
        raise ConfigError(f"fid_features must be evaluator or inception, got {fid_features!r}")
    inception = InceptionFeatures() if fid_features == "inception" else None  # fails early when unavailable
    pipe = TextToImagePipeline.from_pretrained(model_dir, backend=backend)
    if guidance_scale is not None:
        pipe.guidance_scale = check_guidance_scale(guidance_scale)
    if spread_codes is not None:
        pipe.spread_codes = spread_codes
    if truncation is not None:
        pipe.truncation = check_truncation(truncation)
    evaluator, evaluator_text, evaluator_info = load_evaluator(evaluator_dir)
    resolution = pipe.generator.config.resolution
    data_dir = builtin_data_dir(str(data_dir), resolution) if str(data_dir) in BUILTIN_DATASETS else Path(data_dir)
    evaluator.check_can_judge(resolution)
    captions, caption_ids, real, columns = load_split(data_dir, split, resolution, max_images=max_images, seed=seed)
    train_captions, _, train_real, _ = load_split(data_dir, "train", resolution, max_images=max_images, seed=seed + 1)
    # R-precision and retrieval rank against every caption of the dataset, not only this split's
    captions = captions + sorted(set(train_captions) - set(captions))
    fake = generate_twins(pipe, captions, caption_ids, seed=seed, progress=progress)
    diverse_ids = caption_ids.unique()[:diversity_prompts].repeat_interleave(diversity_images_per_prompt)
    diverse = generate_twins(pipe, captions, diverse_ids, seed=seed + 10**6, progress=False)
    data = EvaluationSet(captions, caption_ids, real, fake, train_real, diverse, diverse_ids)
    report = {
        "model": str(model_dir.resolve()), "data": str(data_dir.resolve()), "split": split, "seed": seed, "backend": backend, "guidance_scale": pipe.guidance_scale, "spread_codes": pipe.spread_codes, "truncation": pipe.truncation,
        **_sample_sizes(data, len(captions), diversity_images_per_prompt),
        "feature_network": {
            "name": "limner evaluator (trained on this dataset's real images; never a generator loss)",
            "path": str(evaluator_dir.resolve()),
            "num_features": evaluator.num_features,
            **{k: evaluator_info.get(k) for k in ("seed", "steps", "test_recall_at_1")},
        },
        "versions": _versions(),
        "fid_kid_features": "Inception-v3 (torch-fidelity, 2048-d)" if inception is not None else "the evaluator",
        **compute_metrics(evaluator, evaluator_text, data, seed=seed, progress=progress, distribution_features=inception),
    }
    if _is_shapes(data_dir):
        report["shapes_judge"] = shapes_figures(data)
    if has_styles(columns, evaluator):
        report["styles"] = style_figures(evaluator, evaluator_text, pipe, data_dir, columns=columns, real=real, fake=fake, seed=seed)
    prompt = captions[int(caption_ids[0])]
    explanation = explain_page(pipe, prompt, seeds=4, seed=seed) if backend == "torch" else None
    if explanation is not None:
        report["explanation"] = {"prompt": prompt, "seeds": 4, "words": {a.words: round(a.score, 4) for a in explanation[1]}}
    report["seconds"] = round(time.perf_counter() - started, 1)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    write_report(output_dir / "report.html", report, data, model_dir, explanation=explanation and explanation[0])
    return report


def _sample_sizes(data: "EvaluationSet", candidate_captions: int, images_per_prompt: int) -> dict:
    """How many images and captions each figure of the report rests on."""
    return {
        "n_images": int(data.real.shape[0]),
        "n_captions": int(data.caption_ids.unique().numel()),
        "n_candidate_captions": candidate_captions,
        "n_train_images_for_floors": int(data.train_real.shape[0]),
        "diversity_sample": {"prompts": int(data.diverse_ids.unique().numel()), "images_per_prompt": images_per_prompt},
    }


def _is_shapes(data_dir: Path) -> bool:
    info = data_dir / "dataset_info.json"
    return info.is_file() and json.loads(info.read_text()).get("name") == "shapes"
