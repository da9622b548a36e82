"""Emoji concepts asked in other words: an OpenMoji tag instead of the CLDR name.

People do not type "face with tears of joy" but "laughing". For every unseen-combination
test image whose concept has an OpenMoji tag that shares no word with the concept's name
(the first such tag in OpenMoji's order: a rule fixed before any measurement), the model
draws `--images` images of the canonical caption "{name}, {style} style" and as many of the
tag-worded "{tag}, {style} style". The evaluator reads each image's concept: accuracy (its
concept's name ranked first among all concept names of the corpus) and R-precision (its name
against 99 others drawn at random). Printed for the development and the blind half of the
concepts (cut by a hash of the name, as benchmarks/guidance.py cuts them), with the ratio
tag-worded / canonical (target: at least 70%). Beside it, the ceiling that the tags' own ambiguity
sets: a tag that OpenMoji gives to k concepts ("space": astronaut, milky way, moon, ...) names its
concept one time in k however well the words are read, so the mean of 1/k over the prompts bounds
what any model can reach by the tag alone, as a share of what it reaches by the name (the
bound is generous: it counts only OpenMoji's tags, not the names that contain the same word).
And a text-only reading: how often the model's own text encoder puts the tag nearest a phrase
of its concept, among all concept names and the tags `tag_captions: --taught-limit` teaches
(cosine of sentence embeddings; the wording test tags are never in that table).
The wording test tag is never a training caption,
even under `tag_captions`; a less blind check beside it asks each image by a tag that
`tag_captions: --taught-limit` does teach (the first of them that shares no word with the name).

    python benchmarks/emoji_wording.py --model-dir outputs/benchmarks/emoji_styles_tied_hour/model \\
        --evaluator-dir outputs/bench/evaluator
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from corpus_cuts import concept_half, read_split_rows  # benchmarks/ is on the path when run as a script
from machine import sgemm_gflops

from limner.data.builders import builtin_data_dir
from limner.data.emoji_styles import taught_tags, wording_test_tag, words_of
from limner.metrics.alignment import r_precision
from limner.pipelines import DualEncoderPipeline, TextToImagePipeline
from limner.text.base import unit_sentences

HALVES = ("development", "blind")


def other_word(row: dict) -> str | None:
    """The image's wording test tag: the first of its OpenMoji tags that shares no word with its
    concept's name (never a training caption, even under tag_captions); None without one."""
    return wording_test_tag(row["concept"], row.get("tags") or [])


def taught_word(row: dict, limit: int) -> str | None:
    """A tag that `tag_captions: limit` teaches: the first of the image's tag captions whose tag shares
    no word with the concept's name (a less blind check than the wording test tag: did the tags learn?)."""
    name = words_of(row["concept"])
    return next((tag for tag in taught_tags(row, limit) if words_of(tag) and not words_of(tag) & name), None)


def tag_holders(data_dir: Path) -> dict[str, set[str]]:
    """Every OpenMoji tag of the corpus (lower-case) -> the concepts that carry it."""
    holders: dict[str, set[str]] = {}
    for split in ("train", "test"):
        for row in read_split_rows(data_dir, split):
            for tag in row.get("tags") or []:
                holders.setdefault(tag.strip().lower(), set()).add(row["concept"])
    return holders


def ambiguity_ceiling(tags: list[str], holders: dict[str, set[str]]) -> float:
    """The mean of 1/k over the prompts' tags, each carried by k concepts: the share of prompts
    that the tag alone can resolve to their concept."""
    return round(sum(1 / max(1, len(holders.get(tag.strip().lower(), ()))) for tag in tags) / len(tags), 3) if tags else 0.0


def phrase_table(data_dir: Path, taught_limit: int) -> tuple[list[str], list[str]]:
    """Every concept name and every tag that `tag_captions: taught_limit` teaches, each with its concept."""
    phrases: dict[tuple[str, str], None] = {}
    for split in ("train", "test"):
        for row in read_split_rows(data_dir, split):
            phrases[(row["concept"], row["concept"])] = None
            for tag in taught_tags(row, taught_limit):
                phrases[(tag, row["concept"])] = None
    return [phrase for phrase, _ in phrases], [concept for _, concept in phrases]


@torch.no_grad()
def text_reading(tags: list[str], concepts: list[str], table: tuple[list[str], list[str]], encoder) -> float:
    """The share of tags whose nearest phrase of the table (cosine of the encoder's sentence
    embeddings) belongs to the tag's own concept."""
    phrases, owners = table
    nearest = (unit_sentences(encoder, tags) @ unit_sentences(encoder, phrases).T).argmax(1).tolist()
    return round(sum(owners[i] == concept for i, concept in zip(nearest, concepts)) / len(tags), 3) if tags else 0.0


def worded_rows(data_dir: Path, taught_limit: int) -> list[dict]:
    """The unseen-combination test rows with a usable tag, each with its prompts and its half."""
    rows = []
    for row in read_split_rows(data_dir, "test"):
        tag, taught = other_word(row), taught_word(row, taught_limit)
        if row.get("split_kind") == "unseen_combination" and tag:
            rows.append({"concept": row["concept"], "style": row["style"], "tag": tag, "half": concept_half(row["concept"]),
                         "canonical": f"{row['concept']}, {row['style']} style", "tagged": f"{tag}, {row['style']} style",
                         "taught": f"{taught}, {row['style']} style" if taught else None})
    return rows


