"""Low-rank adapters: `limner finetune`, the PEFT-layout folder, and loading, weighing, fusing
and refusing adapters on a pipeline."""

import json

import pytest
import torch

from limner.cli import main
from limner.errors import ConfigError, ModelLoadError
from limner.models import lora
from limner.pipelines import TextToImagePipeline, load_pipeline
from limner.training import Trainer, build_train_config
from limner.training.finetune import FinetuneTrainer, finetune, finetune_config
from tests.conftest import tiny_pipeline, tiny_train_overrides

PROMPT = "a small red circle in the top left"


def _draw(pipe) -> torch.Tensor:
    return pipe.generate_tensors([PROMPT], num_images_per_prompt=3, seed=0)


def _trained_adapter(pipe, folder, *, seed: int, rank: int = 4):
    """An adapter on `pipe`'s generator with random (non-zero) weights, saved to `folder`."""
    torch.manual_seed(seed)
    config = lora.add_lora(pipe.generator, rank=rank)
    with torch.no_grad():
        for name, parameter in pipe.generator.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.3)
    lora.save_lora(pipe.generator, folder, config, base=lora.base_fingerprint(pipe.generator, pipe.text_encoder))
    return _draw(pipe)


def test_a_fresh_adapter_changes_nothing_and_freezes_the_base():
    pipe = tiny_pipeline()
    before = _draw(pipe)
    lora.add_lora(pipe.generator, rank=4)
    assert torch.equal(_draw(pipe), before)  # B starts at zero
    trained = [name for name, p in pipe.generator.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in name for name in trained)
    assert lora.trainable_parameter_count(pipe.generator) < sum(p.numel() for p in pipe.generator.parameters())


def test_an_adapter_saves_alone_in_the_peft_layout_and_loads_back(tmp_path):
    base = tiny_pipeline()
    base.save_pretrained(tmp_path / "base")
    adapted = _trained_adapter(tiny_pipeline(), tmp_path / "adapter", seed=1)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "limner_adapter.json"]
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 4
    assert lora.adapter_size_bytes(tmp_path / "adapter") < sum(p.stat().st_size for p in (tmp_path / "base" / "generator").iterdir())

    pipe = TextToImagePipeline.from_pretrained(tmp_path / "base")
    plain = _draw(pipe)
    assert not torch.allclose(plain, adapted, atol=1e-3)
    assert pipe.load_lora(tmp_path / "adapter") == "adapter" and pipe.adapters == ["adapter"]
    torch.testing.assert_close(_draw(pipe), adapted)
    pipe.set_adapters("adapter", 0.0)
    torch.testing.assert_close(_draw(pipe), plain)
    pipe.set_adapters(["adapter"], [1.0])
    pipe.fuse_lora()
    torch.testing.assert_close(_draw(pipe), adapted, atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="unfuse_lora"):
        pipe.set_adapters("adapter", 0.5)
    pipe.unfuse_lora()
    torch.testing.assert_close(_draw(pipe), adapted, atol=1e-5, rtol=1e-4)


def test_two_adapters_by_name_and_weight(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "base")
    _trained_adapter(tiny_pipeline(), tmp_path / "one", seed=1)
    _trained_adapter(tiny_pipeline(), tmp_path / "two", seed=2)
    pipe = load_pipeline(f"{tmp_path / 'base'}+{tmp_path / 'one'}:0.5+{tmp_path / 'two'}")  # what `limner serve` takes
    assert pipe.adapters == ["one", "two"]
    both = _draw(pipe)
    pipe.set_adapters(["one"], [0.5])
    only_one = _draw(pipe)
    assert not torch.allclose(both, only_one, atol=1e-3)
    with pytest.raises(ConfigError, match=r"unknown adapter\(s\) \['three'\]; loaded: \['one', 'two'\]"):
        pipe.set_adapters(["three"])
    with pytest.raises(ConfigError, match="loaded already"):
        pipe.load_lora(tmp_path / "one")


