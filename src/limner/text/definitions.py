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

import re
from typing import Iterable

from limner.errors import ConfigError
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
    """The known words that a definition's words (plurals included, and each part of a hyphened word:
    "orange-colored") and word pairs name."""
    tokens = WORD.findall(definition)
    found = {words[pair] for pair in map(" ".join, zip(tokens, tokens[1:])) if pair in words}
    for token in tokens:
        for part in (token, *token.split("-")) if "-" in token else (token,):
            for form in (part, part.removesuffix("s"), part.removesuffix("es")):
                if form in words:
                    found.add(words[form])
                    break
    return found


# Where a definition's genus ("a small cube", what the thing is) gives way to its differentia ("with 1
# to 6 spots", how it differs from other cubes): the first of these words or punctuation marks.
DIFFERENTIA = frozenset(("that", "which", "who", "whose", "with", "without", "of", "for", "in", "on", "at", "from", "by",
                         "to", "into", "as", "having", "used", "made", "usually", "especially", "often"))


def genus(definition: str) -> str:
    """A definition's opening words up to its differentia: "a small cube with 1 to 6 spots" -> "a small
    cube"; "a deadly bomb that explodes ... with a large radius" -> "a deadly bomb"."""
    head = re.split(r"[,(:]", definition, maxsplit=1)[0]
    words = head.split()
    for i, word in enumerate(words):
        if i > 0 and word in DIFFERENTIA:
            return " ".join(words[:i])
    return " ".join(words)


def defined_names(wordnet: WordNet, known: Iterable[str], *, rounds: int = 1) -> dict[str, str]:
    """{name: known word} for every WordNet noun, not itself known, whose first sense is a thing read
    as one known shape or colour: its definition names exactly one (read_things). rounds > 1 reads on
    through what things are a kind of and the shapes read before (read_things)."""
    known = set(known)
    words = naming_words(wordnet, known)
    if not words:
        return {}
    read = read_things(wordnet, words, rounds=rounds)
    table = {}
    for name in sorted(wordnet.senses):
        if name in known or name in AS_WRITTEN:
            continue
        key = first_noun_sense(wordnet, name)
        if key in read:
            table[name] = read[key]
    return table


def read_things(wordnet: WordNet, words: dict[str, str], *, rounds: int = 1) -> dict[str, str]:
    """{synset key: known word} for WordNet's things (lexicon.THING_FIELDS): in the first round, those
    whose definition names exactly one known word through `words`; in each later round, the things
    still unread that are a kind of things read before, all read as one word ("crate": a kind of box,
    "a (usually rectangular) container"), or whose definition's genus (what it is, before how it
    differs) names exactly one shape read before ("die": "a small cube with 1 to 6 spots", a cube read
    as square by its "six equal squares"; not "big blue": "a ... bomb that explodes ... with a large
    radius")."""
    if rounds < 1:
        raise ConfigError(f"definitions are read in 1 round or more, got {rounds}")
    things = {key: synset for key, synset in wordnet.synsets.items()
              if key.startswith("n:") and synset.field in THING_FIELDS}
    read = {}
    for key, synset in things.items():
        found = named_in(synset.definition, words)
        if len(found) == 1:
            read[key] = found.pop()
    for _ in range(rounds - 1):
        shapes = {name: read[key] for key in read if things[key].field == SHAPE_FIELD for name in things[key].names}
        found_now = {}
        for key, synset in things.items():
            if key in read:
                continue
            found = {read[up] for up in synset.upward if up in read} | named_in(genus(synset.definition), shapes)
            if len(found) == 1:
                found_now[key] = found.pop()
        if not found_now:
            break
        read.update(found_now)
    return read
