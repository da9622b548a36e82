"""The multi-style emoji corpus (`limner data emoji-styles`): the same concepts drawn by several
artists, joined on code points, captioned with and without their style, split so that a test
image asks for a concept in a style the model never saw it in.

    records   one per (concept, style) image
    captions  "{name}, {style} style" and "{name}" (one is drawn per step, so a style-free
              caption has several real images and the model must learn to vary)
    splits    seeded: ~5% of concepts held out entirely ("unseen_concept"); of the rest, ~15%
              lose one style to the test split ("unseen_combination"); everything else trains

Metadata columns besides file_name and text: concept, codepoints, style, category, tags (OpenMoji's
keywords, kept out of the captions so they can serve as unseen wordings), split_kind, license, source.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from limner.data.emoji_sources import PACKAGES, STYLES, SourceImage, cache_folder, fetch_tarballs, read_all
from limner.data.imagefolder import MAX_IMAGE_PIXELS
from limner.utils.images import to_rgb
from limner.errors import ConfigError, DataError, DependencyError

RESOLUTIONS = (32, 64, 128)
UNSEEN_CONCEPT_FRACTION = 0.05
UNSEEN_COMBINATION_FRACTION = 0.15
RENDER_SIZE = 256    # SVGs are drawn this large, then cropped to their content and resized
MARGIN = 1 / 32      # white border around the content, as a share of the side
TRAIN, UNSEEN_COMBINATION, UNSEEN_CONCEPT = "train", "unseen_combination", "unseen_concept"


def style_of(key: str) -> str:
    """The package key of a style: 'fluent flat' comes from the 'fluent' package."""
    return "fluent" if key.startswith("fluent") else key


def styled_caption(name: str, style: str) -> str:
    return f"{name}, {style} style"


def words_of(text: str) -> set[str]:
    """The lower-case words and numbers of a text."""
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def wording_test_tag(name: str, tags: list[str] | tuple[str, ...]) -> str | None:
    """The tag that measures wording (benchmarks/emoji_wording.py) and so never becomes a training
    caption: the first of the concept's OpenMoji tags that shares no word with its name; None without one."""
    own = words_of(name)
    return next((tag for tag in tags if isinstance(tag, str) and words_of(tag) and not words_of(tag) & own), None)


def taught_tags(columns: dict, limit: int) -> list[str]:
    """The first `limit` of an image's tags (its `tags` column), leaving out its concept's wording test tag."""
    tags = [t.strip() for t in columns.get("tags") or [] if isinstance(t, str) and t.strip()]
    held_out = wording_test_tag(str(columns.get("concept", "")), tags)
    return [tag for tag in tags if tag != held_out][:limit]


def tag_captions(columns: dict, limit: int) -> tuple[str, ...]:
    """Extra training captions from `taught_tags`: "{tag}, {style} style" (or "{tag}" without a style column)."""
    style = columns.get("style")
    return tuple(styled_caption(tag, style) if style else tag for tag in taught_tags(columns, limit))


@dataclass
class Concept:
    codepoints: str
    name: str
    category: str
    tags: tuple[str, ...] = ()
    images: dict[str, SourceImage] = field(default_factory=dict)  # style -> image


def join_concepts(images: list[SourceImage], names: dict[str, str], *, skip_invalid: bool = False
                  ) -> tuple[list[Concept], list[tuple[str, str]]]:
    """Concepts keyed by code points, each with its image per style; also (where, reason) of the
    images skipped. A concept without a name raises DataError (or, with skip_invalid, is skipped)."""
    grouped: dict[str, dict[str, SourceImage]] = defaultdict(dict)
    for image in images:
        grouped[image.codepoints].setdefault(image.style, image)
    concepts, skipped = [], []
    for codepoints in sorted(grouped):
        by_style = grouped[codepoints]
        name = (names.get(codepoints) or "").strip()
        if not name:
            where = next(iter(by_style.values())).where
            if not skip_invalid:
                raise DataError(f"{where}: the concept {codepoints} has no name in any set")
            skipped.extend((image.where, f"concept {codepoints} has no name") for image in by_style.values())
            continue
        described = [i for i in by_style.values() if i.category] + list(by_style.values())
        tags = next((i.tags for i in by_style.values() if i.tags), ())
        ordered = {style: by_style[style] for style in STYLES if style in by_style}
        concepts.append(Concept(codepoints, name, described[0].category or "", tags, ordered))
    return concepts, skipped


