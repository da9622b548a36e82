"""report.html: one self-contained page (images inlined) with the metric table and its floors,
sample grids beside real references, nearest-training-image strips, training curves and,
for shapes, the judge's confusion tables."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import torch
from PIL import Image

from limner.utils.images import make_grid, to_pil

# (key, label, which way is better)
METRIC_ROWS = [
    ("fid", "FID", "lower"),
    ("kid_mean", "KID mean", "lower"),
    ("kid_std", "KID std", ""),
    ("psnr", "PSNR vs a real image of the same caption (dB)", "higher"),
    ("ssim", "SSIM vs a real image of the same caption", "higher"),
    ("banding", "horizontal stripes: row-to-row over column-to-column change", "near the real"),
    ("fine_grain", "hatching: share of brightness variation at periods under 2.7 px", "near the real"),
    ("alignment", "image-caption cosine (evaluator space)", "higher"),
    ("image_to_text_r@1", "recall@1 image to caption", "higher"),
    ("image_to_text_r@5", "recall@5 image to caption", "higher"),
    ("text_to_image_r@1", "recall@1 caption to image", "higher"),
    ("text_to_image_r@5", "recall@5 caption to image", "higher"),
    ("diversity", "diversity (mean pairwise feature distance per caption)", "higher"),
    ("nearest_train_distance", "distance to the nearest training image", "higher = less copying"),
]


def _png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(image: Image.Image, alt: str) -> str:
    return f'<img src="{_png_data_url(image)}" alt="{html.escape(alt)}">'


def _format(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return html.escape(str(value))


def metric_table(report: dict) -> str:
    generated, floor = report["generated"], report["real_floor"]
    rows = ["<tr><th>metric</th><th>generated</th><th>real floor</th><th>better</th></tr>"]
    rp, rp_floor = generated["r_precision"], floor["r_precision"]
    rows.append(
        f"<tr><td>R-precision ({rp['candidates']} candidates, {rp['folds']} folds)</td>"
        f"<td>{rp['mean']:.4f} ± {rp['std']:.4f}</td><td>{rp_floor['mean']:.4f} ± {rp_floor['std']:.4f}</td><td>higher</td></tr>"
    )
    for key, label, better in METRIC_ROWS:
        if key in generated:
            rows.append(f"<tr><td>{label}</td><td>{_format(generated[key])}</td><td>{_format(floor.get(key, '—'))}</td><td>{better}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def sample_grids(data, *, captions_shown: int = 12, per_caption: int = 6) -> str:
    """Per caption: up to `per_caption` generated images, then the first real image of that caption."""
    rows, labels = [], []
    for caption_id in data.caption_ids.unique()[:captions_shown].tolist():
        members = torch.nonzero(data.caption_ids == caption_id).flatten()
        fakes = to_pil(data.fake[members[:per_caption]])
        fakes += [Image.new("RGB", fakes[0].size, "white")] * (per_caption - len(fakes))
        rows += fakes + to_pil(data.real[members[:1]])
        labels.append(data.captions[caption_id])
    scale = max(1, 64 // data.real.shape[-1])
    grid = make_grid(rows, per_caption + 1, row_labels=labels, scale=scale)
    return _img(grid, "generated images with the real reference in the last column")


def nearest_neighbour_strips(data, *, count: int = 12) -> str:
    index = data.extra.get("nearest_train_index")
    if index is None:
        return ""
    pairs = []
    for i in range(min(count, data.fake.shape[0])):
        pairs += to_pil(data.fake[i : i + 1]) + to_pil(data.train_real[index[i] : index[i] + 1])
    grid = make_grid(pairs, 2, row_labels=[data.captions[c] for c in data.caption_ids[:count].tolist()], scale=max(1, 64 // data.real.shape[-1]))
    return _img(grid, "each generated image beside its nearest training image")


def training_curves(model_dir: Path) -> str:
    """Losses read from the run's TensorBoard logs, plotted with matplotlib; empty when there are none."""
    logs = model_dir / "logs"
    if not logs.is_dir():
        return "<p>No training logs beside this model.</p>"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return "<p>matplotlib or tensorboard is not installed: no training curves.</p>"
    events = EventAccumulator(str(logs), size_guidance={"scalars": 0})
    events.Reload()
    tags = [t for t in events.Tags().get("scalars", []) if t.startswith("train/") and not t.endswith("_per_second")]
    if not tags:
        return "<p>The training logs hold no loss curves.</p>"
    figure, axes = plt.subplots(1, len(tags), figsize=(3.2 * len(tags), 2.6), squeeze=False)
    for axis, tag in zip(axes[0], tags):
        points = events.Scalars(tag)
        axis.plot([p.step for p in points], [p.value for p in points], linewidth=0.8)
        axis.set_title(tag.removeprefix("train/"), fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return _img(Image.open(io.BytesIO(buffer.getvalue())), "training curves")


def confusion_tables(judge: dict) -> str:
    parts = []
    for attribute, table in judge["confusion"].items():
        seen_values = sorted({v for row in table.values() for v in row})
        head = "".join(f"<th>{html.escape(v)}</th>" for v in seen_values)
        body = "".join(
            f"<tr><th>{html.escape(asked)}</th>" + "".join(f"<td>{row.get(v, 0)}</td>" for v in seen_values) + "</tr>"
            for asked, row in sorted(table.items())
        )
        parts.append(f"<h3>{attribute}: asked (rows) vs drawn (columns)</h3><table><tr><th></th>{head}</tr>{body}</table>")
    accuracy = ", ".join(f"{k} {v:.3f}" for k, v in judge["accuracy"].items())
    return f"<p>Judge accuracy on {judge['images']} generated images: {accuracy}</p>" + "".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child { text-align: left; }
img { image-rendering: pixelated; max-width: 100%; }
.meta { color: #555; font-size: 0.9em; }
"""


def style_table(styles: dict) -> str:
    """Style and concept figures on unseen combinations, and style-free prompts, beside their real floors."""
    rows = [("style accuracy (unseen combinations)", "style_accuracy", styles),
            ("concept accuracy among all concepts", "concept_accuracy", styles),
            ("distinct styles among samples of a style-free prompt", "distinct_styles", styles["style_free"]),
            ("diversity of a style-free prompt", "diversity", styles["style_free"])]
    body = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{_cell(source['generated'][key])}</td><td>{_cell(source['real_floor'][key])}</td></tr>"
        for label, key, source in rows
    )
    precision = [_cell(styles[side]["concept_r_precision"]["mean"]) for side in ("generated", "real_floor")]
    body += f"<tr><td>concept R-precision (1 + 99)</td><td>{precision[0]}</td><td>{precision[1]}</td></tr>"
    return (f"<p>{styles['images']} test images of unseen combinations; style read by the evaluator's style head, concept by "
            f"ranking {styles['concepts_ranked']} concept names; {styles['style_free']['prompts']} style-free prompts, "
            f"{styles['style_free']['samples_per_prompt']} samples each.</p>"
            f"<table><tr><th>figure</th><th>generated</th><th>real floor</th></tr>{body}</table>")


def _cell(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def explanation_section(report: dict, page: Image.Image) -> str:
    """The first test caption explained (limner.evaluation.explain): each word's effect and where."""
    info = report["explanation"]
    rows = "".join(f"<tr><td>{html.escape(word)}</td><td>{score:.4f}</td></tr>"
                   for word, score in sorted(info["words"].items(), key=lambda item: -item[1]))
    return (f"<h2>Why it drew this</h2><p>\"{html.escape(info['prompt'])}\", {info['seeds']} seeds: each word dropped in turn and "
            "the prompt drawn again from the same noises. The score is the mean change of the picture (0 to 1); the heat map "
            "(first column) shows where it changes. Then a walk through the noise. <code>limner explain</code> draws this for any prompt.</p>"
            f"<table><tr><th>word</th><th>change without it</th></tr>{rows}</table>" + _img(page, "word attribution"))


def write_report(path: Path, report: dict, data, model_dir: Path, *, explanation: Image.Image | None = None) -> None:
    network = report["feature_network"]
    sections = [
        f"<h1>limner evaluation</h1><p class='meta'>model <code>{html.escape(report['model'])}</code><br>"
        f"data <code>{html.escape(report['data'])}</code>, split <b>{html.escape(report['split'])}</b>: "
        f"{report['n_images']} real images, {report['n_captions']} captions, one generated image per real image (seed {report['seed']}); "
        f"floors against {report['n_train_images_for_floors']} training images<br>"
        f"feature network: {html.escape(network['name'])}, <code>{html.escape(network['path'])}</code>, {network['num_features']} features<br>"
        f"FID/KID features: {html.escape(report.get('fid_kid_features', 'the evaluator'))}<br>"
        f"versions: {html.escape(', '.join(f'{k} {v}' for k, v in report['versions'].items()))}</p>",
        "<h2>Metrics</h2><p>The real floor is the same metric between real images: for FID/KID, one half of this split's real "
        "images against the other half (the generated side is the twins of that other half, so both sides have the same size "
        "and caption mix); for PSNR/SSIM, two real images of one caption; for the text-image figures and diversity, this "
        "split's real images; for copying, this split's real images against the training images. R-precision and retrieval "
        f"rank against all {report['n_candidate_captions']} captions of the dataset.</p>",
        metric_table(report),
        "<h2>Samples</h2><p>Each row: generated images for one caption, the real reference in the last column.</p>",
        sample_grids(data),
        "<h2>Nearest training images</h2><p>Each generated image beside the training image closest to it in feature space.</p>",
        nearest_neighbour_strips(data),
        "<h2>Training curves</h2>",
        training_curves(model_dir),
    ]
    if "shapes_judge" in report:
        sections += ["<h2>Shapes judge</h2>", confusion_tables(report["shapes_judge"])]
    if "styles" in report:
        sections += ["<h2>Styles</h2>", style_table(report["styles"])]
    if explanation is not None and "explanation" in report:
        sections.append(explanation_section(report, explanation))
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>limner evaluation</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    path.write_text(page)
