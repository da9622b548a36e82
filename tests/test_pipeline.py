import pytest
import torch

from limner.errors import ConfigError, ModelLoadError
from limner.pipelines import GenerationRequest, TextToImagePipeline
from limner.utils.images import images_equal
from tests.conftest import tiny_pipeline


@pytest.fixture
def pipe():
    return tiny_pipeline()


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


def test_a_request_gets_the_same_images_in_a_shared_batch_as_alone(pipe):
    requests = [GenerationRequest("a red circle", 2, seed=5), GenerationRequest("a blue square", 3, seed=9, truncation=0.5),
                GenerationRequest("a red circle", 1, seed=11)]
    together = pipe.generate_batch(requests)
    assert [t.shape[0] for t in together] == [2, 3, 1]
    for request, images in zip(requests, together):
        alone = pipe.generate_tensors(request.prompt, num_images_per_prompt=request.num_images, seed=request.seed, truncation=request.truncation)
        assert torch.allclose(images, alone, atol=1e-5)
    assert not torch.allclose(together[0][:1], together[2])  # other seed, other image


def test_tampered_model_folders_are_refused_clearly(pipe, tmp_path):
    import json

    folder = tmp_path / "model"
    pipe.save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "os.system"}))
    with pytest.raises(ModelLoadError, match="not a TextToImagePipeline"):
        TextToImagePipeline.from_pretrained(folder)
    (folder / "model_index.json").write_text("{broken")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        TextToImagePipeline.from_pretrained(folder)
    (folder / "model_index.json").write_text(json.dumps({**index, "guidance_scale": "strong"}))
    with pytest.raises(ModelLoadError, match="guidance_scale must be a number"):
        TextToImagePipeline.from_pretrained(folder)
    (folder / "model_index.json").write_text(json.dumps(index))
    config = json.loads((folder / "generator" / "config.json").read_text())
    (folder / "generator" / "config.json").write_text(json.dumps({**config, "base_channels": config["base_channels"] * 2}))
    with pytest.raises(ModelLoadError, match="do not fit the config"):
        TextToImagePipeline.from_pretrained(folder)
    (folder / "generator" / "config.json").write_text(json.dumps(config))
    (folder / "text_encoder" / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="text_encoder/config.json is missing"):
        TextToImagePipeline.from_pretrained(folder)


def test_guidance_scale_pushes_captions_from_the_training_mean_and_travels_with_the_model(pipe, tmp_path):

    pipe.generator.text_norm.mean.normal_(generator=torch.Generator().manual_seed(0))
    pipe = TextToImagePipeline(pipe.generator, pipe.text_encoder)  # reads the fitted mean as its centre
    sentence = pipe.text_encoder.encode(["a red circle"]).sentence
    assert torch.equal(pipe.guided(sentence), sentence)  # 1: unchanged
    plain = pipe.generate_tensors("a red circle", num_images_per_prompt=2, seed=4)
    pipe.guidance_scale = 2.0
    centre = pipe.generator.text_norm.mean
    assert torch.allclose(pipe.guided(sentence) - centre, 2 * (sentence - centre), atol=1e-6)
    guided = pipe.generate_tensors("a red circle", num_images_per_prompt=2, seed=4)
    assert not torch.allclose(plain, guided)
    together = pipe.generate_batch([GenerationRequest("a red circle", 2, seed=4)])[0]
    assert torch.allclose(together, guided, atol=1e-5)
    pipe.save_pretrained(tmp_path / "model")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "model")
    assert loaded.guidance_scale == 2.0
    assert torch.allclose(loaded.generate_tensors("a red circle", num_images_per_prompt=2, seed=4), guided, atol=1e-5)
    for bad in (-1, 11, "2", True):
        with pytest.raises(ConfigError, match="guidance_scale"):
            TextToImagePipeline(pipe.generator, pipe.text_encoder, guidance_scale=bad)


