"""Channel pruning of the generator, its distillation, and `limner prune`."""

import json

import pytest
import torch

from limner.cli import main
from limner.errors import ConfigError
from limner.export import export_onnx
from limner.models import Generator
from limner.models.pruning import parameter_count, prune_generator
from limner.pipelines import TextToImagePipeline
from limner.training.distill import distill
from limner.training.prune import prune_model
from tests.conftest import tiny_generator_config, tiny_pipeline

PROMPTS = ["a small red circle in the top left", "a large blue square"]


def _generator(**extra) -> Generator:
    torch.manual_seed(0)
    return Generator(tiny_generator_config(base_channels=8, **extra)).eval()


@pytest.mark.parametrize("resolution", [32, 64])  # 64 px has an identity-shortcut block (128 -> 128 style widths)
def test_pruning_nothing_away_keeps_the_network_exactly(resolution):
    """An amount too small to remove a channel must give back the same function: every slice is right."""
    generator = _generator(resolution=resolution)
    same = prune_generator(generator, 0.001)
    assert list(same.config.stage_channels) == [8 * m for m in generator.config.channel_multipliers[-len(same.config.stage_channels):]]
    noise, sentence = torch.randn(3, generator.config.noise_dim), torch.randn(3, generator.config.text_dim)
    with torch.no_grad():
        assert torch.allclose(same(noise, sentence), generator(noise, sentence), atol=1e-6)


def test_pruning_half_the_channels_gives_a_smaller_generator_that_saves_loads_and_exports(tmp_path):
    generator = _generator(resolution=64)
    pruned = prune_generator(generator, 0.5)
    before = generator.config.stage_channels or tuple(8 * m for m in generator.config.channel_multipliers[-5:])
    assert pruned.config.stage_channels == tuple(round(c / 2) for c in before)
    assert parameter_count(pruned) < 0.7 * parameter_count(generator)
    noise, sentence = torch.randn(2, generator.config.noise_dim), torch.randn(2, generator.config.text_dim)
    assert pruned(noise, sentence).shape == (2, 3, 64, 64)
    text_encoder = tiny_pipeline().text_encoder
    small = prune_generator(Generator(tiny_generator_config(base_channels=8, text_dim=text_encoder.dim)), 0.5)
    TextToImagePipeline(small, text_encoder).save_pretrained(tmp_path / "model")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "model")
    assert loaded.generator.config.stage_channels == small.config.stage_channels
    assert export_onnx(tmp_path / "model")["generator_max_abs_diff"] < 1e-4


def test_pruning_refuses_amounts_outside_zero_to_one():
    for amount in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            prune_generator(_generator(), amount)


def test_distillation_brings_the_pruned_generator_towards_the_original():
    teacher = _generator()
    student = prune_generator(teacher, 0.5)
    sentences = torch.randn(16, teacher.config.text_dim)
    result = distill(student, teacher, sentences, max_minutes=0, max_steps=60, batch_size=16, learning_rate=2e-3, progress=False)
    assert result.steps == 60 and result.last_loss < 0.7 * result.first_loss, result


def test_prune_command_writes_a_model_that_loads(tmp_path, capsys):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "model")
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(PROMPTS) + "\n")
    code = main(["prune", str(tmp_path / "model"), "--amount", "0.5", "--output-dir", str(tmp_path / "pruned"),
                 "--distill-minutes", "0", "--distill-steps", "5", "--captions", str(captions), "--no-progress"])
    assert code == 0 and "pruned 50% of the channels" in capsys.readouterr().out
    report = json.loads((tmp_path / "pruned" / "prune.json").read_text())
    assert report["parameters_after"] < report["parameters_before"] and report["distillation"]["steps"] == 5
    pruned = TextToImagePipeline.from_pretrained(tmp_path / "pruned")
    assert len(pruned(PROMPTS, num_images_per_prompt=2, seed=0)) == 4
    assert not list(tmp_path.glob(".*partial"))  # nothing half-written left behind
    # bad input: the original's own folder, no captions to find
    with pytest.raises(ConfigError, match="folder of its own"):
        prune_model(tmp_path / "model", tmp_path / "model", amount=0.5, captions=PROMPTS, distill_minutes=0, distill_steps=1)
    assert main(["prune", str(tmp_path / "model"), "--amount", "0.5", "--output-dir", str(tmp_path / "p2")]) == 2
    assert "training_config.json" in capsys.readouterr().err
