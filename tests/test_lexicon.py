"""Other names for the known words, from a tiny WordNet written in its own file format."""

import logging

import pytest
import torch

from limner.data import shapes
from limner.errors import ConfigError, ModelLoadError
from limner.models import Generator
from limner.pipelines import TextToImagePipeline
from limner.text import AnchoredWordEncoder, load_text_encoder
from limner.text.lexicon import WordNet, general_shape_names, other_names, rewrite, without_modifiers
from limner.text.prompts import NO_KNOWN_WORDS, vocabulary_of
from limner.training import build_train_config
from limner.training.data import find_lexicon
from tests.conftest import tiny_generator_config

# offset, lexicographer file, type, names, pointers (symbol, offset, part of speech)
NOUNS = [
    ("00000009", "chromatic_color", []),
    ("00000001", "red redness", [("@", "00000009", "n")]),
    ("00000002", "crimson", [("@", "00000001", "n")]),
    ("00000003", "dark_red", [("@", "00000001", "n")]),
    ("00000004", "maroon", [("@", "00000003", "n")]),
    ("00000005", "blue blueness", [("@", "00000009", "n")]),
    ("00000006", "purplish_red purplish_blue", [("@", "00000001", "n"), ("@", "00000005", "n")]),  # reaches both: left out
    ("00000010", "circle", []),
    ("00000011", "disk disc", [("@", "00000010", "n")]),
]
ADJECTIVES = [  # (offset, type, names, pointers)
    ("00000100", "a", "large big", [("&", "00000101", "s")]),
    ("00000101", "s", "giant gigantic", [("&", "00000100", "a")]),
    ("00000102", "a", "left", [("&", "00000103", "s")]),
    ("00000103", "s", "near nigh", [("&", "00000102", "a")]),
    ("00000104", "s", "ruby", [("+", "00000001", "n")]),  # an adjective, read by its noun
]


def data_line(offset: str, kind: str, names: str, pointers, field: str = "00", gloss: str = "a gloss") -> str:
    words = names.split()
    fields = [offset, field, kind, f"{len(words):02x}", *[f"{word} 0" for word in words], f"{len(pointers):03d}"]
    fields += [f"{symbol} {target} {part} 0000" for symbol, target, part in pointers]
    return " ".join(fields) + f" | {gloss}\n"


def write_wordnet(folder, nouns=NOUNS, adjectives=ADJECTIVES):
    folder.mkdir(parents=True, exist_ok=True)
    licence = "  1 This is a licence line, as WordNet's files begin\n"
    for part, rows in (("noun", [(o, "n", *rest) for o, *rest in nouns]), ("adj", adjectives)):
        letter = "n" if part == "noun" else "a"
        (folder / f"data.{part}").write_text(licence + "".join(data_line(*row) for row in rows))
        index: dict[str, list[str]] = {}
        for offset, _, names, *_ in rows:
            for name in names.split():
                index.setdefault(name, []).append(offset)
        (folder / f"index.{part}").write_text(licence + "".join(
            f"{name} {letter} {len(offsets)} 0 {len(offsets)} 0 {' '.join(offsets)}\n" for name, offsets in sorted(index.items())))
    return folder


@pytest.fixture
def wordnet(tmp_path):
    return WordNet(write_wordnet(tmp_path / "wordnet"))


def test_names_lead_up_to_the_known_word_they_are_a_kind_of(wordnet):
    known = ["red", "blue", "circle", "large", "left"]
    assert other_names(wordnet, known, depth=1) == {"crimson": "red", "dark red": "red", "redness": "red", "blueness": "blue",
                                                   "disk": "circle", "disc": "circle", "big": "large", "giant": "large",
                                                   "gigantic": "large", "ruby": "red", "nigh": "left"}
    deeper = other_names(wordnet, known, depth=2)
    assert deeper["maroon"] == "red"  # maroon -> dark red -> red
    assert "purplish red" not in deeper  # as near red as blue: says neither
    assert "near" not in deeper and "nigh" in deeper  # a relation word is read as written, whatever WordNet says
    assert other_names(wordnet, known, depth=0) == {"redness": "red", "blueness": "blue", "big": "large"}
    with pytest.raises(ConfigError, match="depth must be 0 or more"):
        other_names(wordnet, known, depth=-1)


def test_rewrite_takes_the_longest_name_and_plurals_and_keeps_the_rest():
    table = {"dark red": "red", "disk": "circle", "giant": "large"}
    text, replaced = rewrite("Two Giants: a DARK RED disk, dark!", table)
    assert text == "Two large: a red circle, dark!"
    assert replaced == [("Giants", "large"), ("DARK RED", "red"), ("disk", "circle")]
    assert rewrite("a red circle", table) == ("a red circle", [])