def test_one_prompts_images_take_the_noise_codes_in_turn():
    from limner.models import Generator
    from limner.models.gan import noise_code, spread_codes
    from tests.conftest import tiny_generator_config

    noise = torch.randn(12, 8, generator=torch.Generator().manual_seed(1))
    spread = spread_codes(noise, 6, 4, torch.Generator().manual_seed(2))
    for group in spread.split(6):
        assert set(noise_code(group, 4).tolist()) == {0, 1, 2, 3}  # 6 images: all 4 codes
    assert torch.equal(spread[:, 4:], noise[:, 4:])
    assert torch.equal(spread[:, :4].sort(dim=1).values, noise[:, :4].sort(dim=1).values)  # the same values, moved
    with pytest.raises(ValueError, match="groups of 5"):
        spread_codes(noise, 5, 4)

    encoder = tiny_pipeline().text_encoder
    generator = Generator(tiny_generator_config(text_dim=encoder.dim, noise_codes=4))
    pipe = TextToImagePipeline(generator, encoder)
    images = pipe.generate_tensors(["a red circle"], num_images_per_prompt=4, seed=3)
    batched = pipe.generate_batch([GenerationRequest("a blue square", 2, seed=9), GenerationRequest("a red circle", 4, seed=3)])[1]
    assert torch.allclose(images, batched, atol=1e-5)  # a request in a batch still draws what it draws alone
    alone = images
    pipe.spread_codes = False
    assert not torch.allclose(pipe.generate_tensors(["a red circle"], num_images_per_prompt=4, seed=3), alone)


def test_a_noise_code_is_chosen_by_number_or_by_the_name_training_gave_it(tmp_path):
    from limner.models import Generator
    from tests.conftest import tiny_generator_config

    encoder = tiny_pipeline().text_encoder
    names = ("fluent", "google", "openmoji", "twitter")
    generator = Generator(tiny_generator_config(text_dim=encoder.dim, noise_codes=4, noise_code_names=names))
    TextToImagePipeline(generator, encoder).save_pretrained(tmp_path / "model")
    pipe = TextToImagePipeline.from_pretrained(tmp_path / "model")
    assert pipe.code_names == names  # the names survive saving
    by_name = pipe.generate_tensors("a red circle", num_images_per_prompt=3, seed=1, code="openmoji")
    assert torch.equal(by_name, pipe.generate_tensors("a red circle", num_images_per_prompt=3, seed=1, code=2))
    assert torch.equal(by_name, pipe.generate_tensors("a red circle", num_images_per_prompt=3, seed=1, code="2"))
    assert not torch.allclose(by_name, pipe.generate_tensors("a red circle", num_images_per_prompt=3, seed=1, code="google"))
    for bad, message in (("watercolour", "named 'fluent', 'google'"), (4, "0 to 3"), (-1, "0 to 3"), (True, "0 to 3")):
        with pytest.raises(ConfigError, match=message):
            pipe.generate_tensors("a red circle", code=bad)
    plain = TextToImagePipeline(Generator(tiny_generator_config(text_dim=encoder.dim)), encoder)
    with pytest.raises(ConfigError, match="no noise codes"):
        plain("a red circle", code=0)
    with pytest.raises(ConfigError, match="noise_code_names names 2 codes"):
        tiny_generator_config(noise_codes=4, noise_code_names=("a", "b"))


def test_a_prompt_that_names_a_code_is_drawn_from_it_where_training_taught_so():
    from limner.models import Generator
    from limner.pipelines.text_to_image import named_code
    from tests.conftest import tiny_generator_config

    names = ("fluent", "fluent flat", "fluent high contrast", "google", "openmoji", "twitter")
    assert named_code("cat face, Fluent Flat style", names) == 1  # the longest name, any case
    assert named_code("cat face, fluent style", names) == 0
    assert named_code("cat face in the style of twitter", names) == 5
    assert named_code("cat face", names) == named_code("twitterish cat", names) == -1  # whole phrases only
    encoder = tiny_pipeline().text_encoder
    taught = TextToImagePipeline(Generator(tiny_generator_config(text_dim=encoder.dim, noise_codes=6, noise_code_names=names,
                                                                 code_from_prompt=True)), encoder)
    named = taught.generate_tensors("a red circle, openmoji style", num_images_per_prompt=3, seed=2)
    assert torch.equal(named, taught.generate_tensors("a red circle, openmoji style", num_images_per_prompt=3, seed=2, code="openmoji"))
    batched = taught.generate_batch([GenerationRequest("a red circle, openmoji style", 3, seed=2)])[0]
    assert torch.allclose(named, batched, atol=1e-5)
    untaught = TextToImagePipeline(taught.generator, encoder)
    untaught.generator.config.code_from_prompt = False  # codes in turn, whatever the prompt names
    assert not torch.allclose(untaught.generate_tensors("a red circle, openmoji style", num_images_per_prompt=3, seed=2), named)
