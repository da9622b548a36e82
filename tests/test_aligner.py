"""The aligner: a dual encoder that ranks matched image-caption pairs first, saves and loads,
gives a differentiable score, trains from the CLI and ranks from it."""

import json

import pytest
import torch
from PIL import Image

from limner.cli import main
from limner.errors import ConfigError
from limner.models.aligner import Aligner, AlignerConfig
from limner.pipelines import AlignmentPipeline, load_pipeline
from limner.serving import ServeConfig, create_app
from limner.text import BagOfWordsEncoder
from limner.training.losses import contrastive_loss
from limner.utils.images import to_pil
from tests.conftest import tiny_train_overrides

CAPTIONS = ["a red circle", "a blue square", "a green triangle", "a large red square",
            "a small blue circle", "a green square", "a red triangle", "a blue triangle"]


def tiny_aligner(encoder) -> Aligner:
    torch.manual_seed(0)
    aligner = Aligner(AlignerConfig(text_dim=encoder.dim, base_channels=8, embed_dim=32, text_hidden=64))
    aligner.text_norm.fit(encoder.encode(CAPTIONS).sentence)
    return aligner


def test_after_overfitting_a_batch_matched_pairs_rank_first():
    encoder = BagOfWordsEncoder.from_captions(CAPTIONS)
    aligner = tiny_aligner(encoder)
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    sentence = encoder.encode(CAPTIONS).sentence
    assert (aligner(images, sentence).argmax(1) == torch.arange(8)).sum() < 8  # not already solved by chance
    optimizer = torch.optim.Adam(aligner.parameters(), lr=3e-3)
    start = aligner.temperature().item()
    for _ in range(150):
        loss = contrastive_loss(aligner.image_embedding(images), aligner.text_embedding(sentence), torch.eye(8, dtype=torch.bool),
                                temperature=aligner.temperature())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    logits = aligner(images, sentence)
    assert torch.equal(logits.argmax(1), torch.arange(8)) and torch.equal(logits.argmax(0), torch.arange(8))
    assert aligner.temperature().item() != start  # the temperature is learnt
    pipe = AlignmentPipeline(aligner, encoder)
    pictures = to_pil(images)
    assert pipe.rank_captions(pictures[3], CAPTIONS)[0][0] == CAPTIONS[3]
    assert pipe.rank_images(CAPTIONS[5], pictures)[0][0] == 5


def test_the_score_is_differentiable_with_respect_to_the_image():
    encoder = BagOfWordsEncoder.from_captions(CAPTIONS)
    aligner = tiny_aligner(encoder)
    images = torch.zeros(2, 3, 32, 32, requires_grad=True)
    score = aligner.score(images, encoder.encode(CAPTIONS[:2]).sentence)
    assert score.shape == (2,) and (score.abs() <= 1 + 1e-6).all()
    score.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_save_and_load_give_identical_scores_and_serving_refuses_it(tmp_path):
    encoder = BagOfWordsEncoder.from_captions(CAPTIONS)
    pipe = AlignmentPipeline(tiny_aligner(encoder), encoder)
    pipe.save_pretrained(tmp_path / "aligner")
    loaded = load_pipeline(tmp_path / "aligner")
    pictures = [Image.new("RGB", (40, 30), c) for c in ("red", "blue", "green")]
    assert isinstance(loaded, AlignmentPipeline)
    assert torch.equal(loaded.similarities(pictures, CAPTIONS), pipe.similarities(pictures, CAPTIONS))
    with pytest.raises(ConfigError, match="serve takes text-to-image generators and captioners"):
        create_app({"aligner": loaded}, ServeConfig())


def test_train_and_rank_from_the_command_line(tiny_shapes, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    overrides = tiny_train_overrides(tiny_shapes, tmp_path / "aligner", max_train_steps=5)
    overrides["aligner"] = {"base_channels": 4, "embed_dim": 16, "text_hidden": 32}
    config.write_text(json.dumps(overrides))
    assert main(["train", "--model", "aligner", "--config", str(config), "--no-progress"]) == 0
    assert "test image to caption R@1" in capsys.readouterr().out
    scores = json.loads((tmp_path / "aligner" / "aligner_scores.json").read_text())
    assert scores["steps"] == 5 and 0 <= scores["test"]["image_to_caption_r1"] <= scores["test"]["image_to_caption_r5"] <= 1
    image = next((tiny_shapes / "test").glob("*.png"))
    assert main(["rank", str(tmp_path / "aligner"), "--image", str(image), "--captions", "a red circle", "a blue square"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and {line.split("\t")[1] for line in lines} == {"a red circle", "a blue square"}
    assert main(["rank", str(tmp_path / "aligner"), "--caption", "a red circle", "--images", str(image), str(image)]) == 0
    assert main(["rank", str(tmp_path / "aligner"), "--caption", "a red circle"]) == 2  # nothing to rank: a clear refusal
