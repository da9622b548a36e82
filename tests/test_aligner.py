"""The aligner (a dual encoder in the aligner role): ranks matched image-caption pairs first, saves and
loads, gives a differentiable score, trains from the CLI and ranks from it; loaders keep the roles apart
and read the folders of earlier releases."""

import json

import pytest
import torch
from PIL import Image

from limner.cli import main
from limner.errors import ConfigError, ModelLoadError
from limner.models.dual_encoder import DualEncoder, DualEncoderConfig, aligner_config
from limner.pipelines import DualEncoderPipeline, load_pipeline
from limner.pipelines.dual_encoder import load_evaluator
from limner.serving import ServeConfig, create_app
from limner.text import BagOfWordsEncoder
from limner.training.losses import contrastive_loss
from limner.utils.images import to_pil
from tests.conftest import tiny_train_overrides

CAPTIONS = ["a red circle", "a blue square", "a green triangle", "a large red square",
            "a small blue circle", "a green square", "a red triangle", "a blue triangle"]


def tiny_aligner(encoder) -> DualEncoder:
    torch.manual_seed(0)
    aligner = DualEncoder(aligner_config(text_dim=encoder.dim, base_channels=8, embedding_dim=32, text_hidden=64))
    aligner.text_norm.fit(encoder.encode(CAPTIONS).sentence)
    return aligner


def logits_of(model, images, sentence):
    """Every image against every caption: cosines over the temperature (B_images, B_captions)."""
    return model.image_embedding(images) @ model.text_embedding(sentence).T / model.temperature()


def test_after_overfitting_a_batch_matched_pairs_rank_first():
    encoder = BagOfWordsEncoder.from_captions(CAPTIONS)
    aligner = tiny_aligner(encoder)
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    sentence = encoder.encode(CAPTIONS).sentence
    assert (logits_of(aligner, images, sentence).argmax(1) == torch.arange(8)).sum() < 8  # not already solved by chance
    optimizer = torch.optim.Adam(aligner.parameters(), lr=3e-3)
    start = aligner.temperature().item()
    for _ in range(150):
        loss = contrastive_loss(aligner.image_embedding(images), aligner.text_embedding(sentence), torch.eye(8, dtype=torch.bool),
                                temperature=aligner.temperature())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    logits = logits_of(aligner, images, sentence)
    assert torch.equal(logits.argmax(1), torch.arange(8)) and torch.equal(logits.argmax(0), torch.arange(8))
    assert aligner.temperature().item() != start  # the temperature is learnt
    pipe = DualEncoderPipeline(aligner, encoder)
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
    pipe = DualEncoderPipeline(tiny_aligner(encoder), encoder)
    pipe.save_pretrained(tmp_path / "aligner")
    loaded = load_pipeline(tmp_path / "aligner")
    pictures = [Image.new("RGB", (40, 30), c) for c in ("red", "blue", "green")]
    assert isinstance(loaded, DualEncoderPipeline) and loaded.role == "aligner"
    assert torch.equal(loaded.similarities(pictures, CAPTIONS), pipe.similarities(pictures, CAPTIONS))
    with pytest.raises(ConfigError, match="serve takes text-to-image generators and captioners"):
        create_app({"aligner": loaded}, ServeConfig())


def test_train_and_rank_from_the_command_line(tiny_shapes, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    overrides = tiny_train_overrides(tiny_shapes, tmp_path / "aligner", kind="aligner", max_train_steps=5)
    overrides["aligner"] = {"base_channels": 4, "embedding_dim": 16, "text_hidden": 32}
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


def test_loaders_keep_the_roles_apart(tmp_path):
    encoder = BagOfWordsEncoder.from_captions(CAPTIONS)
    DualEncoderPipeline(tiny_aligner(encoder), encoder, {"steps": 3}).save_pretrained(tmp_path / "aligner")
    with pytest.raises(ModelLoadError, match="holds an aligner, not an evaluator"):
        load_evaluator(tmp_path / "aligner")  # an aligner was a training signal: it must never judge
    evaluator = DualEncoder(DualEncoderConfig(text_dim=encoder.dim, base_channels=4))
    DualEncoderPipeline(evaluator, encoder, {"steps": 7}).save_pretrained(tmp_path / "evaluator")
    with pytest.raises(ModelLoadError, match="holds an evaluator, not an aligner"):
        DualEncoderPipeline.from_pretrained(tmp_path / "evaluator", role="aligner")
    model, _, info = load_evaluator(tmp_path / "evaluator")
    assert model.role == "evaluator" and info == {"steps": 7}


def _save_as_earlier_release(model: DualEncoder, folder, class_name: str, renames: dict) -> None:
    """Write `model` as the separate Evaluator or Aligner classes of earlier releases saved it."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    config = {k: v for k, v in json.loads(json.dumps(model.config.__dict__, default=list)).items() if k not in ("role", "image_pooling")}
    if class_name == "Aligner":
        config = {"embed_dim": config.pop("embedding_dim"), **{k: v for k, v in config.items() if k not in ("styles", "style_weight")}}
    else:
        config.pop("text_hidden"), config.pop("initial_temperature")
    (folder / "config.json").write_text(json.dumps({"_class_name": class_name, **config}))
    state = {}
    for name, tensor in model.state_dict().items():
        for new, old in renames.items():
            name = old + name[len(new):] if name.startswith(new) else name
        state[name] = tensor.contiguous()
    save_file(state, str(folder / "model.safetensors"))


@pytest.mark.parametrize("role", ["evaluator", "aligner"])
def test_folders_of_earlier_releases_still_load(tmp_path, role):
    encoder = BagOfWordsEncoder.from_captions(CAPTIONS)
    if role == "aligner":
        model = tiny_aligner(encoder)
        _save_as_earlier_release(model, tmp_path / "old" / "aligner", "Aligner",
                                 {"image_projection.": "image_head.", "text_projection.": "text_head.", "logit_scale": "log_scale"})
        (tmp_path / "old" / "model_index.json").write_text(json.dumps({"_class_name": "AlignmentPipeline"}))
    else:
        torch.manual_seed(0)
        model = DualEncoder(DualEncoderConfig(text_dim=encoder.dim, base_channels=4, embedding_dim=16, text_hidden=32)).eval()
        _save_as_earlier_release(model, tmp_path / "old" / "evaluator", "Evaluator", {})
        (tmp_path / "old" / "evaluator_index.json").write_text(json.dumps({"_class_name": "Evaluator", "steps": 5}))
    (tmp_path / "old" / "text_encoder").mkdir()
    (tmp_path / "old" / "text_encoder" / "config.json").write_text(json.dumps(encoder.config()))
    loaded = DualEncoderPipeline.from_pretrained(tmp_path / "old", role=role)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    sentence = encoder.encode(CAPTIONS[:3]).sentence
    assert loaded.role == role
    assert torch.equal(logits_of(loaded.model, images, sentence), logits_of(model.eval(), images, sentence))
