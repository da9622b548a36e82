"""Whole sentences and everyday colour words: does a shapes model draw what people type?

Reads benchmarks/prompt_sets/wording_development.json (settings may be chosen on it)
and, with --kept-aside, the kept-aside sets wording_kept_aside.json and wording_kept_aside_2.json
(the second written after the first had been read once; each read once for the setting it judges);
--third-kept-aside reads wording_kept_aside_3.json (written before the relevance floor was
tried; read once, for the filler words, with and without them); --fourth-kept-aside reads
wording_kept_aside_4.json (written before the WordNet lexicon was built; read once, for it);
--fifth-kept-aside reads wording_kept_aside_5.json (written before the modifier rule; read once, for the colour
survey's names, with and without); --sixth-kept-aside reads wording_kept_aside_6.json (written before general
shape names were read as their known kind; read once, for them); --seventh-kept-aside reads
wording_kept_aside_7.json (written before nouns were read by their definitions; read once, for them);
--eighth-kept-aside reads wording_kept_aside_8.json (written after that, before any further rule; to be
read once, for the next setting that wins). Each set
words all 180 compositions once as whole sentences (requests, sentences that begin
with the place, filler words, other nouns for the shapes), then the same sentences
with colour words other than the six training names, and prints the shapes judge's
all-four and per-attribute accuracy for each, beside the canonical held-out captions.

    python benchmarks/wording.py --model-dir outputs/benchmarks/shapes_gan/all-MiniLM-L6-v2
    python benchmarks/wording.py --model-dir ... --kept-aside       # the final, blind read
    python benchmarks/wording.py --model-dir ... --grid             # anchored settings on the development set
    python benchmarks/wording.py --model-dir ... --floors 0 0.2 0.3 # relevance floors on the development set
    python benchmarks/wording.py --model-dir ... --fillers          # without and with filler words, the same
    python benchmarks/wording.py --model-dir ... --lexicons 1:2 2:2  # without and with WordNet's other names (depth:senses)
    python benchmarks/wording.py --model-dir ... --modifiers        # without and with new words before a known word dropped
    python benchmarks/wording.py --model-dir ... --colour-names     # without and with the colour survey's names
    python benchmarks/wording.py --model-dir ... --definitions      # without and with nouns read by their definitions

--grid reads the development set with the model's anchored text encoder rebuilt at every
context layer (none: input embeddings) and anchor margin, from the model's own training
captions (a model whose training captions read the same either way, as the shapes captions
do, needs no retraining for it), 4 images per caption: how the shapes preset's setting was chosen.
--floors does the same for the relevance floor (a new word nearer no known word than the floor
weighs nothing), at the model's own context layer and margin; --fillers for filler words
(limner.text.filler: request verbs, function words, nouns for a picture) as known words that
weigh nothing; --lexicons for other names of the known words from WordNet (limner.text.lexicon),
at each depth (links) and number of each known word's senses; --modifiers for dropping a new word
written right before a known one ("tomato red" -> "red"); --colour-names for colour names read as
the known colour nearest them in colour (limner.text.colour_names); --general-shapes for general
shape names read as their single known shape; --definitions for nouns read by the one known shape or
colour their WordNet definition names (limner.text.definitions). --floor F, --filler, --lexicon D:S,
--modifier, --colour-name, --general-shape and --definition read every set with that setting (the
model's own otherwise).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from limner.data import shapes
from limner.metrics import shapes_accuracy
from limner.pipelines import TextToImagePipeline
from limner.text import AnchoredWordEncoder
from limner.text.filler import PROMPT_FILLER
from limner.text.lexicon import DEFAULT_DEPTH, DEFAULT_SENSES, WordNet
from limner.training.data import model_training_captions

PROMPT_SETS = Path(__file__).parent / "prompt_sets"
# settings may be chosen on these; the second (three words per attribute) written before any rule past the definitions
DEVELOPMENT = ("development", "development_2")
KEPT_ASIDE = ("kept_aside", "kept_aside_2")  # the second written after the first had been read once
# the later kept-aside sets, each read by its own flag (--third-kept-aside, ...): name -> what it was written before
# and what it was read for
LATER_KEPT_ASIDE = {
    "third": ("kept_aside_3", "written before the relevance floor was tried; read once, for the filler words"),
    "fourth": ("kept_aside_4", "written before the WordNet lexicon; read once, for it"),
    "fifth": ("kept_aside_5", "written before the modifier rule; read once, for the colour survey's names"),
    "sixth": ("kept_aside_6", "written before general shape names were read as their known kind; read once, for them"),
    "seventh": ("kept_aside_7", "written before nouns were read by their definitions; read once, for them"),
    "eighth": ("kept_aside_8", "written after the definitions were adopted, before any further rule; "
                               "read once, for definitions read in rounds"),
    "ninth": ("kept_aside_9", "written after definitions in rounds were adopted, before any further rule; "
                              "to be read once, for the next setting that wins"),
}
SETS = {name: PROMPT_SETS / f"wording_{name}.json"
        for name in (*DEVELOPMENT, *KEPT_ASIDE, *(name for name, _ in LATER_KEPT_ASIDE.values()))}


def worded(spec: dict, *, colour_synonyms: bool) -> list[tuple[str, shapes.Composition]]:
    """Every composition once, through the templates in turn; where an attribute has several
    words, compositions take them in turn: every fifth composition the next word (the first sets), or,
    where spec["words_in_turn"] is "per value", each value's compositions its words one after another
    (so that no word lines up with another attribute). colour_synonyms: the colour words of
    spec["color_synonyms"]."""
    colours = spec["color_synonyms"] if colour_synonyms else spec["color"]
    per_value = spec.get("words_in_turn") == "per value"
    seen: Counter = Counter()
    targets = []
    for i, composition in enumerate(shapes.all_compositions()):
        template = spec["templates"][i % len(spec["templates"])]

        def pick(words: list[str], value: str) -> str:
            seen[value] += 1
            turn = seen[value] - 1 if per_value else i // len(spec["templates"])
            return words[turn % len(words)]

        prompt = template.format(size=pick(spec["size"][composition.size], f"size {composition.size}"),
                                 color=pick(colours[composition.color], f"color {composition.color}"),
                                 shape=pick(spec["shape"][composition.shape], f"shape {composition.shape}"),
                                 position=pick(spec["position"][composition.position], f"position {composition.position}"))
        targets.append((prompt, composition))
    return targets


def wording_sets(name: str) -> dict[str, list[tuple[str, shapes.Composition]]]:
    """{"sentences": ..., "colour_synonyms": ...} of one prompt set ("development" or "kept_aside")."""
    spec = json.loads(SETS[name].read_text())
    return {"sentences": worded(spec, colour_synonyms=False), "colour_synonyms": worded(spec, colour_synonyms=True)}


def evaluate_wording(pipe: TextToImagePipeline, names: tuple[str, ...], *, images_per_caption: int, seed: int = 5) -> dict[str, dict]:
    """The judge's accuracy on each set of each named prompt set: {"development/sentences": {...}, ...}."""
    return {f"{name}/{kind}": shapes_accuracy(pipe, targets, images_per_caption=images_per_caption, seed=seed)
            for name in names for kind, targets in wording_sets(name).items()}


