"""Other names for the training captions' words, read from WordNet.

A language model's word table places many everyday names far from the word a caption uses:
among the shapes captions' words, MiniLM puts "maroon" nearest "purple" and "centre" is not
near "center" in every sentence. WordNet (Princeton's lexical database: synonym sets linked
by "is a kind of" and, for adjectives, "is similar to") says what such a word means: crimson
is a kind of red, little is similar to small, centre is another spelling of center.

`other_names(wordnet, known)` walks WordNet down from each known word's first senses to every
name within `depth` links, and keeps, for each such name, the known word it reaches in the fewest
links (a name that reaches two known words at once is left out). The result is a plain
{name: known word} table, built once from the training captions' words and saved with the
model, so that a trained model reads prompts without WordNet. `rewrite` replaces the names in a
prompt by their known words before the text encoder reads it; a known word is never rewritten,
so the training captions read exactly as before.

WordNet's database files (Debian/Ubuntu: `apt-get install wordnet-base`, which puts them in
/usr/share/wordnet; NLTK's `wordnet` corpus folder holds the same files) are read directly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from limner.errors import ConfigError
from limner.text.filler import PROMPT_FILLER

PARTS_OF_SPEECH = {"noun": "n", "adj": "a"}  # the parts that name what a picture shows
UPWARD = frozenset({"@", "@i"})  # hypernym, instance hypernym
SIMILAR, DERIVED = "&", "+"  # an adjective satellite's head ("smallish" -> small); an adjective's noun ("golden" -> gold)
SEARCHED = ("/usr/share/wordnet", "/usr/local/share/wordnet", "~/nltk_data/corpora/wordnet",
            "/usr/share/nltk_data/corpora/wordnet", "/usr/local/share/nltk_data/corpora/wordnet")
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install wordnet-base) or set LIMNER_WORDNET to its folder"
WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")
# Words that say where one thing is against another: WordNet gives them rare senses that lead to a
# place word ("near, nigh": of a horse's left side), and a prompt means them as themselves.
RELATION_WORDS = ("near", "far", "close", "next", "beside", "above", "below", "under", "over", "behind",
                  "between", "inside", "outside", "around", "across", "along", "against", "toward", "towards", "beyond")
# never read as another word: the relation words, and the words that ask for a picture (limner.text.filler)
AS_WRITTEN = frozenset(RELATION_WORDS + PROMPT_FILLER)
WORDNET = "wordnet"  # text_anchor_lexicon's name for "WordNet, wherever it is installed"
DEFAULT_DEPTH = 2
DEFAULT_SENSES = 3  # depth 2 and 3 senses: the best on the development set (benchmarks/wording.py --lexicons)
SHAPE_FIELD = "25"  # WordNet's lexicographer file noun.shape: two- and three-dimensional shapes
GENERAL_DEPTH = 3  # square -> rectangle -> parallelogram -> quadrilateral
QUOTED = re.compile(r'"[^"]*"')
# lexicographer files of things a picture shows with a shape or colour of their own: animals, artifacts,
# foods, natural objects, plants, shapes, substances (never acts, attributes, places, states ...)
THING_FIELDS = frozenset({"05", "06", "13", "17", "20", "25", "27"})


@dataclass(frozen=True)
class Synset:
    names: tuple[str, ...]  # lower case, words joined by spaces
    upward: tuple[str, ...]  # keys ("n:04962784") of the synsets this one is a kind of / similar to
    field: str = ""  # its lexicographer file's number ("25": noun.shape)
    definition: str = ""  # its gloss's first clause, lower case, without quoted examples


class WordNet:
    """WordNet's noun and adjective synsets, read from its database files (data.noun, index.noun, ...)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).expanduser()
        missing = [f"{kind}.{part}" for part in PARTS_OF_SPEECH for kind in ("index", "data")
                   if not (self.folder / f"{kind}.{part}").is_file()]
        if missing:
            raise ConfigError(f"{self.folder} is not a WordNet database folder: it lacks {', '.join(missing)}; {INSTALL_HINT}")
        self.synsets: dict[str, Synset] = {}
        by_part: dict[str, dict[str, list[str]]] = {}
        for part, letter in PARTS_OF_SPEECH.items():
            self._read_data(self.folder / f"data.{part}", letter)
            by_part[letter] = self._read_index(self.folder / f"index.{part}", letter)
        # name -> synset keys, most frequent first, the parts of speech taken in turn (noun 1, adjective 1, noun 2, ...)
        self.senses: dict[str, list[str]] = {name: interleave(*(part.get(name, []) for part in by_part.values()))
                                             for name in set().union(*by_part.values())}

    @classmethod
    def find(cls, where: str | None = None) -> "WordNet":
        """where: a folder, or None for $LIMNER_WORDNET and then the usual places."""
        candidates = [where] if where else [os.environ.get("LIMNER_WORDNET"), *SEARCHED]
        for folder in filter(None, candidates):
            if where or (Path(folder).expanduser() / "data.noun").is_file():
                return cls(folder)
        raise ConfigError(f"WordNet's database was not found in {', '.join(SEARCHED)}; {INSTALL_HINT}")

    def _read_data(self, path: Path, letter: str) -> None:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if line.startswith("  "):  # the licence header
                    continue
                try:
                    key, synset = parse_data_line(line, letter)
                except (ValueError, IndexError) as err:
                    raise ConfigError(f"{path}:{number}: not a WordNet data line ({err})") from err
                self.synsets[key] = synset

    def _read_index(self, path: Path, letter: str) -> dict[str, list[str]]:
        senses: dict[str, list[str]] = {}
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("  "):
                    continue
                fields = line.split()
                if len(fields) < 4:
                    continue
                count = int(fields[2])
                name = fields[0].replace("_", " ").lower()
                senses.setdefault(name, []).extend(f"{letter}:{offset}" for offset in fields[-count:])
        return senses


