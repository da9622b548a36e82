import pytest
import torch

from limner.cli import main
from limner.data import ImageFolder
from limner.errors import ConfigError, ModelLoadError
from limner.models.captioner import Captioner, CaptionerConfig
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.text.caption_vocabulary import CaptionVocabulary, load_tokenizer
from limner.training.losses import caption_loss
from limner.utils.images import from_uint8, to_pil

CAPTIONS = ["a large red circle in the top left", "a small blue square in the bottom right",
            "a small green triangle in the center", "a large yellow square in the top right"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def vocabulary(tokenizer):
    return CaptionVocabulary(tokenizer, CaptionVocabulary.collect(tokenizer, CAPTIONS))


def tiny_captioner(vocabulary, **extra) -> Captioner:
    torch.manual_seed(0)
    return Captioner(CaptionerConfig(base_channels=4, width=32, heads=2, layers=1, dropout=0.0, max_length=12,
                                     vocabulary=vocabulary.vocabulary, **extra))


def test_vocabulary_round_trips_captions_and_refuses_unknown_tokens(vocabulary):
    tokens = vocabulary.encode(CAPTIONS, max_length=12)
    assert tokens.shape == (4, 13) and (tokens[:, 0] == 1).all()
    for caption, row in zip(CAPTIONS, tokens.tolist()):
        content = row[1: row.index(2)]
        assert vocabulary.decode(content) == caption
    with pytest.raises(ConfigError, match="lacks"):
        vocabulary.encode(["a purple hexagon"], max_length=12)


def test_the_captioner_overfits_one_batch_to_exact_captions(vocabulary, tiny_shapes):
    folder = ImageFolder(tiny_shapes, "train")
    images = from_uint8(folder.load_images(32, progress=False)[:4])
    captions = [r.captions[0] for r in folder.records[:4]]
    vocabulary = CaptionVocabulary(vocabulary.tokenizer, CaptionVocabulary.collect(vocabulary.tokenizer, captions))
    captioner = tiny_captioner(vocabulary)
    tokens = vocabulary.encode(captions, captioner.config.max_length)
    optimizer = torch.optim.Adam(captioner.parameters(), lr=3e-3)
    for _ in range(300):
        loss = caption_loss(captioner(images, tokens[:, :-1]), tokens[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    captioner.eval()
    assert [vocabulary.decode(ids) for ids in captioner.greedy(images)] == captions
    assert [vocabulary.decode(ids) for ids in captioner.beam_search(images, beams=3)] == captions


def test_beam_search_with_one_beam_is_greedy(vocabulary):
    captioner = tiny_captioner(vocabulary).eval()
    torch.nn.init.normal_(captioner.head.weight, std=1.0)  # a peaky random model: long, varied outputs
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    greedy = captioner.greedy(images)
    assert captioner.beam_search(images, beams=1) == greedy
    assert any(len(ids) > 2 for ids in greedy)
    wide = captioner.beam_search(images, beams=4, max_length=5)
    assert len(wide) == 6 and all(len(ids) <= 5 for ids in wide)


def test_pipeline_save_and_load_give_identical_captions(vocabulary, tmp_path):
    captioner = tiny_captioner(vocabulary)
    torch.nn.init.normal_(captioner.head.weight, std=1.0)
    pipe = ImageToTextPipeline(captioner, "all-MiniLM-L6-v2", tokenizer=vocabulary.tokenizer)
    images = to_pil(torch.rand(3, 3, 40, 40) * 2 - 1)  # any size: resized to the model's
    out = pipe(images)
    assert len(out) == 3 and all(set(o) == {"generated_text"} for o in out)
    pipe.save_pretrained(tmp_path / "cap")
    assert ImageToTextPipeline.from_pretrained(tmp_path / "cap")(images) == out
    with pytest.raises(ModelLoadError, match="model_index.json"):
        ImageToTextPipeline.from_pretrained(tmp_path)


def test_cli_trains_a_captioner_and_captions_files(tiny_shapes, tmp_path, capsys):
    out = tmp_path / "cap"
    assert main(["train", "--model", "captioner", "--train-data-dir", str(tiny_shapes), "--output-dir", str(out),
                 "--max-train-steps", "3", "--train-batch-size", "8", "--no-progress"]) == 0
    assert "test exact match" in capsys.readouterr().out
    assert (out / "captioner_scores.json").is_file()
    image = ImageFolder(tiny_shapes, "test").records[0].path
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["caption", str(out), str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(image) + "\t")
    assert main(["caption", str(out), str(bad)]) == 2
    assert "bad.png: not a readable image" in capsys.readouterr().err


def test_token_dropout_hides_words_as_padding_but_never_the_start_token():
    from limner.training.captioner_trainer import drop_tokens

    tokens = torch.randint(3, 50, (400, 10))
    tokens[:, 0] = 1  # BOS
    assert torch.equal(drop_tokens(tokens, 0.0, torch.Generator().manual_seed(0)), tokens)
    dropped = drop_tokens(tokens, 0.3, torch.Generator().manual_seed(0))
    hidden = dropped != tokens
    assert (dropped[hidden] == 0).all() and not hidden[:, 0].any()
    assert 0.25 < hidden[:, 1:].float().mean().item() < 0.35


def test_the_captioner_trains_with_token_dropout_and_refuses_a_rate_of_one(tiny_shapes, tmp_path):
    from limner.training import build_train_config
    from limner.training.captioner_trainer import train_captioner

    config = build_train_config(None, {"model": "captioner", "train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "cap"),
                                       "max_train_steps": 2, "max_train_minutes": None, "train_batch_size": 8,
                                       "captioner_token_dropout": 0.5})
    result = train_captioner(config, progress=False)
    assert result.steps == 2 and result.final_loss == result.final_loss
    for rate in (1.0, -0.1):
        with pytest.raises(ConfigError, match="captioner_token_dropout"):
            build_train_config(None, {"model": "captioner", "captioner_token_dropout": rate})
