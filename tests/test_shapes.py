import random

import numpy as np
import pytest
from PIL import Image

from limner.data import shapes


def test_180_compositions_36_held_out_and_disjoint():
    held_out = shapes.held_out_compositions()
    train = shapes.train_compositions()
    assert len(shapes.all_compositions()) == 180
    assert len(held_out) == 36 and len(train) == 144
    assert not set(held_out) & set(train)
    assert held_out == shapes.held_out_compositions()  # fixed, not re-drawn


def test_caption_format_and_parse():
    composition = shapes.Composition("large", "purple", "triangle", "bottom right")
    assert composition.caption == "a large purple triangle in the bottom right"
    assert shapes.parse_caption(composition.caption) == composition
    with pytest.raises(ValueError, match="not a shapes caption"):
        shapes.parse_caption("a cat")


@pytest.mark.parametrize("resolution", [32, 64])
def test_judge_passes_the_datasets_own_images(resolution):
    pairs = list(shapes.generate_split(shapes.all_compositions(), 360, resolution, seed=3))
    verdicts = [shapes.judge(image, composition)["all"] for image, composition in pairs]
    assert np.mean(verdicts) >= 0.99


def test_judge_fails_noise_and_blank_images():
    composition = shapes.all_compositions()[0]
    rng = np.random.default_rng(0)
    for _ in range(10):
        noise = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        assert not shapes.judge(noise, composition)["all"]
    assert not any(shapes.judge(Image.new("RGB", (32, 32)), composition).values())


def test_judge_catches_a_wrong_attribute():
    image = shapes.render(shapes.Composition("small", "red", "circle", "top left"), 32, random.Random(0))
    verdict = shapes.judge(image, "a small red square in the top left")
    assert verdict == {"color": True, "shape": False, "size": True, "position": True, "all": False}


def test_render_follows_the_spec():
    image = shapes.render(shapes.Composition("large", "blue", "square", "center"), 64, random.Random(1))
    pixels = np.asarray(image)
    assert image.size == (64, 64) and pixels[0, 0].tolist() == [0, 0, 0]
    assert pixels[32, 32].tolist() == [50, 90, 240]
    with pytest.raises(ValueError, match="multiple of 16"):
        shapes.render(shapes.all_compositions()[0], 40, random.Random(0))