def assign_splits(concepts: list[Concept], seed: int) -> dict[tuple[str, str], str]:
    """(codepoints, style) -> train / unseen_combination / unseen_concept, from `seed` alone."""
    order = sorted(concepts, key=lambda c: c.codepoints)
    random.Random(seed).shuffle(order)
    held_concepts = order[: round(UNSEEN_CONCEPT_FRACTION * len(order))]
    rest = [c for c in order[len(held_concepts):] if len(c.images) >= 2]
    held_pairs = rest[: round(UNSEEN_COMBINATION_FRACTION * len(order))]
    chooser = random.Random(seed + 1)
    kinds = {(c.codepoints, s): TRAIN for c in concepts for s in c.images}
    for concept in held_concepts:
        kinds.update({(concept.codepoints, s): UNSEEN_CONCEPT for s in concept.images})
    for concept in held_pairs:
        kinds[(concept.codepoints, chooser.choice(sorted(concept.images)))] = UNSEEN_COMBINATION
    return kinds


def rasterize(image: SourceImage, resolution: int) -> Image.Image:
    """RGB (resolution, resolution): drawn, transparency over white, cropped to its content,
    centred on a white square with a small margin, resized. DataError names an image that fails."""
    try:
        if image.kind == "svg":
            import cairosvg

            png = cairosvg.svg2png(bytestring=image.data, output_width=RENDER_SIZE, output_height=RENDER_SIZE)
            picture = Image.open(io.BytesIO(png))
        else:
            picture = Image.open(io.BytesIO(image.data))
            if picture.size[0] * picture.size[1] > MAX_IMAGE_PIXELS:
                raise DataError(f"{image.where}: declares {picture.size[0]}x{picture.size[1]} pixels")
        picture.load()
    except DataError:
        raise
    except Exception as err:  # cairosvg raises parser errors of several libraries
        raise DataError(f"{image.where}: cannot draw this {image.kind.upper()} ({type(err).__name__}: {err})") from err
    return fit_square(to_rgb(picture), resolution)


