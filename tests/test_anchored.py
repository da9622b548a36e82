import json

import numpy as np
import pytest
import torch

from limner.data import shapes
from limner.errors import ConfigError, ModelLoadError
from limner.export import export_onnx
from limner.pipelines import TextToImagePipeline
from limner.text import AnchoredWordEncoder, load_text_encoder
from limner.text.filler import PROMPT_FILLER, filler_tokens
from limner.training import build_train_config, train
from tests.conftest import tiny_train_overrides

TRAIN = [c.caption for c in shapes.train_compositions()]


@pytest.fixture(scope="module")
def anchored():
    return AnchoredWordEncoder.from_captions(TRAIN)


def nearest_training_caption(encoder, caption: str) -> str:
    """By distance after centring on the training captions' mean, as the generator's TextStandardizer sees them."""
    table = encoder.encode(TRAIN).sentence
    mean = table.mean(0)
    return TRAIN[int(torch.cdist(encoder.encode([caption]).sentence - mean, table - mean).argmin())]


def centred_distance(encoder, caption: str, other: str) -> float:
    """Distance between two captions' vectors after centring, in units of the mean distance between training captions."""
    table = encoder.encode(TRAIN).sentence
    pair = encoder.encode([caption, other]).sentence
    return float((pair[0] - pair[1]).norm() / torch.pdist(table).mean())


def test_words_every_caption_uses_weigh_nothing(anchored):
    assert anchored.vocabulary["a"] == anchored.vocabulary["the"] == anchored.vocabulary["in"] == 0.0
    assert anchored.vocabulary["red"] > 0 and anchored.vocabulary["circle"] > 0


def test_training_words_map_to_themselves(anchored):
    out = anchored.encode(["a large red circle in the top left", "red large left top circle"])
    assert out.sentence.shape == (2, 384) and out.tokens.shape == (2, 8, 384) and out.mask[1].sum() == 5
    assert torch.allclose(out.sentence[0], out.sentence[1], atol=1e-5)  # word order and "a", "in", "the" drop out
    red = anchored.anchors[list(anchored.vocabulary).index("red")]
    assert torch.allclose(out.tokens[0, 2], red, atol=1e-5)


def test_a_synonymous_rewording_lands_on_its_caption(anchored):
    assert nearest_training_caption(anchored, "a big red square, upper left") == "a large red square in the top left"
    assert nearest_training_caption(anchored, "in the lower right there is a tiny green square") == "a small green square in the bottom right"


def test_a_new_composition_of_known_words_is_read_exactly(anchored):
    held_out = shapes.held_out_compositions()[0].caption
    table = anchored.encode(TRAIN + [held_out]).sentence
    similarity = table[:-1] @ table[-1]
    assert similarity.max() < 0.999  # not collapsed onto a training caption


def test_an_undecided_word_weighs_less_than_a_synonym(anchored):
    with_size, plain, with_big = anchored.encode(["a red circle of some size", "a red circle", "a big red circle"]).sentence
    assert with_size @ plain > with_big @ plain  # "size" is as near "small" as "large": it hardly moves the vector


@pytest.fixture(scope="module")
def floored():
    return AnchoredWordEncoder.from_captions(TRAIN, floor=0.3)


def test_a_word_near_no_known_word_weighs_nothing_above_the_floor(anchored, floored):
    # "see" lies nearest "red", but only at cosine 0.21: without a floor it pulls the caption towards red
    sentence, meant = "I would like to see a small blue square in the top left", "a small blue square in the top left"
    plain, floored_out = anchored.encode([sentence, meant]), floored.encode([sentence, meant])
    assert floored_out.sentence[0] @ floored_out.sentence[1] > 0.9999  # every word left is a known word
    assert plain.sentence[0] @ plain.sentence[1] < 0.99
    # a synonym lies above the floor and still counts; the training captions read as without one
    assert nearest_training_caption(floored, "a big red circle in the middle") == "a large red circle in the center"
    assert torch.allclose(floored.encode(TRAIN).sentence, anchored.encode(TRAIN).sentence, atol=1e-6)