GRID_LAYERS = (None, 1, 2, 3, 4, 5)
GRID_MARGINS = (0.15, 0.05, 0.0)
OWN = "own"  # a lexicon setting: the model's own table, as saved


@dataclass(frozen=True)
class Reading:
    """How an anchored encoder is rebuilt to read prompts (the model's temperature kept)."""
    layer: int | None
    margin: float
    floor: float
    filler: bool = False
    lexicon: str | None = None  # "D:S": WordNet's other names, D links deep from each known word's first S senses; OWN
    modifiers: bool = False
    colour_names: bool = False
    general_shapes: bool = False
    definitions: bool = False
    definition_rounds: int = 1

    def row(self) -> str:
        on = lambda flag: "on" if flag else "off"  # noqa: E731
        return (f"{'none' if self.layer is None else self.layer:>5} {self.margin:>6} {self.floor:>5} {on(self.filler):>6} "
                f"{self.lexicon or 'off':>7} {on(self.modifiers):>9} {on(self.colour_names):>7} {on(self.general_shapes):>7} "
                f"{(self.definition_rounds if self.definitions else 'off'):>11}")


READING_HEADER = f"{'layer':>5} {'margin':>6} {'floor':>5} {'filler':>6} {'lexicon':>7} {'modifiers':>9} {'colours':>7} {'shapes':>7} {'definitions':>11}"