def test_a_name_read_as_the_word_right_before_it_is_one_thing_named_twice():
    table = {"round": "circle", "disc": "circle", "crimson": "red"}
    assert rewrite("a Round disc, top left", table)[0] == "a circle, top left"
    assert rewrite("a circle disc", table)[0] == "a circle"  # the known word itself, then a name for it
    assert rewrite("a crimson disc", table)[0] == "a red circle"  # different words: both stay
    assert rewrite("a round, disc", table)[0] == "a circle, circle"  # apart: not collapsed


def test_a_new_word_right_before_a_known_word_is_dropped_as_its_modifier():
    weights = {"a": 0.0, "the": 0.0, "in": 0.0, "red": 1.1, "circle": 1.1, "top": 0.7, "left": 0.7, "large": 0.7}
    weight = weights.get  # None: a new word
    assert without_modifiers("a Tomato red circle in the top left", weight) == ("a red circle in the top left", ["tomato"])
    assert without_modifiers("a deep tomato red circle", weight) == ("a red circle", ["tomato", "deep"])  # a run, from the last
    assert without_modifiers("a pretty large circle", weight)[0] == "a large circle"
    # its own attribute (before one known word: "plum", "upper"), apart, before a weightless word, hyphened: kept
    for kept in ("a plum circle in the top left", "a red circle, upper left", "a red orb, top left", "a red orb in the top left",
                 "a tomato red, then a circle", "tomato-red circle"):
        assert without_modifiers(kept, weight) == (kept, [])


def assert_reads_only_when_asked(plain, encoder, captions, prompt, reading):
    """The setting leaves the training captions as they were and rewrites `prompt` only when on."""
    assert torch.allclose(encoder.encode(captions).sentence, plain.encode(captions).sentence)  # training captions unchanged
    assert encoder.reading(prompt) == reading
    assert plain.reading(prompt) == prompt


def test_the_anchored_encoder_drops_modifiers_only_when_asked():
    captions = [c.caption for c in shapes.train_compositions()]
    plain = AnchoredWordEncoder.from_captions(captions)
    encoder = AnchoredWordEncoder.from_captions(captions, modifiers=True)
    assert_reads_only_when_asked(plain, encoder, captions, "a small tomato red circle in the top left",
                                 "a small red circle in the top left")
    pair = encoder.encode(["a small tomato red circle in the center", "a small red circle in the center"]).sentence
    assert torch.allclose(pair[0], pair[1], atol=1e-6)
    assert load_text_encoder(encoder.config()).modifiers and "modifiers" not in plain.config()
    with pytest.raises(ConfigError, match="text_anchor_modifiers needs text_pooling"):
        build_train_config("shapes", {"text_pooling": "mean", "text_anchor_filler": False, "text_anchor_lexicon": None,
                                      "text_anchor_modifiers": True})


def test_a_folder_that_is_not_wordnet_is_named(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="lacks index.noun, data.noun, index.adj, data.adj.*wordnet-base"):
        WordNet(tmp_path)
    folder = write_wordnet(tmp_path / "broken")
    (folder / "data.noun").write_text("00000001 00 n zz red 0\n")
    with pytest.raises(ConfigError, match=r"data.noun:1: not a WordNet data line"):
        WordNet(folder)
    monkeypatch.setattr("limner.text.lexicon.SEARCHED", (str(tmp_path / "nowhere"),))
    monkeypatch.delenv("LIMNER_WORDNET", raising=False)
    with pytest.raises(ConfigError, match="was not found"):
        WordNet.find()
    monkeypatch.setenv("LIMNER_WORDNET", str(write_wordnet(tmp_path / "mine")))
    assert "crimson" in WordNet.find().senses


def test_the_anchored_encoder_reads_other_names_as_known_words(wordnet):
    captions = [c.caption for c in shapes.train_compositions()]
    plain = AnchoredWordEncoder.from_captions(captions)
    encoder = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet, lexicon_depth=2)
    assert encoder.lexicon["maroon"] == "red" and "red" not in encoder.lexicon
    assert torch.allclose(encoder.encode(captions).sentence, plain.encode(captions).sentence)  # training captions unchanged
    assert encoder.reading("a maroon giant disk in the top left") == "a red large circle in the top left"
    pair = encoder.encode(["a small maroon disk in the center", "a small red circle in the center"]).sentence
    assert torch.allclose(pair[0], pair[1], atol=1e-6)
    rebuilt = load_text_encoder(encoder.config())
    assert rebuilt.lexicon == encoder.lexicon
    assert "lexicon" not in plain.config()  # off: the config reads as an earlier model's
    with pytest.raises(ModelLoadError, match="words the vocabulary lacks: \\['mauve'\\]"):
        load_text_encoder({**encoder.config(), "lexicon": {"lilac": "mauve"}})