@pytest.fixture(scope="module")
def with_filler():
    return AnchoredWordEncoder.from_captions(TRAIN, filler=PROMPT_FILLER)


def test_filler_words_are_known_words_that_weigh_nothing(anchored, with_filler):
    assert with_filler.vocabulary["draw"] == with_filler.vocabulary["please"] == 0.0
    assert all(with_filler.vocabulary[token] == weight for token, weight in anchored.vocabulary.items())  # the captions' own keep theirs
    sentence, meant = "could you please draw a small blue square in the top left for me", "a small blue square in the top left"
    out = with_filler.encode([sentence, meant]).sentence
    assert out[0] @ out[1] > 0.9999  # every word of the sentence is now known: the filler drops out
    plain = anchored.encode([sentence, meant]).sentence
    assert plain[0] @ plain[1] < out[0] @ out[1]
    assert torch.allclose(with_filler.encode(TRAIN).sentence, anchored.encode(TRAIN).sentence, atol=1e-4)
    assert nearest_training_caption(with_filler, "a big red circle in the middle") == "a large red circle in the center"


def test_filler_words_are_single_tokens_not_already_known(anchored):
    from limner.text.caption_vocabulary import load_tokenizer

    tokens = filler_tokens(load_tokenizer("all-MiniLM-L6-v2"), ("draw", "the", "xylophonically", "please"), known=anchored.vocabulary)
    assert tokens == ["draw", "please"]  # "the" is a caption word already; a word of several pieces is left out
    with pytest.raises(ConfigError, match="filler words need anchored pooling by input embeddings"):
        AnchoredWordEncoder.from_captions(TRAIN, context_layer=3, filler=PROMPT_FILLER)
    with pytest.raises(ConfigError, match="text_anchor_filler needs text_pooling"):
        build_train_config("shapes", {"text_pooling": "mean", "text_anchor_filler": True})


def test_config_round_trips(anchored):
    rebuilt = load_text_encoder(anchored.config())
    captions = ["a huge blue triangle in the middle", "x"]
    assert torch.equal(rebuilt.encode(captions).sentence, anchored.encode(captions).sentence)
    assert "floor" not in anchored.config()  # off: the config reads as an earlier model's
    floored = AnchoredWordEncoder.from_captions(TRAIN, floor=0.3)
    assert load_text_encoder(floored.config()).floor == 0.3
    other = AnchoredWordEncoder.from_captions(TRAIN[:20])
    assert other.fingerprint != anchored.fingerprint  # the vocabulary keys the embedding cache


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="differ in their words"):
        AnchoredWordEncoder.from_captions(["a red circle", "a red circle"])
    with pytest.raises(ConfigError, match="temperature must be positive"):
        AnchoredWordEncoder(vocabulary={"red": 1.0}, temperature=0)
    with pytest.raises(ConfigError, match="anchor floor must be"):
        AnchoredWordEncoder(vocabulary={"red": 1.0}, floor=1.0)
    with pytest.raises(ConfigError, match="text_anchor_floor"):
        build_train_config("shapes", {"text_anchor_floor": -0.1})
    with pytest.raises(ConfigError, match="context layer must be 0 .* to 6"):
        AnchoredWordEncoder.from_captions(TRAIN, context_layer=7)
    with pytest.raises(ConfigError, match="text_whiten needs text_components"):
        build_train_config("shapes", {"text_components": 0})


@pytest.fixture(scope="module")
def in_context():
    return AnchoredWordEncoder.from_captions(TRAIN, context_layer=3)


def test_in_context_the_training_captions_read_as_before(anchored, in_context):
    captions = [c.caption for c in shapes.all_compositions()]  # held-out compositions too
    similarity = (anchored.encode(captions).sentence * in_context.encode(captions).sentence).sum(1)
    assert similarity.min() > 0.999  # so a model trained on input-embedding anchors can read in context


