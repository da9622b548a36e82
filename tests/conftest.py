import pytest
import torch

from limner.data import build_shapes
from limner.models import DiscriminatorConfig, Generator, GeneratorConfig
from limner.pipelines import TextToImagePipeline
from limner.text import BagOfWordsEncoder

TINY_GENERATOR = {"base_channels": 4, "noise_dim": 8, "condition_hidden": 16}
# the shapes preset gives its warp 8 private noise entries: a tiny generator has 8 in all
TINY_GENERATOR_ON_SHAPES = {**TINY_GENERATOR, "noise_warp_private": 2}
TINY_DISCRIMINATOR = {"base_channels": 4}


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """A small shapes imagefolder: 96 train and 24 test images at 32x32."""
    folder = tmp_path_factory.mktemp("shapes")
    build_shapes(folder, resolution=32, train_size=96, test_size=24, seed=0)
    return folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIMNER_CACHE", str(tmp_path / "cache"))


def tiny_train_overrides(data_dir, output_dir, *, kind: str | None = None, **extra):
    """Tiny, fast config values for one model kind (`kind`, else extra's "model", else the GAN):
    what every kind takes, plus the GAN's small networks and cadences where the kind is the GAN."""
    kind = kind or extra.get("model", "gan")
    values = {
        "train_data_dir": str(data_dir),
        "output_dir": str(output_dir),
        "text_encoder": "bag-of-words",
        "train_batch_size": 8,
        "max_train_steps": 4,
        "max_train_minutes": None,
        "logging_steps": 1,
    }
    if kind in ("gan", "vae"):
        values["validation_images_per_prompt"] = 2
    if kind == "gan":
        values.update({"checkpointing_steps": 2, "validation_steps": 2, "generator": TINY_GENERATOR, "discriminator": TINY_DISCRIMINATOR})
    return {**values, **extra}


def tiny_generator_config(**extra) -> GeneratorConfig:
    return GeneratorConfig(**{**TINY_GENERATOR, "text_dim": 12, **extra})


def tiny_discriminator_config(**extra) -> DiscriminatorConfig:
    return DiscriminatorConfig(**{**TINY_DISCRIMINATOR, "text_dim": 12, **extra})


def tiny_pipeline(seed: int = 0) -> TextToImagePipeline:
    """A random tiny generator whose images still depend on noise and caption."""
    torch.manual_seed(seed)
    encoder = BagOfWordsEncoder.from_captions(["a small red circle in the top left", "a large blue square"])
    generator = Generator(tiny_generator_config(text_dim=encoder.dim))
    torch.nn.init.normal_(generator.blocks[0].fuse1.affine1.shift[2].weight, std=0.5)
    return TextToImagePipeline(generator, encoder)


def tiny_captioner_pipeline(captions=("a small red circle in the top left",)):
    """A random tiny captioner over MiniLM's tokenizer (the vocabulary of `captions`)."""
    from limner.models.captioner import Captioner, CaptionerConfig
    from limner.pipelines.image_to_text import ImageToTextPipeline
    from limner.text.caption_vocabulary import CaptionVocabulary, load_tokenizer

    tokenizer = load_tokenizer("all-MiniLM-L6-v2")
    torch.manual_seed(0)
    captioner = Captioner(CaptionerConfig(base_channels=4, width=32, heads=2, layers=1, max_length=8,
                                          vocabulary=CaptionVocabulary.collect(tokenizer, list(captions))))
    return ImageToTextPipeline(captioner, "all-MiniLM-L6-v2", tokenizer=tokenizer)
