"""Names read by what their definition says they look like.

WordNet's synonym and "kind of" links say that a crimson is a red and an oval a circle, but most
names of things are not kinds of a shape or a colour: a box is a container, a ball a game
equipment, a clementine a mandarin. Their definitions still say what they look like: "a (usually
rectangular) container", "round object that is hit or thrown or kicked in games", "a variety of
mandarin orange". `defined_names(wordnet, known)` reads each noun's first sense's definition (its
gloss up to the first ";") and, where the words that name a known shape or colour in it name
exactly one known word, reads the noun as that word ("box" -> square, "ball" -> circle,
"clementine" -> orange). A definition that names two ("lemon: yellow oval fruit") says neither.

Only nouns whose first sense is a thing a picture shows (lexicon.THING_FIELDS: animals, artifacts,
foods, natural objects, plants, shapes, substances) are read, never an act, an attribute or a place
("standard deviation: the square root of the variance" is not a square). The table is the least
certain of the anchored encoder's readings: the WordNet lexicon, general shape names and the colour
survey decide wherever they name the same word.
"""

from __future__ import annotations

from typing import Iterable

from limner.text.colour_names import BASIC_COLOURS
from limner.text.lexicon import AS_WRITTEN, SHAPE_FIELD, THING_FIELDS, WORD, WordNet, first_noun_sense, general_shape_names


def shape_senses(wordnet: WordNet, known: Iterable[str]) -> dict[str, str]:
    """{synset key: known shape} for each known word whose first noun sense is a shape, and for the
    general names read as one (lexicon.general_shape_names: "rectangle" -> square)."""
    known = sorted(set(known))
    senses = {}
    for word in known:
        key = first_noun_sense(wordnet, word)
        if key is not None and wordnet.synsets[key].field == SHAPE_FIELD:
            senses[key] = word
    for name, word in general_shape_names(wordnet, known).items():
        senses.setdefault(first_noun_sense(wordnet, name), word)
    return senses


def naming_words(wordnet: WordNet, known: Iterable[str]) -> dict[str, str]:
    """{word: known word} for the words with which a definition names a known shape or colour: the
    shape senses' names, the adjectives WordNet derives from them ("rectangular" -> square, "round"
    -> circle), and the known basic colour terms as themselves."""
    known = set(known)
    senses = shape_senses(wordnet, known)
    words = {name: word for key, word in senses.items() for name in wordnet.synsets[key].names}
    for key, synset in wordnet.synsets.items():
        if not key.startswith("a:"):
            continue
        reached = {senses[up] for up in synset.upward if up in senses}
        if len(reached) == 1:
            for name in synset.names:
                words.setdefault(name, next(iter(reached)))
    words.update({word: word for word in known if word in BASIC_COLOURS})
    return words


def named_in(definition: str, words: dict[str, str]) -> set[str]:
    """The known words that a definition's words (plurals included) and word pairs name."""
    tokens = WORD.findall(definition)
    found = {words[pair] for pair in map(" ".join, zip(tokens, tokens[1:])) if pair in words}
    for token in tokens:
        for form in (token, token.removesuffix("s"), token.removesuffix("es")):
            if form in words:
                found.add(words[form])
                break
    return found


def defined_names(wordnet: WordNet, known: Iterable[str]) -> dict[str, str]:
    """{name: known word} for every WordNet noun, not itself known, whose first sense is a thing and
    whose definition names exactly one known shape or colour."""
    known = set(known)
    words = naming_words(wordnet, known)
    if not words:
        return {}
    table = {}
    for name in sorted(wordnet.senses):
        if name in known or name in AS_WRITTEN:
            continue
        key = first_noun_sense(wordnet, name)
        if key is None or wordnet.synsets[key].field not in THING_FIELDS:
            continue
        found = named_in(wordnet.synsets[key].definition, words)
        if len(found) == 1:
            table[name] = found.pop()
    return table