def test_adapters_for_another_base_or_damaged_are_refused(tmp_path):
    _trained_adapter(tiny_pipeline(), tmp_path / "adapter", seed=1)
    from limner.models import Generator
    from tests.conftest import tiny_generator_config

    wider = TextToImagePipeline(Generator(tiny_generator_config(text_dim=tiny_pipeline().text_encoder.dim, base_channels=8)),
                                tiny_pipeline().text_encoder)
    with pytest.raises(ModelLoadError, match="another base model.*base_channels"):
        wider.load_lora(tmp_path / "adapter")
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="cannot read the adapter"):
        tiny_pipeline().load_lora(tmp_path / "adapter")
    with pytest.raises(ModelLoadError, match="no limner_adapter.json"):
        tiny_pipeline().load_lora(tmp_path)


@pytest.fixture(scope="module")
def tiny_base(tiny_shapes, tmp_path_factory):
    """A tiny GAN trained 4 steps on tiny shapes, with its checkpoints."""
    folder = tmp_path_factory.mktemp("base")
    Trainer(build_train_config(None, tiny_train_overrides(tiny_shapes, folder)), progress=False).train()
    return folder


def test_finetune_trains_only_an_adapter_and_leaves_the_base_alone(tiny_base, tiny_shapes, tmp_path):
    base_weights = (tiny_base / "generator" / "model.safetensors").read_bytes()
    config = finetune_config(tiny_base, {"train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "adapter"), "max_train_steps": 3,
                                         "lora_rank": 2, "max_train_minutes": None})
    trainer = FinetuneTrainer(config, progress=False)
    assert all(not p.requires_grad for name, p in trainer.models.generator.named_parameters() if "lora_" not in name)
    result = trainer.train()
    assert result.steps == 3 and (tiny_base / "generator" / "model.safetensors").read_bytes() == base_weights
    info = json.loads((tmp_path / "adapter" / "finetune.json").read_text())
    assert info["method"] == "lora" and 0 < info["trainable_parameters"] < info["base_parameters"]
    assert (tmp_path / "adapter" / "samples.png").is_file()
    pipe = TextToImagePipeline.from_pretrained(tiny_base)
    plain = _draw(pipe)
    pipe.load_lora(tmp_path / "adapter")
    assert not torch.allclose(_draw(pipe), plain)  # three steps moved the adapter off zero
    assert main(["generate", str(tiny_base), PROMPT, "-n", "2", "-o", str(tmp_path / "grid.png"), "--lora", f"{tmp_path / 'adapter'}:0.5"]) == 0


def test_finetune_with_discriminator_adapters_keeps_both_bases_frozen(tiny_base, tiny_shapes, tmp_path):
    config = finetune_config(tiny_base, {"train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "out"), "max_train_steps": 2,
                                         "lora_discriminator": True, "max_train_minutes": None})
    trainer = FinetuneTrainer(config, progress=False)
    frozen = {name: p.detach().clone() for name, p in trainer.models.discriminator.named_parameters() if "lora_" not in name}
    trainer.train()
    for name, parameter in trainer.models.discriminator.named_parameters():
        if name in frozen:
            assert not parameter.requires_grad and torch.equal(parameter, frozen[name]), name


def test_full_finetune_writes_a_whole_model(tiny_base, tiny_shapes, tmp_path):
    result = finetune(finetune_config(tiny_base, {"train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "full"),
                                                  "method": "full", "max_train_steps": 2, "max_train_minutes": None}), progress=False)
    assert result.steps == 2 and TextToImagePipeline.from_pretrained(tmp_path / "full").adapters == []


def test_prior_preservation_pulls_the_adapted_generator_back_to_the_base(tiny_base, tiny_shapes, tmp_path):
    config = finetune_config(tiny_base, {"train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "out"), "max_train_steps": 1,
                                         "max_train_minutes": None, "preservation_captions": 20, "learning_rate": 1e-3})
    trainer = FinetuneTrainer(config, progress=False)
    assert trainer.preserved.shape == (20, trainer.text_encoder.dim)  # the base's own captions, encoded
    with torch.no_grad():  # an adapter already far from zero: the base's pictures have drifted
        for name, parameter in trainer.models.generator.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.3, generator=torch.Generator().manual_seed(0))
    losses = [trainer._preservation_step() for _ in range(12)]
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(not p.requires_grad for n, p in trainer.base_generator.named_parameters())


