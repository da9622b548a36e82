import json

from limner.cli import main
from limner.pipelines import TextToImagePipeline
from limner.utils.images import png_metadata
from tests.conftest import TINY_DISCRIMINATOR, TINY_GENERATOR_ON_SHAPES


def test_data_shapes_writes_an_imagefolder(tmp_path, capsys):
    assert main(["data", "shapes", "--out", str(tmp_path / "ds"), "--train-size", "20", "--test-size", "5"]) == 0
    assert "20 train, 5 test" in capsys.readouterr().out
    lines = (tmp_path / "ds" / "test" / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["text"].startswith("a ")


def test_train_then_generate(tiny_shapes, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"generator": TINY_GENERATOR_ON_SHAPES, "discriminator": TINY_DISCRIMINATOR, "validation_images_per_prompt": 2}))
    out = tmp_path / "model"
    code = main([
        "train", "--preset", "shapes", "--config", str(config), "--train-data-dir", str(tiny_shapes),
        "--text-encoder", "bag-of-words", "--train-batch-size", "8", "--max-train-steps", "3",
        "--max-train-minutes", "5", "--checkpointing-steps", "2", "--output-dir", str(out), "--no-progress",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "trained 3 steps" in printed and "held-out judge accuracy" in printed
    TextToImagePipeline.from_pretrained(out)

    grid = tmp_path / "grid.png"
    assert main(["generate", str(out), "a small red circle in the top left", "-n", "8", "-o", str(grid), "--seed", "5"]) == 0
    metadata = png_metadata(grid)
    assert metadata["prompt"] == "a small red circle in the top left" and metadata["seed"] == "5"
    assert metadata["model"].endswith("model")
    assert main(["generate", str(out), "a red circle", "--code", "0", "-o", str(grid)]) == 2  # this model has no codes
    assert "no noise codes" in capsys.readouterr().err


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "missing"), "a cat"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("limner: error:") and "model_index.json" in err and "Traceback" not in err
    assert main(["train", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["train", "--train-data-dir", str(tmp_path / "nowhere")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["data", "shapes", "--out", str(tmp_path / "x"), "--resolution", "40"]) == 2
    assert "multiple of 16" in capsys.readouterr().err
    assert main(["train", "--preset", "shapes", "--text-pooling", "foo"]) == 2
    assert "text_pooling must be one of" in capsys.readouterr().err


def test_a_bad_config_file_is_a_one_line_error(tmp_path, capsys):
    broken, listed = tmp_path / "broken.json", tmp_path / "list.json"
    broken.write_text("{\"max_train_steps\": 3,")
    listed.write_text("[1, 2]")
    for path, message in ((broken, "not valid JSON"), (listed, "one JSON object"), (tmp_path / "absent.json", "config file not found")):
        for command in (["train", "--preset", "shapes", "--config", str(path)], ["serve", "--config", str(path), "model"]):
            assert main(command) == 2, (command, message)
            err = capsys.readouterr().err
            assert err.startswith("limner: error:") and str(path) in err and message in err and "Traceback" not in err
