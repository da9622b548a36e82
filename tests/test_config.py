import json

import pytest

from limner.config import config_from_dict, config_to_dict, load_config_json, save_config_json
from limner.errors import ConfigError
from limner.models import GeneratorConfig
from limner.training import CONFIG_CLASSES, GANTrainConfig, PRESETS, build_train_config, load_train_config


def test_train_config_round_trips_through_json(tmp_path):
    config = build_train_config("shapes", {"max_train_steps": 7, "generator": {"base_channels": 8}})
    save_config_json(config, tmp_path / "c.json")
    assert load_config_json(GANTrainConfig, tmp_path / "c.json") == config


@pytest.mark.parametrize("kind", list(CONFIG_CLASSES))
@pytest.mark.parametrize("preset", PRESETS)
def test_every_kind_builds_from_every_preset_and_round_trips(tmp_path, kind, preset):
    config = build_train_config(preset, {"model": kind, "seed": 9})
    assert type(config) is CONFIG_CLASSES[kind] and config.model == kind and config.seed == 9
    assert config.output_dir.startswith(f"outputs/{preset}")
    save_config_json(config, tmp_path / "c.json")
    assert load_train_config(tmp_path / "c.json") == config


def test_each_kind_keeps_its_own_defaults():
    evaluator, aligner = build_train_config("shapes", {"model": "evaluator"}), build_train_config("shapes", {"model": "aligner"})
    gan = build_train_config("shapes", {})
    assert (evaluator.seed, aligner.seed, gan.seed) == (1234, 4321, 0)  # the scorers never share the generator's seed
    assert (evaluator.max_train_minutes, gan.max_train_minutes) == (3, 10)
    assert evaluator.output_dir == "outputs/shapes-evaluator" and gan.output_dir == "outputs/shapes"
    assert evaluator.text_pooling == gan.text_pooling == "anchored"  # the preset's common section reaches every kind


def test_a_setting_of_another_kind_is_refused_by_name():
    with pytest.raises(ConfigError, match="'learning_rate' is a setting of --model gan, not of --model evaluator"):
        build_train_config("shapes", {"model": "evaluator", "learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="'validation_prompts' is a setting of --model gan or vae, not of --model aligner"):
        build_train_config(None, {"model": "aligner", "validation_prompts": ["x"]})
    with pytest.raises(ConfigError, match="model must be one of"):
        build_train_config(None, {"model": "diffusion"})


def test_unknown_key_is_rejected_with_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['base_channel'\].*valid keys"):
        config_from_dict(GeneratorConfig, {"base_channel": 8})


def test_nested_unknown_key_names_its_path():
    with pytest.raises(ConfigError, match=r"generator.*unknown key"):
        build_train_config("shapes", {"generator": {"nope": 1}})


def test_flags_override_preset_which_overrides_defaults():
    config = build_train_config("shapes", {"seed": 5})
    assert config.seed == 5
    assert config.resolution == 32 and config.output_dir == "outputs/shapes"
    assert GANTrainConfig().output_dir == "outputs/run"


def test_bad_values_are_rejected():
    with pytest.raises(ConfigError, match="resolution must be one of"):
        config_from_dict(GeneratorConfig, {"resolution": 48})
    with pytest.raises(ConfigError, match="train_batch_size must be at least 2"):
        build_train_config(None, {"train_batch_size": 1})
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        build_train_config("nope")
    with pytest.raises(ConfigError, match=r"reconstruction_best_of must be 1 \(off\) to 64"):
        build_train_config(None, {"reconstruction_best_of": 0})
    with pytest.raises(ConfigError, match=r"evaluator_resolution .* at most resolution \(32\), got 64"):
        build_train_config(None, {"model": "evaluator", "resolution": 32, "evaluator_resolution": 64})


def test_the_evaluator_may_read_images_below_the_training_resolution():
    config = build_train_config("emoji-styles", {"model": "evaluator"})
    assert config.resolution == 64 and config.evaluator_config(384).resolution == 32
    assert build_train_config(None, {"model": "evaluator", "resolution": 64}).evaluator_config(384).resolution == 64  # unset: the training resolution


def test_tuples_survive_the_trip():
    config = config_from_dict(GeneratorConfig, json.loads(json.dumps(config_to_dict(GeneratorConfig()))))
    assert config == GeneratorConfig()


def test_absurd_resolution_is_refused_before_any_data_is_read():
    with pytest.raises(ConfigError, match=r"resolution must be one of \(32, 64, 128, 256\), got 100000"):
        build_train_config("shapes", {"resolution": 100000, "train_data_dir": "/nowhere"})


def test_text_components_auto_counts_the_directions_captions_vary_in():
    import torch

    torch.manual_seed(0)
    sentences = torch.randn(1, 16) + torch.randn(40, 3) @ torch.randn(3, 16)  # three real directions
    sentences += 1e-4 * torch.randn(40, 16)  # and numerical dust
    generator, discriminator = GANTrainConfig(text_components="auto").model_configs(16, sentences)
    assert generator.text_components == discriminator.text_components == 3
    assert GANTrainConfig(text_components=5).model_configs(16)[0].text_components == 5
    with pytest.raises(ConfigError, match="needs the training captions"):
        GANTrainConfig(text_components="auto").model_configs(16)
    for bad in (-1, "all", 2.5):
        with pytest.raises(ConfigError, match="text_components"):
            GANTrainConfig(text_components=bad)