def test_prior_preservation_needs_the_bases_data_or_says_to_turn_it_off(tiny_shapes, tmp_path):
    import shutil

    data = tmp_path / "shapes-copy"
    shutil.copytree(tiny_shapes, data)
    base = tmp_path / "base"
    Trainer(build_train_config(None, tiny_train_overrides(data, base)), progress=False).train()
    shutil.rmtree(data)
    config = finetune_config(base, {"train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "out"), "max_train_steps": 1})
    with pytest.raises(ConfigError, match="preservation_weight 0"):
        FinetuneTrainer(config, progress=False)
    config = finetune_config(base, {"train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "out"), "max_train_steps": 1,
                                    "preservation_weight": 0.0})
    assert FinetuneTrainer(config, progress=False).preserved is None


@pytest.mark.parametrize("overrides, message", [
    ({}, "output folder"),
    ({"output_dir": "x", "method": "prefix"}, "method must be one of"),
    ({"output_dir": "x", "lora_rank": 0}, "lora_rank"),
    ({"output_dir": "x", "preservation_weight": -1.0}, "preservation_weight"),
    ({"output_dir": "x", "resume_from_checkpoint": "latest"}, "does not resume"),
    ({"output_dir": "BASE"}, "is the base's own folder"),
])
def test_finetune_settings_are_checked(tiny_base, overrides, message):
    overrides = {key: str(tiny_base) if value == "BASE" else value for key, value in overrides.items()}
    with pytest.raises(ConfigError, match=message):
        finetune_config(tiny_base, overrides)


def test_finetune_needs_a_gan_folder_with_its_training_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        finetune_config(tmp_path, {"output_dir": str(tmp_path / "out")})
    tiny_pipeline().save_pretrained(tmp_path / "bare")
    with pytest.raises(ModelLoadError, match="no training_config.json"):
        finetune_config(tmp_path / "bare", {"output_dir": str(tmp_path / "out")})


def test_the_server_serves_a_base_with_an_adapter_under_its_own_name(tmp_path):
    from fastapi.testclient import TestClient

    from limner.serving import ServeConfig, create_app

    tiny_pipeline().save_pretrained(tmp_path / "base")
    _trained_adapter(tiny_pipeline(), tmp_path / "flat", seed=1)
    models = {"tiny": load_pipeline(tmp_path / "base"), "tiny-flat": load_pipeline(f"{tmp_path / 'base'}+{tmp_path / 'flat'}")}
    with TestClient(create_app(models, ServeConfig())) as client:
        ask = lambda model: client.post("/v1/images/generations", json={"model": model, "prompt": PROMPT, "seed": 3})  # noqa: E731
        plain, adapted = ask("tiny"), ask("tiny-flat")
        assert plain.status_code == adapted.status_code == 200
        assert plain.json()["data"] != adapted.json()["data"]
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny", "tiny-flat"]


# ---- textual inversion ---------------------------------------------------------------

WORD = "<shiny>"


def _worded_copy(data, target, word: str = WORD):
    """The imagefolder `data` with `word` written into every caption ("a <shiny> small red circle ...")."""
    import shutil

    shutil.copytree(data, target)
    for metadata in target.glob("*/metadata.jsonl"):
        rows = [json.loads(line) for line in metadata.read_text().splitlines() if line.strip()]
        for row in rows:
            texts = row["text"] if isinstance(row["text"], list) else [row["text"]]
            row["text"] = [text.replace("a ", f"a {word} ", 1) for text in texts]
        metadata.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return target


@pytest.fixture(scope="module")
def minilm_base(tiny_shapes, tmp_path_factory):
    """A tiny GAN reading captions with all-MiniLM-L6-v2, trained 4 steps."""
    folder = tmp_path_factory.mktemp("minilm-base")
    overrides = tiny_train_overrides(tiny_shapes, folder, text_encoder="all-MiniLM-L6-v2")
    Trainer(build_train_config(None, overrides), progress=False).train()
    return folder


def test_a_learned_word_is_read_in_context_and_learns_by_gradient():
    from limner.text import HuggingFaceTextEncoder, BagOfWordsEncoder
    from limner.text.learned_words import LearnedWordsEncoder, word_vector

    base = HuggingFaceTextEncoder()
    vector = torch.nn.Parameter(word_vector(base, "style"))
    learned = LearnedWordsEncoder(base, {WORD: vector})
    plain = "a small red circle in the top left"
    torch.testing.assert_close(learned.encode([plain]).sentence, base.encode([plain]).sentence)
    worded = f"a {WORD} small red circle in the top left"
    assert not torch.allclose(learned.encode([worded]).sentence, base.encode([worded]).sentence)
    learned.encode_live([worded]).sentence.sum().backward()
    assert vector.grad is not None and vector.grad.abs().sum() > 0
    assert learned.config()["learned_words"][WORD] != LearnedWordsEncoder(base, {WORD: vector.detach() + 1}).config()["learned_words"][WORD]
    with pytest.raises(ConfigError, match="already a word"):
        LearnedWordsEncoder(base, {"style": vector.detach()})
    with pytest.raises(ConfigError, match="word embeddings are"):
        LearnedWordsEncoder(base, {WORD: torch.zeros(5)})
    with pytest.raises(ConfigError, match="Hugging Face language model"):
        LearnedWordsEncoder(BagOfWordsEncoder.from_captions([plain]), {WORD: vector.detach()})


def test_textual_inversion_learns_one_word_and_nothing_else(minilm_base, tiny_shapes, tmp_path):
    from limner.text.learned_words import LEARNED_WORDS

    data = _worded_copy(tiny_shapes, tmp_path / "worded")
    base_weights = (minilm_base / "generator" / "model.safetensors").read_bytes()
    config = finetune_config(minilm_base, {"train_data_dir": str(data), "output_dir": str(tmp_path / "word"), "method": "textual-inversion",
                                           "token": WORD, "max_train_steps": 3, "max_train_minutes": None})
    assert config.learning_rate == 5e-3
    result = finetune(config, progress=False)
    assert result.steps == 3 and (minilm_base / "generator" / "model.safetensors").read_bytes() == base_weights
    info = json.loads((tmp_path / "word" / "finetune.json").read_text())
    assert info["token"] == WORD and info["trainable_parameters"] == 384
    from safetensors.torch import load_file
    from limner.text import HuggingFaceTextEncoder
    from limner.text.learned_words import word_vector

    learned = load_file(str(tmp_path / "word" / LEARNED_WORDS))[WORD]
    assert not torch.allclose(learned, word_vector(HuggingFaceTextEncoder(), "style"))  # it moved from where it started

    pipe = TextToImagePipeline.from_pretrained(minilm_base)
    prompt = f"a {WORD} small red circle in the top left"
    before = pipe.generate_tensors([prompt], seed=0)
    assert pipe.load_textual_inversion(tmp_path / "word") == [WORD] and pipe.learned_words == [WORD]
    assert not torch.allclose(pipe.generate_tensors([prompt], seed=0), before)
    with pytest.raises(ConfigError, match="save the base model and them apart"):
        pipe.save_pretrained(tmp_path / "copy")
    with pytest.raises(ConfigError, match="loaded already"):
        pipe.load_textual_inversion(tmp_path / "word")
    served = load_pipeline(f"{minilm_base}+{tmp_path / 'word'}")
    assert served.learned_words == [WORD]
    assert main(["generate", str(minilm_base), prompt, "-n", "1", "-o", str(tmp_path / "g.png"), "--textual-inversion", str(tmp_path / "word")]) == 0
    with pytest.raises(ModelLoadError, match="another base model"):
        tiny_pipeline().load_textual_inversion(tmp_path / "word")


def test_textual_inversion_needs_its_word_in_the_captions_and_a_language_model(minilm_base, tiny_base, tiny_shapes, tmp_path):
    with pytest.raises(ConfigError, match="needs token"):
        finetune_config(minilm_base, {"output_dir": str(tmp_path / "w"), "method": "textual-inversion"})
    config = finetune_config(minilm_base, {"train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "w"),
                                           "method": "textual-inversion", "token": WORD, "max_train_steps": 1})
    with pytest.raises(ConfigError, match="no training caption .* uses"):
        finetune(config, progress=False)
    config = finetune_config(tiny_base, {"train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "b"),
                                         "method": "textual-inversion", "token": WORD, "max_train_steps": 1})
    with pytest.raises(ConfigError, match="Hugging Face language model"):
        finetune(config, progress=False)
