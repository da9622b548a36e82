import json

import numpy as np
import pytest
import torch

from limner.data import shapes
from limner.errors import ConfigError
from limner.export import export_onnx
from limner.pipelines import TextToImagePipeline
from limner.text import AnchoredWordEncoder, load_text_encoder
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


def test_config_round_trips(anchored):
    rebuilt = load_text_encoder(anchored.config())
    captions = ["a huge blue triangle in the middle", "x"]
    assert torch.equal(rebuilt.encode(captions).sentence, anchored.encode(captions).sentence)
    other = AnchoredWordEncoder.from_captions(TRAIN[:20])
    assert other.fingerprint != anchored.fingerprint  # the vocabulary keys the embedding cache


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="differ in their words"):
        AnchoredWordEncoder.from_captions(["a red circle", "a red circle"])
    with pytest.raises(ConfigError, match="temperature must be positive"):
        AnchoredWordEncoder(vocabulary={"red": 1.0}, temperature=0)
    with pytest.raises(ConfigError, match="text_hidden_layer"):
        build_train_config("shapes", {"text_pooling": "anchored", "text_hidden_layer": 0})
    with pytest.raises(ConfigError, match="text_whiten needs text_components"):
        build_train_config("shapes", {"text_components": 0})


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