def interleave(*lists: list[str]) -> list[str]:
    longest = max(map(len, lists), default=0)
    return [items[i] for i in range(longest) for items in lists if i < len(items)]


def parse_data_line(line: str, letter: str) -> tuple[str, Synset]:
    """One line of data.noun / data.adj -> ("n:<offset>", Synset). The format: offset, lexicographer
    file, synset type ("s": an adjective satellite), word count (hex), word and lex id pairs, pointer
    count, pointers of four fields each (symbol, offset, part of speech, source/target), then "| gloss".
    Upward: hypernyms; a satellite's head (a head's own "&" lead down, to its satellites); an
    adjective's nouns (the colour adjectives hang from "chromatic", their nouns from "red" or "blue")."""
    fields = line.split(" | ", 1)[0].split()
    offset, words = fields[0], int(fields[3], 16)
    names = tuple(strip_marker(fields[4 + 2 * i]).replace("_", " ").lower() for i in range(words))
    at = 4 + 2 * words
    satellite = fields[2] == "s"
    upward = []
    for i in range(int(fields[at])):
        symbol, target, part = fields[at + 1 + 4 * i: at + 4 + 4 * i]
        part = "a" if part == "s" else part
        if (symbol in UPWARD or (symbol == SIMILAR and satellite)
                or (symbol == DERIVED and letter == "a" and part == "n")):
            upward.append(f"{part}:{target}")
    return f"{letter}:{offset}", Synset(names, tuple(dict.fromkeys(upward)), field=fields[1],
                                        definition=first_clause(line.split(" | ", 1)[1] if " | " in line else ""))


def first_clause(gloss: str) -> str:
    """A gloss's definition: up to its first ";" (what follows is more definition or quoted examples)."""
    return QUOTED.sub(" ", gloss.split(";", 1)[0]).strip().lower()


def strip_marker(word: str) -> str:
    """Adjectives may carry a syntactic marker: "galore(ip)" -> "galore"."""
    return word.split("(", 1)[0]


def other_names(wordnet: WordNet, known: Iterable[str], *, depth: int = DEFAULT_DEPTH,
                senses: int = DEFAULT_SENSES) -> dict[str, str]:
    """{name: known word} for each WordNet name whose senses reach one of a known word's first
    `senses` senses within `depth` links upward (0: synonyms only). Known words and the words
    of AS_WRITTEN are never keys; a name that reaches two known words equally near is left out."""
    if depth < 0 or senses < 1:
        raise ConfigError(f"the lexicon's depth must be 0 or more and its senses 1 or more, got {depth} and {senses}")
    known = sorted(set(known))
    targets: dict[str, set[str]] = {}  # synset key -> the known words with that sense
    for word in known:
        for key in wordnet.senses.get(word, [])[:senses]:
            targets.setdefault(key, set()).add(word)
    candidates = names_below(wordnet, targets, depth)
    table = {}
    for name in sorted(candidates - set(known) - AS_WRITTEN):
        reached = nearest_known(wordnet, name, targets, depth)
        if reached is not None:
            table[name] = reached
    return table


def general_shape_names(wordnet: WordNet, known: Iterable[str], *, depth: int = GENERAL_DEPTH) -> dict[str, str]:
    """{general name: known shape} for each name of a shape WordNet places above exactly one known
    word's first noun sense, within `depth` hypernym links, where that sense is a shape (noun.shape)
    and the name's own first noun sense is the one above ("oval" -> circle, "quadrilateral" and
    "rectangle" -> square; "polygon" is above square and triangle both, so it is left out).
    Only shapes: WordNet's shapes form one taxonomy of figures, where its places and sizes do not
    ("position" is above "left" but not "top", "size" above the noun "large")."""
    known = sorted(set(known))
    below: dict[str, set[str]] = {}  # synset key -> the known shapes under it
    for word in known:
        sense = first_noun_sense(wordnet, word)
        if sense is None or wordnet.synsets[sense].field != SHAPE_FIELD:
            continue
        level, seen = [sense], {sense}
        for _ in range(depth):
            level = [up for key in level for up in wordnet.synsets[key].upward
                     if up.startswith("n:") and up in wordnet.synsets and up not in seen]
            seen.update(level)
            for key in level:
                below.setdefault(key, set()).add(word)
    table = {}
    for key, words in sorted(below.items()):
        if len(words) != 1:
            continue
        for name in wordnet.synsets[key].names:
            if name not in known and name not in AS_WRITTEN and first_noun_sense(wordnet, name) == key:
                table[name] = next(iter(words))
    return table