def grid(pipe: TextToImagePipeline, model_dir: str, images_per_caption: int, readings: list[Reading]) -> None:
    """The development set under each reading, and shapes_gan.py's development rewordings (synonyms in
    caption-like phrases), which a reading must not lose."""
    from shapes_gan import development_paraphrases  # shapes_gan imports this module: only here

    base = pipe.text_encoder
    captions = model_training_captions(model_dir, limit=100_000)
    canonical = base.encode(captions).sentence
    sets = "  ".join(f"{name + ' sentences':>{len(name) + 10}}  {name + ' colours':>{len(name) + 8}} (colour)" for name in DEVELOPMENT)
    print(f"{READING_HEADER}  {'training captions (min cos)':>27}  {sets}  development rewordings all-four")
    for reading in readings:
        pipe.text_encoder = rebuilt_encoder(base, captions, reading)
        same = float((pipe.text_encoder.encode(captions).sentence * canonical).sum(1).min())
        scores = evaluate_wording(pipe, DEVELOPMENT, images_per_caption=images_per_caption)
        rewordings = shapes_accuracy(pipe, development_paraphrases(), images_per_caption=images_per_caption, seed=4)
        sets = "  ".join(f"{scores[f'{name}/sentences']['all']:>{len(name) + 10}.3f}  "
                         f"{scores[f'{name}/colour_synonyms']['all']:>{len(name) + 8}.3f} ({scores[f'{name}/colour_synonyms']['color']:.3f})"
                         for name in DEVELOPMENT)
        print(f"{reading.row()}  {same:>27.4f}  {sets}  {rewordings['all']:>31.3f}", flush=True)
    pipe.text_encoder = base


def rebuilt_encoder(base: AnchoredWordEncoder, captions: list[str], reading: Reading) -> AnchoredWordEncoder:
    """The model's anchored encoder built again from its training captions to read as `reading` says:
    filler: with limner.text.filler's words as known words that weigh nothing; lexicon "D:S": with
    WordNet's other names for the known words (OWN: the model's own table); modifiers: a new word
    right before a known one dropped; colour_names: the colour survey's names read as the nearest
    known colour; general_shapes: general shape names read as their single known shape; definitions:
    nouns read by the one known shape or colour their definition names (the last three on top of the
    lexicon, OWN included)."""
    depth, senses = map(int, reading.lexicon.split(":")) if reading.lexicon not in (None, OWN) else (DEFAULT_DEPTH, DEFAULT_SENSES)
    use_wordnet = reading.lexicon not in (None, OWN) or reading.general_shapes or reading.definitions
    encoder = AnchoredWordEncoder.from_captions(captions, base.name_or_path, temperature=base.temperature,
                                                margin=reading.margin, context_layer=reading.layer, floor=reading.floor,
                                                filler=PROMPT_FILLER if reading.filler else (),
                                                lexicon=wordnet() if use_wordnet else None, lexicon_depth=depth,
                                                lexicon_senses=senses, modifiers=reading.modifiers,
                                                colour_names=reading.colour_names, general_shapes=reading.general_shapes,
                                                definitions=reading.definitions, definition_rounds=reading.definition_rounds)
    if reading.lexicon == OWN:
        encoder.lexicon = {**base.lexicon, **encoder.lexicon}
    weighted = lambda vocabulary: {token: weight for token, weight in vocabulary.items() if weight}  # noqa: E731 (filler weighs 0)
    if weighted(encoder.vocabulary) != weighted(base.vocabulary):
        raise SystemExit("the training captions found give another vocabulary than the model's: is its dataset the one it was trained on?")
    return encoder