@torch.no_grad()
def concept_figures(pipe: TextToImagePipeline, evaluator: DualEncoderPipeline, prompts: list[str], concept_ids: torch.Tensor,
                    concept_table: torch.Tensor, *, images: int, seed: int) -> dict[str, float]:
    drawn = pipe.generate_tensors(prompts, num_images_per_prompt=images, seed=seed)  # grouped by prompt
    vectors = evaluator.model.embed_features(evaluator.model.pooled_features(drawn))
    ids = concept_ids.repeat_interleave(images)
    return {"concept_accuracy": round(((vectors @ concept_table.T).argmax(1) == ids).float().mean().item(), 4),
            "concept_r_precision": r_precision(vectors, ids, concept_table, seed=seed)["mean"]}


def half_figures(chosen: list[dict], pipe, evaluator, index: dict, concept_table: torch.Tensor, args) -> dict:
    """One half's figures: canonical and tagged prompts of every row, and taught against canonical where a row has a taught tag."""
    def figures(subset: list[dict], kind: str) -> dict:
        ids = torch.tensor([index[row["concept"]] for row in subset])
        return concept_figures(pipe, evaluator, [row[kind] for row in subset], ids, concept_table, images=args.images, seed=args.seed)

    result = {"prompts": len(chosen), "examples": [[row["canonical"], row["tagged"]] for row in chosen[:5]],
              "canonical": figures(chosen, "canonical"), "tagged": figures(chosen, "tagged")}
    canonical, tagged = result["canonical"], result["tagged"]
    result["ratio"] = {key: round(tagged[key] / canonical[key], 3) if canonical[key] else None for key in canonical}
    taught = [row for row in chosen if row["taught"]]
    result["taught"] = {"prompts": len(taught), "taught": figures(taught, "taught"), "canonical": figures(taught, "canonical")}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--evaluator-dir", required=True)
    parser.add_argument("--images", type=int, default=4, help="images per prompt")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--taught-limit", type=int, default=2, help="the tag_captions of the model, for the taught-tag check")
    parser.add_argument("--output", default=None, help="JSON of the figures (default: MODEL_DIR/emoji_wording.json)")
    args = parser.parse_args()
    logging.getLogger("limner").setLevel(logging.ERROR)  # tags the model never saw warn once per prompt
    print(f"sgemm ceiling: {sgemm_gflops():.0f} GFLOP/s (2 threads)", flush=True)
    data_dir = builtin_data_dir("emoji-styles", args.resolution)
    pipe = TextToImagePipeline.from_pretrained(args.model_dir)
    evaluator = DualEncoderPipeline.from_pretrained(args.evaluator_dir, role="evaluator")
    concepts = sorted({row["concept"] for split in ("train", "test") for row in read_split_rows(data_dir, split)})
    index = {name: i for i, name in enumerate(concepts)}
    concept_table = evaluator.model.text_embedding(evaluator.text_encoder.encode(concepts).sentence)
    rows = worded_rows(data_dir, args.taught_limit)
    holders, table = tag_holders(data_dir), phrase_table(data_dir, args.taught_limit)
    results = {}
    for half in HALVES:
        chosen = [row for row in rows if row["half"] == half]
        results[half] = half_figures(chosen, pipe, evaluator, index, concept_table, args)
        results[half]["ambiguity_ceiling"] = ambiguity_ceiling([row["tag"] for row in chosen], holders)
        results[half]["text_reading"] = text_reading([row["tag"] for row in chosen], [row["concept"] for row in chosen], table,
                                                     pipe.text_encoder)
        print(f"{half:>11}: {len(chosen)} prompts x {args.images} images, {len(concepts)} concept names")
        for kind in ("canonical", "tagged"):
            figures = results[half][kind]
            print(f"  {kind:<9} concept accuracy {figures['concept_accuracy']:.3f}   R-precision {figures['concept_r_precision']:.3f}")
        ratio = results[half]["ratio"]
        print(f"  tagged / canonical: accuracy {ratio['concept_accuracy']:.0%}, R-precision {ratio['concept_r_precision']:.0%}"
              f"   (ceiling set by the tags' ambiguity: {results[half]['ambiguity_ceiling']:.0%})")
        print(f"  text only: the tag's nearest name or taught tag is its own concept's {results[half]['text_reading']:.0%} of the time")
        taught = results[half]["taught"]
        print(f"  taught tags ({taught['prompts']} prompts; a tag_captions: {args.taught_limit} model trained on them): concept "
              f"accuracy {taught['taught']['concept_accuracy']:.3f} against {taught['canonical']['concept_accuracy']:.3f} by "
              f"name, R-precision {taught['taught']['concept_r_precision']:.3f} against {taught['canonical']['concept_r_precision']:.3f}")
        for canonical_prompt, tagged_prompt in results[half]["examples"][:3]:
            print(f"    e.g. {canonical_prompt!r} -> {tagged_prompt!r}")
    Path(args.output or Path(args.model_dir) / "emoji_wording.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
