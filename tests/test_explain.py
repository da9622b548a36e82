"""limner explain: word attribution finds what each word does and where; interpolations, walks and
traversals have the right shapes and ends; the command writes its page."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from limner.cli import main
from limner.errors import ConfigError
from limner.evaluation.explain import (
    attribute_words, explain_page, interpolate_prompts, latent_traversal, noise_walk, peak, without,
)
from limner.pipelines import TextToImagePipeline
from limner.text import BagOfWordsEncoder
from tests.conftest import tiny_pipeline

WORDS = ["red", "left", "right", "blob"]
SIDE = 32


class QuadrantGenerator(nn.Module):
    """A stand-in generator whose truth is known: the word at vocabulary index k lights its own patch
    (red: top-left patch in red; left / right: a patch at that side; blob: the centre), and the noise
    shades everything a little."""

    def __init__(self, encoder: BagOfWordsEncoder):
        super().__init__()
        self.config = SimpleNamespace(noise_dim=4, resolution=SIDE)
        patches = torch.zeros(encoder.dim, 3, SIDE, SIDE)
        for word, (rows, cols, channels) in {"red": (slice(0, 12), slice(0, 12), [0]), "left": (slice(10, 22), slice(0, 10), [0, 1, 2]),
                                             "right": (slice(10, 22), slice(22, 32), [0, 1, 2]), "blob": (slice(12, 20), slice(12, 20), [1])}.items():
            patches[encoder.vocabulary.index(word), channels, rows, cols] = 1.0
        self.register_buffer("patches", patches)

    def forward(self, noise, sentence):
        present = (sentence > 0).float()  # (B, V): which words the caption has
        light = torch.einsum("bv,vchw->bchw", present, self.patches).clamp(0, 1)
        return light * 1.8 - 0.9 + 0.05 * torch.tanh(noise[:, :1, None, None])


@pytest.fixture
def pipe():
    encoder = BagOfWordsEncoder(WORDS)
    return TextToImagePipeline(QuadrantGenerator(encoder), encoder)


def test_each_word_is_scored_and_its_map_shows_where_it_acts(pipe):
    full, found = attribute_words(pipe, "red blob left", seeds=3)
    assert full.shape == (3, 3, SIDE, SIDE) and [a.words for a in found] == ["red", "blob", "left"]
    by_word = {a.words: a for a in found}
    assert by_word["red"].prompt == "blob left" and by_word["red"].images.shape == (3, 3, SIDE, SIDE)
    x, y = peak(by_word["left"].heat)
    assert x < 0.35 and 0.3 < y < 0.7          # the left patch
    x, y = peak(by_word["red"].heat)
    assert x < 0.4 and y < 0.4                 # the top-left red patch
    x, y = peak(by_word["blob"].heat)
    assert 0.35 < x < 0.65 and 0.35 < y < 0.65  # the centre
    # the lit area of "left" (12 x 10, all channels) outweighs red's (12 x 12, one channel of three)
    assert by_word["left"].score > by_word["red"].score > 0


def test_a_word_the_model_ignores_scores_zero(pipe):
    _, found = attribute_words(pipe, "red unknown", seeds=2)
    assert {a.words: a.score for a in found}["unknown"] == pytest.approx(0.0, abs=1e-7)


def test_phrases_can_be_dropped_together_and_bad_spans_are_refused(pipe):
    _, found = attribute_words(pipe, "red left right", spans=[(1, 3)], seeds=2)
    assert [a.words for a in found] == ["left right"] and found[0].prompt == "red"
    with pytest.raises(ConfigError, match="outside the prompt"):
        attribute_words(pipe, "red left", spans=[(1, 5)])
    with pytest.raises(ConfigError, match="at least one word"):
        attribute_words(pipe, "   ")
    assert without("a b c", (0, 2)) == "c"


def test_interpolation_walk_and_traversal_have_their_ends(pipe):
    line = interpolate_prompts(pipe, "red", "blob", steps=5, seeds=2, seed=3)
    assert line.shape == (10, 3, SIDE, SIDE)
    assert torch.allclose(line[0], pipe.generate_tensors("red", seed=3)[0], atol=1e-6)   # the first noise, the first prompt
    assert torch.allclose(line[4], pipe.generate_tensors("blob", seed=3)[0], atol=1e-6)
    walk = noise_walk(pipe, "left", steps=4, seed=1)
    assert walk.shape == (4, 3, SIDE, SIDE) and not torch.equal(walk[0], walk[-1])
    traversal = latent_traversal(pipe, "left", dims=(0, 2), values=(-1, 0, 1))
    assert traversal.shape == (6, 3, SIDE, SIDE)
    assert not torch.equal(traversal[0], traversal[2])  # entry 0 shades the picture
    assert torch.equal(traversal[3], traversal[5])      # entry 2 does not
    with pytest.raises(ConfigError, match="outside the model's 4"):
        latent_traversal(pipe, "left", dims=(4,))


def test_the_page_has_a_row_per_word_and_the_walks(pipe):
    page, found = explain_page(pipe, "red left", seeds=2, other_prompt="blob")
    rows = 1 + len(found) + 2  # the prompt, each word, the walk, the interpolation
    assert page.height == rows * (14 + SIDE * 2 + 3) + 3


def test_explain_from_the_command_line(tmp_path, capsys):
    tiny_pipeline_dir = tmp_path / "model"
    tiny_pipeline().save_pretrained(tiny_pipeline_dir)
    out = tmp_path / "explain.png"
    assert main(["explain", str(tiny_pipeline_dir), "a red circle", "-n", "2", "-o", str(out), "--towards", "a blue square"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert out.is_file() and lines[-1] == f"wrote {out}"
    assert sorted(line.split("\t")[1] for line in lines[:-1]) == ["a", "circle", "red"]
    assert main(["explain", str(tiny_pipeline_dir), "a red circle", "-n", "0"]) == 2


class MovingGenerator(nn.Module):
    """One white patch on black: at the left with the word "left", at the right without it."""

    def __init__(self, encoder: BagOfWordsEncoder):
        super().__init__()
        self.config = SimpleNamespace(noise_dim=4, resolution=SIDE)
        self.left = encoder.vocabulary.index("left")

    def forward(self, noise, sentence):
        images = torch.full((noise.shape[0], 3, SIDE, SIDE), -1.0)
        for i, has_left in enumerate((sentence[:, self.left] > 0).tolist()):
            cols = slice(2, 12) if has_left else slice(20, 30)
            images[i, :, 11:21, cols] = 1.0
        return images


def test_the_added_map_lights_where_a_moved_object_is_not_where_it_goes():
    encoder = BagOfWordsEncoder(WORDS)
    pipe = TextToImagePipeline(MovingGenerator(encoder), encoder)
    _, (left,) = attribute_words(pipe, "blob left", spans=[(1, 2)], seeds=2)
    assert torch.allclose(left.heat[11:21, 2:12].mean(), left.heat[11:21, 20:30].mean())  # the change map: both places
    x, _ = peak(left.added)
    assert x < 0.4 and left.added[11:21, 20:30].max() == 0  # the added map: only where "left" puts it