def test_in_context_a_whole_sentence_lands_on_its_caption(anchored, in_context):
    sentence, meant = "draw a big blue box up in the top right", "a large blue square in the top right"
    assert nearest_training_caption(in_context, sentence) == meant
    # "box" alone sits nearest "bottom" among the known words' input embeddings; in its sentence, nearer "square"
    # (measured: 0.45 of the mean distance between training captions by input embeddings, 0.26 in context)
    assert centred_distance(in_context, sentence, meant) < 0.7 * centred_distance(anchored, sentence, meant)


def test_in_context_config_round_trips_and_damage_is_named(in_context):
    config = json.loads(json.dumps(in_context.config()))
    assert config["context_layer"] == 3
    captions = ["please draw a huge blue triangle in the middle"]
    assert torch.allclose(load_text_encoder(config).encode(captions).sentence, in_context.encode(captions).sentence, atol=1e-3)
    with pytest.raises(ModelLoadError, match="context_anchors hold 8 values"):
        load_text_encoder({**config, "context_anchors": "AAAAAAAAAAAAAAAAAAAAAA=="})
    with pytest.raises(ModelLoadError, match="not valid base64"):
        load_text_encoder({**config, "context_anchors": "no base64 here!"})
    without = {key: value for key, value in config.items() if key != "context_anchors"}
    with pytest.raises(ModelLoadError, match="build the encoder with from_captions"):
        load_text_encoder(without).encode(captions)


@pytest.fixture(scope="module")
def anchored_run(tiny_shapes, tmp_path_factory):
    """A tiny GAN trained for 2 steps on anchored, whitened MiniLM words (trained once for the tests below)."""
    folder = tmp_path_factory.mktemp("anchored")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIMNER_CACHE", str(folder / "cache"))
        config = build_train_config(None, tiny_train_overrides(
            tiny_shapes, folder / "run", max_train_steps=2, text_encoder="all-MiniLM-L6-v2", text_pooling="anchored",
            text_components="auto", text_whiten=True))
        train(config, progress=False)
    return folder / "run"


def test_a_gan_trains_and_generates_on_anchored_words(anchored_run):
    assert json.loads((anchored_run / "text_encoder" / "config.json").read_text())["kind"] == "anchored_words"
    pipe = TextToImagePipeline.from_pretrained(anchored_run)
    first, again = (pipe(["a huge red circle, upper left"], num_images_per_prompt=2, seed=3) for _ in range(2))
    assert [a.tobytes() for a in first] == [b.tobytes() for b in again]
    assert pipe.generator.text_norm.direction_std is not None  # whitening travels with the weights


def test_an_anchored_whitened_model_exports_to_onnx(anchored_run):
    report = export_onnx(anchored_run)
    assert report["generator_max_abs_diff"] < 1e-3 and "text_encoder_max_abs_diff" not in report  # the lookup stays in PyTorch
    prompts = ["a tiny blue square in the middle"]
    eager = TextToImagePipeline.from_pretrained(anchored_run)(prompts, num_images_per_prompt=2, seed=1)
    onnx = TextToImagePipeline.from_pretrained(anchored_run, backend="onnx")(prompts, num_images_per_prompt=2, seed=1)
    for a, b in zip(eager, onnx):
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1


@pytest.mark.parametrize("name", ["development", "kept_aside", "kept_aside_2", "kept_aside_3", "kept_aside_4", "kept_aside_5",
                                  "kept_aside_6", "kept_aside_7", "kept_aside_8"])
def test_every_wording_set_words_every_attribute_value(name):
    """benchmarks/prompt_sets/wording_*.json: each template names all four attributes, and every value
    of each attribute has words (plain and synonym colours), so each set words all 180 compositions."""
    from pathlib import Path

    spec = json.loads((Path(__file__).parents[1] / "benchmarks" / "prompt_sets" / f"wording_{name}.json").read_text())
    for template in spec["templates"]:
        assert all("{" + field + "}" in template for field in ("size", "color", "shape", "position")), template
    compositions = shapes.all_compositions()
    for attribute, key in (("size", "size"), ("shape", "shape"), ("position", "position"), ("color", "color"), ("color", "color_synonyms")):
        assert {getattr(c, attribute) for c in compositions} == set(spec[key]), key
        assert all(spec[key][value] for value in spec[key]), key
