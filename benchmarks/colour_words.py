"""Does the language model know the everyday colour words? A text-only check, no generator.

For every everyday colour word of a wording set (benchmarks/prompt_sets, "color_synonyms":
crimson, emerald, navy, ...), two sentences are written with it and with each of the six
training colour names in its place ("a small {colour} circle in the top left", and a request
form). The word counts as known when its sentence's embedding (the encoder's pooled sentence,
cosine) lies nearest the sentence with its own colour name. A generator conditioned on that
encoder can hardly draw a colour its encoder does not place near the name it was trained on.

    python benchmarks/colour_words.py                                   # all-MiniLM-L6-v2, development set
    python benchmarks/colour_words.py --encoders all-MiniLM-L6-v2 /path/to/all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from limner.text.base import unit_sentences
from limner.text.huggingface import HuggingFaceTextEncoder

SETS = Path(__file__).parent / "prompt_sets"
TEMPLATES = ("a small {} circle in the top left", "Could you please draw a large {} square in the very middle?")


@torch.no_grad()
def known_colour_words(encoder: HuggingFaceTextEncoder, wording: dict) -> tuple[int, int, list[str]]:
    """(words placed nearest their own colour, words asked, 'word->colour read' for each miss), over both templates."""
    names = list(wording["color"])
    right, asked, misses = 0, 0, []
    for template in TEMPLATES:
        anchors = unit_sentences(encoder, [template.format(name) for name in names])
        for colour, words in wording["color_synonyms"].items():
            nearest = (unit_sentences(encoder, [template.format(word) for word in words]) @ anchors.T).argmax(1).tolist()
            for word, index in zip(words, nearest):
                asked += 1
                right += names[index] == colour
                if names[index] != colour:
                    misses.append(f"{word}->{names[index]}")
    return right, asked, misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["all-MiniLM-L6-v2"], help="names or local paths of text encoders")
    parser.add_argument("--set", default="wording_development.json", help="a file of benchmarks/prompt_sets")
    args = parser.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    wording = json.loads((SETS / args.set).read_text())
    for name in args.encoders:
        right, asked, misses = known_colour_words(HuggingFaceTextEncoder(name), wording)
        print(f"{name}: {right}/{asked} colour words nearest their own colour ({args.set}); missed: {', '.join(misses) or 'none'}")


if __name__ == "__main__":
    main()
