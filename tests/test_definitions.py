"""Nouns read by the one known shape or colour their definition names, on a tiny WordNet."""

import pytest

from limner.data import shapes
from limner.errors import ConfigError
from limner.text import AnchoredWordEncoder
from limner.text.definitions import defined_names, genus, naming_words
from limner.text.lexicon import WordNet, first_clause
from limner.training import build_train_config
from tests.test_lexicon import SHAPE, SHAPE_NOUNS, assert_reads_only_when_asked, write_wordnet

ARTIFACT, FOOD, ATTRIBUTE, COLOUR = "06", "13", "07", "07"
DEFINED_NOUNS = SHAPE_NOUNS + [  # (offset, names, pointers, lexicographer file, gloss)
    ("00000040", "box", [], ARTIFACT, 'a (usually rectangular) container; may have a lid; "he rummaged through a box of spare parts"'),
    ("00000041", "ball", [], ARTIFACT, "round object that is hit or thrown or kicked in games"),
    ("00000042", "cube", [], SHAPE, "a hexahedron with six equal squares as faces"),
    ("00000043", "dot", [], SHAPE, "a very small circular shape"),
    ("00000044", "lemon", [], FOOD, "yellow oval fruit with juicy acidic flesh"),  # names two: says neither
    ("00000045", "clementine", [], FOOD, "a variety of mandarin orange"),
    ("00000046", "standard_deviation", [], ATTRIBUTE, "the square root of the variance"),  # not a thing
    ("00000047", "crate", [("@", "00000040", "n")], ARTIFACT, "a rugged box (usually made of wood); used for shipping"),  # a box, not a shape
    ("00000049", "die", [], ARTIFACT, "a small cube with 1 to 6 spots on the faces"),  # a cube, itself read by its squares
    ("00000048", "tile", [], ARTIFACT, "a thin slab whose faces are rectangles"),
    ("00000053", "radius", [], SHAPE, "a straight line from the center to the perimeter of a circle"),
    ("00000054", "big_blue", [], ARTIFACT, "a deadly bomb that explodes above ground with a large radius"),  # not its genus
    ("00000050", "red", [], COLOUR, "the colour of blood"),
    ("00000052", "marmalade", [], FOOD, "a preserve of orange-colored citrus peel"),  # a hyphened word's part names
    ("00000051", "maroon", [("@", "00000050", "n")], COLOUR, "a dark purple"),  # a kind of red: WordNet's link decides
]
DEFINED_ADJECTIVES = [  # (offset, type, names, pointers)
    ("00000100", "a", "round circular", [("+", "00000027", "n")]),
    ("00000101", "a", "rectangular", [("+", "00000023", "n")]),
]
KNOWN = ["circle", "square", "triangle", "red", "purple", "orange", "small", "left"]


@pytest.fixture
def wordnet(tmp_path):
    return WordNet(write_wordnet(tmp_path / "wordnet", nouns=DEFINED_NOUNS, adjectives=DEFINED_ADJECTIVES))


def test_a_definition_is_its_glosss_first_clause_without_examples():
    assert first_clause('A (usually rectangular) container; may have a lid; "a box of parts"') == "a (usually rectangular) container"
    assert first_clause('Round object, as in "ball game"') == "round object, as in"


def test_the_words_that_name_a_known_shape_include_its_general_names_and_adjectives(wordnet):
    words = naming_words(wordnet, KNOWN)
    assert words["round"] == words["circular"] == words["oval"] == "circle"
    assert words["rectangular"] == words["rectangle"] == words["quadrilateral"] == "square"
    assert words["red"] == "red" and words["orange"] == "orange"
    assert "small" not in words and "left" not in words  # sizes and places are not what a definition is read for


def test_a_noun_reads_as_the_one_known_shape_or_colour_its_definition_names(wordnet):
    table = defined_names(wordnet, KNOWN)
    assert {name: table.get(name) for name in ("box", "ball", "cube", "dot", "tile", "clementine", "marmalade")} == {
        "box": "square", "ball": "circle", "cube": "square", "dot": "circle", "tile": "square", "clementine": "orange",
        "marmalade": "orange"}
    for name in ("standard deviation", "crate", "die", "square", "red"):
        assert name not in table  # not a thing; names no shape word itself; known words stay themselves
    assert defined_names(wordnet, ["left", "small"]) == {}  # no known shape or colour: nothing to read


def test_a_definition_that_names_two_known_words_says_neither(wordnet):
    assert "lemon" in defined_names(wordnet, ["circle", "purple"])  # oval -> circle only
    assert "lemon" not in defined_names(wordnet, ["circle", "yellow"])  # yellow and oval: two


def test_the_anchored_encoder_reads_definitions_only_when_asked_and_last(wordnet):
    captions = [c.caption for c in shapes.train_compositions()]
    plain = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet, general_shapes=True)
    encoder = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet, general_shapes=True, definitions=True)
    assert_reads_only_when_asked(plain, encoder, captions, "a small red box in the top left", "a small red square in the top left")
    assert encoder.lexicon["maroon"] == "red"  # WordNet's "kind of" decides over the definition's purple
    with pytest.raises(ConfigError, match="general shape names and definitions are read from WordNet"):
        AnchoredWordEncoder.from_captions(captions, definitions=True)
    with pytest.raises(ConfigError, match="text_anchor_definitions reads WordNet"):
        build_train_config("shapes", {"text_anchor_lexicon": None, "text_anchor_general_shapes": False,
                                      "text_anchor_definitions": True})


def test_later_rounds_read_a_thing_through_its_kind_and_the_shapes_read_before(wordnet):
    once, twice = defined_names(wordnet, KNOWN), defined_names(wordnet, KNOWN, rounds=2)
    assert {name: twice.get(name) for name in ("crate", "die")} == {"crate": "square", "die": "square"}  # a box; a cube
    assert {name: twice[name] for name in once} == once  # what round 1 read stays as it read it
    assert set(twice) - set(once) == {"crate", "die"}  # not "big blue": its radius is past what it is (a bomb)
    assert defined_names(wordnet, KNOWN, rounds=5) == twice  # nothing more to read: the rounds stop
    with pytest.raises(ConfigError, match="1 round or more, got 0"):
        defined_names(wordnet, KNOWN, rounds=0)


def test_the_definition_rounds_setting_reaches_the_encoder_and_is_checked(wordnet):
    captions = [c.caption for c in shapes.train_compositions()]
    once = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet, general_shapes=True, definitions=True)
    twice = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet, general_shapes=True, definitions=True,
                                              definition_rounds=2)
    assert "die" not in once.lexicon and twice.lexicon["die"] == "square"
    assert build_train_config("shapes", {"text_anchor_definition_rounds": 2}).text_anchor_definition_rounds == 2
    for bad in (0, 1.5, "2"):
        with pytest.raises(ConfigError, match="text_anchor_definition_rounds"):
            build_train_config("shapes", {"text_anchor_definition_rounds": bad})


def test_a_definitions_genus_is_what_the_thing_is_before_how_it_differs():
    assert genus("a small cube with 1 to 6 spots on the faces") == "a small cube"
    assert genus("a deadly bomb that explodes above ground with a large radius") == "a deadly bomb"
    assert genus("a rugged box (usually made of wood)") == "a rugged box"
    assert genus("a red and white ball, used in games") == "a red and white ball"
    assert genus("with a lid") == "with a lid"  # the first word is never the differentia