def first_noun_sense(wordnet: WordNet, name: str) -> str | None:
    return next((key for key in wordnet.senses.get(name, []) if key.startswith("n:") and key in wordnet.synsets), None)


def names_below(wordnet: WordNet, targets: dict[str, set[str]], depth: int) -> set[str]:
    """Every name of a synset within `depth` links below (or beside) one of `targets`."""
    downward: dict[str, list[str]] = {}
    for key, synset in wordnet.synsets.items():
        for up in synset.upward:
            downward.setdefault(up, []).append(key)
    seen, frontier = set(targets), list(targets)
    for _ in range(depth):
        frontier = [below for key in frontier for below in downward.get(key, []) if below not in seen]
        seen.update(frontier)
    return {name for key in seen if key in wordnet.synsets for name in wordnet.synsets[key].names}


def nearest_known(wordnet: WordNet, name: str, targets: dict[str, set[str]], depth: int) -> str | None:
    """The known word nearest `name`: fewest links up from any of its senses, then its most
    frequent sense; None when none is within `depth` or two known words tie."""
    best: tuple[int, int] | None = None
    reached: set[str] = set()
    for rank, start in enumerate(wordnet.senses.get(name, [])):
        level, seen = [start], {start}
        for links in range(depth + 1):  # level by level: every target at the first level that has one
            found = set().union(*(targets[key] for key in level if key in targets))
            if found:
                if best is None or (links, rank) < best:
                    best, reached = (links, rank), found
                elif (links, rank) == best:
                    reached |= found
                break
            level = [up for key in level if key in wordnet.synsets for up in wordnet.synsets[key].upward if up not in seen]
            seen.update(level)
    return next(iter(reached)) if len(reached) == 1 else None


def rewrite(prompt: str, table: dict[str, str], *, longest: int = 3) -> tuple[str, list[tuple[str, str]]]:
    """The prompt with each name in `table` (longest phrase first, up to `longest` words; a plural
    "-s"/"-es" read as its singular) replaced by its known word, and the (name, known word) pairs
    replaced. A name read as the word right before it goes, space and all ("round disc" -> "circle",
    not "circle circle": one thing named twice). Words outside the table are left as they are."""
    lower = prompt.lower()
    spans = [(m.start(), m.end()) for m in WORD.finditer(lower)]
    words = [lower[start:end] for start, end in spans]
    pieces, replaced, at, i = [], [], 0, 0
    before, before_end = None, 0  # the word before (as read) and where it ends in the prompt
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            phrase = " ".join(words[i:i + n])
            known = lookup(table, phrase)
            if known is not None:
                if known == before and prompt[before_end:spans[i][0]].isspace():
                    pieces.append(prompt[at:before_end])
                else:
                    pieces += [prompt[at:spans[i][0]], known]
                replaced.append((prompt[spans[i][0]:spans[i + n - 1][1]], known))
                at, i = spans[i + n - 1][1], i + n
                before, before_end = known, at
                break
        else:
            before, before_end = words[i], spans[i][1]
            i += 1
    return "".join(pieces) + prompt[at:], replaced


def without_modifiers(prompt: str, weight: Callable[[str], float | None]) -> tuple[str, list[str]]:
    """The prompt without each new word written right before a known word that says something
    and itself qualifies the known word after it ("tomato red circle" -> "red circle", "pretty
    big square" -> "big square"), and the dropped words (lower case). Such a word qualifies the
    known one; read on its own it pulls the prompt towards whatever known word the language
    model places nearest it ("tomato" is no colour of the six). A run of them goes word by word
    from the last. These stay: a new word before a single known word, which is its own attribute
    ("a plum circle", "upper left"); a hyphened word ("tomato-red", which may hold the known
    word); words apart (a comma between). weight(word): the known word's weight (0 for "a",
    "the" and the filler), None for a word the model never saw."""
    lower = prompt.lower()
    matches = list(WORD.finditer(lower))
    says = lambda match: (weight(match.group()) or 0) > 0  # noqa: E731
    dropped = [(first, after) for first, after, then in zip(matches, matches[1:], matches[2:])
               if "-" not in first.group() and weight(first.group()) is None and says(after) and says(then)
               and lower[first.end():after.start()].isspace() and lower[after.end():then.start()].isspace()]
    if not dropped:
        return prompt, []
    pieces, at = [], 0
    for first, after in dropped:
        pieces.append(prompt[at:first.start()])
        at = after.start()  # the space after it goes too
    shorter, more = without_modifiers("".join(pieces) + prompt[at:], weight)  # "deep tomato red": tomato, then deep
    return shorter, [first.group() for first, _ in dropped] + more


def lookup(table: dict[str, str], phrase: str) -> str | None:
    if phrase in table:
        return table[phrase]
    for suffix in ("es", "s"):
        if phrase.endswith(suffix) and phrase[:-len(suffix)] in table:
            return table[phrase[:-len(suffix)]]
    return None
