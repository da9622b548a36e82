"""The output checker: trained from two folders, saved beside its evaluator, loaded with a model,
blanking and flagging what it catches, in the pipeline and the server."""

import shutil

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from limner.cli import main
from limner.errors import DataError, ModelLoadError
from limner.models.dual_encoder import DualEncoder, DualEncoderConfig
from limner.pipelines import TextToImagePipeline
from limner.pipelines.dual_encoder import save_evaluator
from limner.pipelines.safety_checker import SafetyChecker
from limner.serving import ServeConfig, create_app
from limner.text import BagOfWordsEncoder
from limner.training.safety_trainer import SafetyTrainConfig, train_safety_checker
from tests.conftest import tiny_pipeline


def write_evaluator(folder, seed=0):
    torch.manual_seed(seed)
    encoder = BagOfWordsEncoder.from_captions(["a red thing", "a blue thing"])
    save_evaluator(folder, DualEncoder(DualEncoderConfig(base_channels=4, text_dim=encoder.dim)), encoder, {"steps": 0})
    return folder


def write_images(folder, colour, count, seed):
    """Flat `colour` squares with pixel noise: the unwanted kind is red, the allowed blue or green."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        base = np.array(colour if not callable(colour) else colour(i), dtype=float)
        pixels = np.clip(base + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture
def folders(tmp_path):
    return {
        "evaluator": write_evaluator(tmp_path / "evaluator"),
        "unwanted": write_images(tmp_path / "unwanted", (220, 30, 30), 16, seed=1),
        "allowed": write_images(tmp_path / "allowed", lambda i: (30, 30, 220) if i % 2 else (30, 200, 30), 48, seed=2),
    }


def config(folders, tmp_path, **extra):
    return SafetyTrainConfig(evaluator_dir=str(folders["evaluator"]), unwanted_images=str(folders["unwanted"]),
                             allowed_images=str(folders["allowed"]), output_dir=str(tmp_path / "checker"), steps=300, **extra)


def test_the_checker_learns_the_unwanted_kind_and_reports_held_out_precision_and_recall(folders, tmp_path):
    result = train_safety_checker(config(folders, tmp_path), progress=False)
    assert result.train_images == {"unwanted": 12, "allowed": 36}
    assert result.held_out["unwanted"] == 4 and result.held_out["allowed"] == 12
    assert result.held_out["precision"] == 1.0 and result.held_out["recall"] == 1.0
    checker = SafetyChecker.from_pretrained(tmp_path / "checker")
    red = torch.full((2, 3, 32, 32), -1.0)
    red[:, 0] = 0.7
    blue = torch.full((2, 3, 32, 32), -1.0)
    blue[:, 2] = 0.7
    assert checker(red).tolist() == [True, True] and checker(blue).tolist() == [False, False]


def test_a_checker_refuses_another_evaluators_features(folders, tmp_path):
    train_safety_checker(config(folders, tmp_path), progress=False)
    other = write_evaluator(tmp_path / "other", seed=5)
    shutil.rmtree(tmp_path / "checker" / "evaluator")
    shutil.copytree(other / "dual_encoder", tmp_path / "checker" / "evaluator")  # the model alone, as the checker keeps it
    with pytest.raises(ModelLoadError, match="another evaluator"):
        SafetyChecker.from_pretrained(tmp_path / "checker")


def test_a_corrupt_image_is_named_or_skipped_and_counted(folders, tmp_path):
    (folders["unwanted"] / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        train_safety_checker(config(folders, tmp_path), progress=False)
    assert not (tmp_path / "checker").exists()  # nothing half-written
    result = train_safety_checker(config(folders, tmp_path, skip_invalid_images=True), progress=False)
    assert result.skipped == 1


def test_a_model_folder_loads_its_checker_and_flagged_images_come_back_blank(folders, tmp_path):
    train_safety_checker(config(folders, tmp_path), progress=False)
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "model")
    shutil.copytree(tmp_path / "checker", tmp_path / "model" / "safety_checker")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "model")
    assert loaded.safety_checker is not None
    loaded.safety_checker.head.config.threshold = 1e-9  # everything is flagged
    output = loaded("a small red circle in the top left", num_images_per_prompt=2, seed=0, return_dict=True)
    assert output.nsfw_content_detected == [True, True]
    assert all(np.asarray(image).max() == 0 for image in output.images)
    loaded.safety_checker.head.config.threshold = 1 - 1e-9  # nothing is
    output = loaded("a small red circle in the top left", num_images_per_prompt=2, seed=0, return_dict=True)
    assert output.nsfw_content_detected == [False, False]
    assert all(np.asarray(image).max() > 0 for image in output.images)
    assert tiny_pipeline()("a large blue square", return_dict=True).nsfw_content_detected is None


@pytest.mark.parametrize("threshold, status", [(1e-9, 400), (1 - 1e-9, 200)])
def test_the_server_answers_content_policy_violation_for_flagged_images(folders, tmp_path, threshold, status):
    train_safety_checker(config(folders, tmp_path), progress=False)
    pipe = tiny_pipeline()
    pipe.safety_checker = SafetyChecker.from_pretrained(tmp_path / "checker")
    pipe.safety_checker.head.config.threshold = threshold
    with TestClient(create_app({"tiny": pipe}, ServeConfig())) as client:
        response = client.post("/v1/images/generations", json={"prompt": "a small red circle in the top left", "n": 2})
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"]["code"] == "content_policy_violation"


def test_the_cli_names_what_a_safety_checker_needs(capsys):
    assert main(["train", "--model", "safety-checker", "--allowed-images", "x"]) == 2
    assert "--evaluator-dir, --unwanted-images" in capsys.readouterr().err