def fit_square(picture: Image.Image, resolution: int) -> Image.Image:
    """The non-white content, centred on a white square with MARGIN, at `resolution`."""
    inverted = Image.eval(picture.convert("L"), lambda v: 255 - v)
    box = inverted.point(lambda v: 255 if v > 8 else 0).getbbox() or (0, 0, *picture.size)
    content = picture.crop(box)
    side = int(max(content.size) * (1 + 2 * MARGIN)) + 1
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(content, ((side - content.size[0]) // 2, (side - content.size[1]) // 2))
    return square.resize((resolution, resolution), Image.Resampling.LANCZOS)


def _rasterize_job(job: tuple[SourceImage, int]) -> tuple[bytes | None, str | None]:
    image, resolution = job
    try:
        buffer = io.BytesIO()
        rasterize(image, resolution).save(buffer, format="PNG")
        return buffer.getvalue(), None
    except DataError as err:
        return None, str(err)


def build_emoji_styles(out: str | Path, *, resolution: int = 64, seed: int = 0, skin_tones: bool = False,
                       skip_invalid: bool = False, tarballs: dict[str, Path] | None = None,
                       cache_dir: Path | None = None, workers: int | None = None, progress: bool = True) -> dict:
    """Write the corpus as an imagefolder at `out` (train/ and test/ with metadata.jsonl, README.md,
    dataset_info.json). `tarballs` maps 'google', 'twitter', 'openmoji', 'fluent' to npm tarballs;
    by default the pinned ones are fetched into `cache_dir`. Built aside and renamed into place:
    an error or interruption leaves nothing half-written at `out`."""
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"--resolution must be one of {RESOLUTIONS} for emoji-styles, got {resolution}")
    _require_cairosvg()
    if tarballs is None:
        tarballs = fetch_tarballs(cache_folder(cache_dir))
    missing = sorted(set(PACKAGES) - set(tarballs))
    if missing:
        raise ConfigError(f"tarballs missing for {missing}")
    images, names, unmatched = read_all(tarballs, skin_tones=skin_tones)
    concepts, skipped = join_concepts(images, names, skip_invalid=skip_invalid)
    kinds = assign_splits(concepts, seed)
    out = Path(out)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        counts = _write_splits(staging, concepts, kinds, resolution, skip_invalid, skipped, workers, progress)
        info = _info(concepts, kinds, counts, skipped, unmatched, resolution=resolution, seed=seed,
                     skin_tones=skin_tones, tarballs=tarballs)
        (staging / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
        (staging / "README.md").write_text(_readme(info))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def _require_cairosvg() -> None:
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError) as err:  # OSError: the package is there but libcairo is not
        raise DependencyError(f"emoji-styles rasterises SVGs with cairosvg and the cairo library ({err}): "
                              "pip install cairosvg; sudo apt-get install libcairo2") from err


def _write_splits(root: Path, concepts: list[Concept], kinds: dict, resolution: int, skip_invalid: bool,
                  skipped: list, workers: int | None, progress: bool) -> dict[str, int]:
    jobs = [(concept, style, image) for concept in concepts for style, image in concept.images.items()]
    handles = {}
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        handles[split] = open(root / split / "metadata.jsonl", "w", encoding="utf-8")
    counts = Counter()
    workers = workers or min(4, os.cpu_count() or 1)
    try:
        with ProcessPoolExecutor(workers) as pool, _cancel_on_error(pool):
            drawn = pool.map(_rasterize_job, [(image, resolution) for _, _, image in jobs], chunksize=16)
            for (concept, style, image), (png, error) in tqdm(zip(jobs, drawn), total=len(jobs), desc="drawing emoji", disable=not progress):
                if error is not None:
                    if not skip_invalid:
                        raise DataError(error)
                    skipped.append((image.where, error))
                    continue
                kind = kinds[(concept.codepoints, style)]
                split = "train" if kind == TRAIN else "test"
                file_name = f"{concept.codepoints}_{style.replace(' ', '-')}.png"
                (root / split / file_name).write_bytes(png)
                handles[split].write(json.dumps(_record(file_name, concept, style, kind), ensure_ascii=False) + "\n")
                counts[split] += 1
    finally:
        for handle in handles.values():
            handle.close()
    return dict(counts)


@contextmanager
def _cancel_on_error(pool: ProcessPoolExecutor):
    """Stop drawing the queued images at once when one fails (instead of drawing them all first)."""
    try:
        yield
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def _record(file_name: str, concept: Concept, style: str, kind: str) -> dict:
    package = PACKAGES[style_of(style)]
    return {
        "file_name": file_name,
        "text": [styled_caption(concept.name, style), concept.name],  # evaluation reads the first
        "concept": concept.name,
        "codepoints": concept.codepoints,
        "style": style,
        "category": concept.category,
        "tags": list(concept.tags),
        "split_kind": kind,
        "license": package.license,
        "source": f"{package.name}@{package.version}",
    }


def _info(concepts, kinds, counts, skipped, unmatched, *, resolution, seed, skin_tones, tarballs) -> dict:
    per_style = Counter(style for (_, style) in kinds)
    kind_counts = Counter(kinds.values())
    return {
        "name": "emoji-styles",
        "resolution": resolution,
        "seed": seed,
        "skin_tones": skin_tones,
        "splits": counts,
        "concepts": len(concepts),
        "concepts_in_all_styles": sum(len(c.images) == len(STYLES) for c in concepts),
        "images_per_style": {style: per_style[style] for style in STYLES},
        "split_kinds": {kind: kind_counts[kind] for kind in (TRAIN, UNSEEN_COMBINATION, UNSEEN_CONCEPT)},
        "unseen_concepts": sorted({c.name for c in concepts if kinds[(c.codepoints, next(iter(c.images)))] == UNSEEN_CONCEPT}),
        "styles": list(STYLES),
        "packages": {key: {"package": f"{p.name}@{p.version}", "tarball": Path(tarballs[key]).name, "sha256": p.sha256,
                           "license": p.license, "attribution": p.attribution} for key, p in PACKAGES.items()},
        "skipped": [f"{where}: {reason}" for where, reason in skipped],
        "fluent_files_without_a_concept": unmatched,
    }


def _readme(info: dict) -> str:
    lines = [
        "# emoji-styles", "",
        f"{info['concepts']} emoji concepts drawn in up to {len(info['styles'])} styles, {sum(info['splits'].values())} images "
        f"at {info['resolution']} px ({info['concepts_in_all_styles']} concepts in every style). Built by `limner data emoji-styles` "
        f"(seed {info['seed']}).", "",
        "| style | images | licence | source |", "|---|---|---|---|",
    ]
    for style in info["styles"]:
        package = info["packages"][style_of(style)]
        lines.append(f"| {style} | {info['images_per_style'][style]} | {package['license']} | {package['package']} |")
    lines += ["", "## Licences and attribution", "",
              "Each image keeps the licence of the set it comes from (the `license` column of metadata.jsonl):", ""]
    lines += [f"- {p['package']}: {p['license']}. {p['attribution']}." for p in info["packages"].values()]
    lines += ["", "OpenMoji images are CC BY-SA 4.0: derived images you share must carry the same licence.", ""]
    return "\n".join(lines)
