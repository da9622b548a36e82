import pytest
import torch

from limner.errors import ModelLoadError
from limner.models import Generator
from limner.pipelines import TextToImagePipeline
from limner.text import BagOfWordsEncoder
from limner.utils.images import images_equal
from tests.conftest import tiny_generator_config


@pytest.fixture
def pipe():
    torch.manual_seed(0)
    encoder = BagOfWordsEncoder.from_captions(["a small red circle in the top left", "a large blue square"])
    generator = Generator(tiny_generator_config(text_dim=encoder.dim))
    torch.nn.init.normal_(generator.blocks[0].fuse1.affine1.shift[2].weight, std=0.5)
    return TextToImagePipeline(generator, encoder)


def test_returns_pil_images_grouped_by_prompt(pipe):
    images = pipe(["a red circle", "a blue square"], num_images_per_prompt=3, seed=0)
    assert len(images) == 6 and images[0].size == (32, 32) and images[0].mode == "RGB"


def test_same_seed_same_images_other_seed_other_images(pipe):
    first = pipe("a red circle", num_images_per_prompt=4, seed=7)
    assert images_equal(first, pipe("a red circle", num_images_per_prompt=4, seed=7))
    assert not images_equal(first, pipe("a red circle", num_images_per_prompt=4, seed=8))


def test_save_and_load_give_identical_images(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "model_index.json").is_file()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))
    prompts = ["a small red circle in the top left", "a large blue square"]
    assert images_equal(pipe(prompts, num_images_per_prompt=2, seed=3), loaded(prompts, num_images_per_prompt=2, seed=3))


def test_bad_inputs(pipe, tmp_path):
    with pytest.raises(ValueError, match="non-empty strings"):
        pipe([""])
    with pytest.raises(ValueError, match="num_images_per_prompt must be at least 1"):
        pipe("x", num_images_per_prompt=0)
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        TextToImagePipeline.from_pretrained(tmp_path)
