"""Colour names read as the nearest known colour: OKLab, the reading rules, and the encoder's use of them."""

import numpy as np
import pytest
import torch

from limner.data import shapes
from limner.errors import ConfigError
from limner.text import AnchoredWordEncoder, load_text_encoder
from limner.text.colour_names import nearest_colour_names, oklab, survey_colours
from limner.text.lexicon import WordNet
from limner.training import build_train_config
from tests.test_lexicon import assert_reads_only_when_asked, write_wordnet

TINY_SURVEY = {
    "red": (1.0, 0.0, 0.0), "blue": (0.0, 0.0, 1.0), "white": (1.0, 1.0, 1.0), "circle": (0.0, 1.0, 0.0),
    "navy": (0.0, 0.0, 0.5), "crimson": (0.86, 0.08, 0.24), "grey": (0.5, 0.5, 0.5),
    "greenish blue": (0.1, 0.6, 0.5), "sky": (0.5, 0.8, 1.0), "lemon": (1.0, 1.0, 0.2),
}


def test_oklab_matches_its_published_values():
    # white, black, and sRGB red / blue from the space's definition (Ottosson 2020)
    assert np.allclose(oklab([1.0, 1.0, 1.0]), [1.0, 0.0, 0.0], atol=1e-4)
    assert np.allclose(oklab([0.0, 0.0, 0.0]), [0.0, 0.0, 0.0], atol=1e-6)
    assert np.allclose(oklab([1.0, 0.0, 0.0]), [0.62796, 0.22486, 0.12585], atol=1e-4)
    assert np.allclose(oklab([0.0, 0.0, 1.0]), [0.45201, -0.03246, -0.31153], atol=1e-4)


def test_names_read_as_the_nearest_known_colour_by_their_rules():
    table = nearest_colour_names({"red", "blue", "circle"}, TINY_SURVEY)
    assert table["navy"] == "blue" and table["crimson"] == "red"
    assert table["greenish blue"] == "blue"  # its last word names the colour, though its hue is nearer neither
    assert "red" not in table and "blue" not in table  # known words stay themselves
    assert "sky" not in table  # a thing first, a colour second
    assert "grey" not in table and "white" not in table  # no known grey: greys are not read as a colour
    assert table["lemon"] in {"red", "blue"} and "circle" not in table.values()  # only basic colour terms are targets


def test_greys_read_only_as_a_known_grey_and_colours_only_as_a_colour():
    table = nearest_colour_names({"red", "blue", "white"}, TINY_SURVEY)
    assert table["grey"] == "white"
    assert table["crimson"] == "red" and table["lemon"] != "white"
    assert nearest_colour_names({"circle", "square"}, TINY_SURVEY) == {}


def test_the_survey_reads_everyday_colour_words_as_the_shapes_colours():
    survey = survey_colours()
    assert len(survey) > 900 and survey["gray"] == survey["grey"]
    table = nearest_colour_names(["red", "green", "blue", "yellow", "purple", "orange", "circle", "left"])
    expected = {"navy": "blue", "crimson": "red", "emerald": "green", "lilac": "purple", "tangerine": "orange",
                "lemon": "yellow", "cherry red": "red", "sky blue": "blue"}
    assert {name: table.get(name) for name in expected} == expected
    assert "grey" not in table and "sky" not in table


def test_the_anchored_encoder_reads_colour_names_only_when_asked():
    captions = [c.caption for c in shapes.train_compositions()]
    plain = AnchoredWordEncoder.from_captions(captions)
    encoder = AnchoredWordEncoder.from_captions(captions, colour_names=True)
    assert_reads_only_when_asked(plain, encoder, captions, "a small navy circle in the top left", "a small blue circle in the top left")
    pair = encoder.encode(["a small emerald square in the center", "a small green square in the center"]).sentence
    assert torch.allclose(pair[0], pair[1], atol=1e-6)
    assert load_text_encoder(encoder.config()).lexicon == encoder.lexicon


def test_where_wordnet_and_the_colour_disagree_the_colour_decides(tmp_path):
    nouns = [("00000009", "chromatic_color", []), ("00000001", "red redness", [("@", "00000009", "n")]),
             ("00000002", "navy", [("@", "00000001", "n")]),  # wrongly a kind of red
             ("00000003", "crimson", [("@", "00000001", "n")]), ("00000005", "blue", [("@", "00000009", "n")])]
    wordnet = WordNet(write_wordnet(tmp_path / "wordnet", nouns=nouns, adjectives=[]))
    captions = [c.caption for c in shapes.train_compositions()]
    wordnet_only = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet)
    both = AnchoredWordEncoder.from_captions(captions, lexicon=wordnet, colour_names=True)
    assert wordnet_only.lexicon["navy"] == "red" and both.lexicon["navy"] == "blue"
    assert both.lexicon["crimson"] == "red"


def test_colour_names_need_anchored_pooling():
    with pytest.raises(ConfigError, match="text_anchor_colour_names needs text_pooling"):
        build_train_config("shapes", {"text_pooling": "mean", "text_anchor_filler": False, "text_anchor_lexicon": None,
                                      "text_anchor_colour_names": True})
    assert build_train_config("shapes", {"text_anchor_colour_names": True}).text_anchor_colour_names


def test_another_pooling_drops_the_presets_anchored_settings():
    config = build_train_config("shapes", {"text_pooling": "mean"})  # the preset's filler, lexicon and colours give way
    assert not config.text_anchor_filler and config.text_anchor_lexicon is None and not config.text_anchor_colour_names
    assert build_train_config("shapes").text_anchor_colour_names