def wordnet(loaded: list = []) -> WordNet:  # noqa: B006 (read once per run)
    if not loaded:
        loaded.append(WordNet.find())
    return loaded[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a shapes model (e.g. from benchmarks/shapes_gan.py)")
    parser.add_argument("--kept-aside", action="store_true", help="also read the kept-aside sets (once, at the end)")
    for ordinal, (_, history) in LATER_KEPT_ASIDE.items():
        parser.add_argument(f"--{ordinal}-kept-aside", action="store_true", help=f"also read the {ordinal} kept-aside set ({history})")
    parser.add_argument("--images-per-caption", type=int, default=10)
    parser.add_argument("--grid", action="store_true", help="the development set under each anchored setting (4 images per caption)")
    parser.add_argument("--grid-images", type=int, default=4, help="images per caption in the grids (--grid, --floors, ...)")
    parser.add_argument("--floors", type=float, nargs="+", help="the development set under each relevance floor (4 images per caption)")
    parser.add_argument("--floor", type=float, help="read every set with this relevance floor instead of the model's own")
    parser.add_argument("--fillers", action="store_true",
                        help="the development set without and with filler words (limner.text.filler) as known words that weigh nothing")
    parser.add_argument("--filler", action="store_true", help="read every set with the filler words as known words that weigh nothing")
    parser.add_argument("--lexicons", nargs="+", metavar="DEPTH:SENSES",
                        help="the development set without and with WordNet's other names at each setting (4 images per caption)")
    parser.add_argument("--lexicon", metavar="DEPTH:SENSES", help="read every set with WordNet's other names at this setting")
    parser.add_argument("--modifiers", action="store_true",
                        help="the development set without and with new words right before a known word dropped (4 images per caption)")
    parser.add_argument("--modifier", action="store_true", help="read every set with new words right before a known word dropped")
    parser.add_argument("--colour-names", action="store_true",
                        help="the development set without and with the colour survey's names read as the nearest known colour (4 images per caption)")
    parser.add_argument("--colour-name", action="store_true", help="read every set with the colour survey's names read as the nearest known colour")
    parser.add_argument("--general-shapes", action="store_true",
                        help="the development set without and with general shape names read as their single known shape "
                             "(4 images per caption; colour names on in both)")
    parser.add_argument("--general-shape", action="store_true", help="read every set with general shape names read as their known shape")
    parser.add_argument("--definitions", action="store_true",
                        help="the development set without and with nouns read by the known shape or colour their definition names "
                             "(4 images per caption; colour names and general shapes on in both)")
    parser.add_argument("--definition", action="store_true",
                        help="read every set with nouns read by the known shape or colour their definition names")
    parser.add_argument("--definition-rounds", type=int, nargs="+", metavar="ROUNDS",
                        help="the development sets with the model's own reading, then with definitions read in each number "
                             "of rounds (2: also through what a thing is a kind of; 4 images per caption)")
    parser.add_argument("--definition-round", type=int, metavar="ROUNDS",
                        help="read every set with definitions read in this many rounds")
    args = parser.parse_args()
    logging.getLogger("limner").setLevel(logging.ERROR)  # new words warn once per prompt
    pipe = TextToImagePipeline.from_pretrained(args.model_dir)
    base = pipe.text_encoder
    grids = (args.grid, args.floors, args.fillers, args.lexicons, args.modifiers, args.colour_names, args.general_shapes,
             args.definitions, args.definition_rounds)
    settings = (args.floor is not None, args.filler, args.lexicon, args.modifier, args.colour_name, args.general_shape,
                args.definition, args.definition_round)
    if any(grids + settings) and not isinstance(base, AnchoredWordEncoder):
        raise SystemExit("--grid, --floors, --fillers, --lexicons, --modifiers, --colour-names, --general-shapes, --definitions, --definition-rounds and the settings "
                         f"they try rebuild an anchored text encoder; {args.model_dir} reads captions with {type(base).__name__}")
    if args.grid:
        return grid(pipe, args.model_dir, args.grid_images, [Reading(layer, margin, base.floor) for layer in GRID_LAYERS for margin in GRID_MARGINS])
    own = Reading(base.context_layer, base.margin, base.floor)
    if args.floors:
        return grid(pipe, args.model_dir, args.grid_images, [replace(own, floor=floor) for floor in args.floors])
    if args.fillers:
        return grid(pipe, args.model_dir, args.grid_images, [replace(own, filler=on) for on in (False, True)])
    own = replace(own, filler=has_filler(base))
    if args.lexicons:
        return grid(pipe, args.model_dir, args.grid_images, [replace(own, lexicon=lexicon) for lexicon in (None, *args.lexicons)])
    own = replace(own, lexicon=args.lexicon or (OWN if base.lexicon else None))
    if args.modifiers:
        return grid(pipe, args.model_dir, args.grid_images, [replace(own, modifiers=on) for on in (False, True)])
    own = replace(own, modifiers=base.modifiers)
    if args.colour_names:
        return grid(pipe, args.model_dir, args.grid_images, [replace(own, colour_names=on) for on in (False, True)])
    if args.general_shapes:
        return grid(pipe, args.model_dir, args.grid_images, [replace(own, colour_names=True, general_shapes=on) for on in (False, True)])
    if args.definitions:
        return grid(pipe, args.model_dir, args.grid_images, [replace(own, colour_names=True, general_shapes=True, definitions=on) for on in (False, True)])
    if args.definition_rounds:
        return grid(pipe, args.model_dir, args.grid_images, [replace(own, colour_names=True, general_shapes=True),
                                              *(replace(own, colour_names=True, general_shapes=True, definitions=True, definition_rounds=rounds)
                                                for rounds in args.definition_rounds)])
    definition = args.definition or args.definition_round is not None
    if any(settings):
        captions = model_training_captions(args.model_dir, limit=100_000)
        reading = replace(own, floor=base.floor if args.floor is None else args.floor, filler=args.filler or own.filler,
                          modifiers=args.modifier or own.modifiers, colour_names=args.colour_name or args.general_shape or definition,
                          general_shapes=args.general_shape or definition, definitions=definition,
                          definition_rounds=args.definition_round or 1)
        pipe.text_encoder = rebuilt_encoder(base, captions, reading)
        print(f"{READING_HEADER}\n{reading.row()}  (lexicon own: the model's saved table, colour names, general shapes and "
              f"definitions added where on; the model's own relevance floor: {base.floor})")
    names = (*DEVELOPMENT, *(KEPT_ASIDE if args.kept_aside else ()),
             *(name for ordinal, (name, _) in LATER_KEPT_ASIDE.items() if getattr(args, f"{ordinal}_kept_aside")))
    held_out = [(c.caption, c) for c in shapes.held_out_compositions()]
    scores = {"held_out": shapes_accuracy(pipe, held_out, images_per_caption=args.images_per_caption, seed=2),
              **evaluate_wording(pipe, names, images_per_caption=args.images_per_caption)}
    for name, score in scores.items():
        detail = "  ".join(f"{k} {score[k]:.3f}" for k in shapes.ATTRIBUTES)
        print(f"{name:<28} all-four {score['all']:.3f}   ({detail}; {score['images']} images)")
    for prompt, _ in wording_sets(names[-1])["colour_synonyms"][:3]:
        print(f"  e.g. {prompt!r}")


def has_filler(encoder: AnchoredWordEncoder) -> bool:
    """Whether the model's encoder was built with filler words (known words that weigh nothing)."""
    return any(weight == 0 and token in PROMPT_FILLER for token, weight in encoder.vocabulary.items())


if __name__ == "__main__":
    main()