def test_the_training_setting_finds_wordnet_or_trains_without_it(tmp_path, monkeypatch, caplog):
    with pytest.raises(ConfigError, match="text_anchor_lexicon needs text_pooling"):
        build_train_config("shapes", {"text_pooling": "mean", "text_anchor_lexicon": "wordnet"})
    monkeypatch.setattr("limner.text.lexicon.SEARCHED", (str(tmp_path / "nowhere"),))
    monkeypatch.delenv("LIMNER_WORDNET", raising=False)
    with caplog.at_level(logging.WARNING, logger="limner.train"):
        assert find_lexicon("wordnet") is None
    assert "training without other names" in caplog.text
    with pytest.raises(ConfigError, match="not a WordNet database folder"):
        find_lexicon(str(tmp_path))  # a folder named by the user must be WordNet
    assert find_lexicon(None) is None
    assert "crimson" in find_lexicon(str(write_wordnet(tmp_path / "wn"))).senses


def test_a_prompt_in_other_names_is_not_warned_about(wordnet):
    captions = [c.caption for c in shapes.train_compositions()]
    encoder = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet, lexicon_depth=2)
    pipe = TextToImagePipeline(Generator(tiny_generator_config(text_dim=encoder.dim)), encoder, training_words=vocabulary_of(captions))
    assert pipe.prompt_warnings("maroon disk") == []  # read as "red circle"
    assert [code for code, _ in pipe.prompt_warnings("a teal rhombus")] == [NO_KNOWN_WORDS]


SHAPE = "25"  # noun.shape
SHAPE_NOUNS = [  # (offset, names, pointers, lexicographer file)
    ("00000019", "quadrangle court", [], "15"),  # "quadrangle"'s first sense, a courtyard: not read as a shape
    ("00000020", "figure", [], SHAPE),
    ("00000021", "polygon", [("@", "00000020", "n")], SHAPE),
    ("00000022", "quadrilateral quadrangle", [("@", "00000021", "n")], SHAPE),
    ("00000023", "rectangle", [("@", "00000022", "n")], SHAPE),
    ("00000024", "square", [("@", "00000023", "n")], SHAPE),
    ("00000025", "triangle", [("@", "00000021", "n")], SHAPE),
    ("00000026", "ellipse oval", [("@", "00000020", "n")], SHAPE),
    ("00000027", "circle", [("@", "00000026", "n")], SHAPE),
    ("00000030", "position", [], "15"),  # noun.location: places are not read this way
    ("00000031", "left", [("@", "00000030", "n")], "15"),
]


def test_a_general_shape_name_reads_as_its_single_known_shape(tmp_path):
    wordnet = WordNet(write_wordnet(tmp_path / "wordnet", nouns=SHAPE_NOUNS, adjectives=[]))
    table = general_shape_names(wordnet, ["circle", "square", "triangle", "left", "red"])
    # polygon and figure are above two shapes, "quadrangle" is first a courtyard, position is a place
    assert table == {"oval": "circle", "ellipse": "circle", "rectangle": "square", "quadrilateral": "square"}
    assert general_shape_names(wordnet, ["square"], depth=1) == {"rectangle": "square"}
    assert "polygon" in general_shape_names(wordnet, ["triangle"])  # above one known shape only


def test_the_anchored_encoder_reads_general_shapes_only_when_asked(tmp_path):
    wordnet = WordNet(write_wordnet(tmp_path / "wordnet", nouns=SHAPE_NOUNS, adjectives=[]))
    captions = [c.caption for c in shapes.train_compositions()]
    plain = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet)
    encoder = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet, general_shapes=True)
    assert_reads_only_when_asked(plain, encoder, captions, "a small red oval in the top left", "a small red circle in the top left")
    with pytest.raises(ConfigError, match="general shape names and definitions are read from WordNet"):
        AnchoredWordEncoder.from_captions(captions, general_shapes=True)
    with pytest.raises(ConfigError, match="text_anchor_general_shapes reads WordNet"):
        build_train_config("shapes", {"text_anchor_lexicon": None, "text_anchor_general_shapes": True})
