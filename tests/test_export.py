"""ONNX export: graphs with a dynamic batch that match PyTorch, and the onnxruntime backend."""

import json

import pytest
import torch

from limner.cli import main
from limner.errors import ModelLoadError
from limner.export import export_onnx
from limner.models import Generator
from limner.pipelines import GenerationRequest, TextToImagePipeline, load_pipeline
from limner.text import HuggingFaceTextEncoder
from tests.conftest import tiny_generator_config, tiny_pipeline

PROMPTS = ["a small red circle in the top left", "a large blue square"]


def test_generator_graph_matches_pytorch_at_any_batch_size(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    report = export_onnx(tmp_path / "model")
    assert report["generator_max_abs_diff"] < 1e-4 and "text_encoder_max_abs_diff" not in report  # bag-of-words stays in Python
    assert json.loads((tmp_path / "model" / "onnx" / "export.json").read_text()) == report
    eager = TextToImagePipeline.from_pretrained(tmp_path / "model")
    onnx = TextToImagePipeline.from_pretrained(tmp_path / "model", backend="onnx")
    for n in (1, 7):  # neither batch size was seen at export
        expected = eager.generate_tensors(PROMPTS, num_images_per_prompt=n, seed=3)
        assert torch.allclose(onnx.generate_tensors(PROMPTS, num_images_per_prompt=n, seed=3), expected, atol=1e-4)
    requests = [GenerationRequest(PROMPTS[0], 2, seed=1), GenerationRequest(PROMPTS[1], 3, seed=2)]
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(onnx.generate_batch(requests), eager.generate_batch(requests)))


@pytest.mark.parametrize("hidden_layer", [0, None])  # the shapes preset's embedding layer; the last layer (attention masks)
def test_language_model_graph_pools_and_normalises_like_the_encoder(tmp_path, hidden_layer):
    encoder = HuggingFaceTextEncoder(hidden_layer=hidden_layer)
    torch.manual_seed(0)
    generator = Generator(tiny_generator_config(text_dim=encoder.dim))
    TextToImagePipeline(generator, encoder).save_pretrained(tmp_path / "model")
    report = export_onnx(tmp_path / "model")
    assert report["text_encoder_max_abs_diff"] < 1e-4 and report["generator_max_abs_diff"] < 1e-4
    onnx = load_pipeline(tmp_path / "model", backend="onnx")
    captions = ["a caption", "a much longer caption than the first one, with commas, and more words", "x", "two words"]
    for group in (captions, captions[:1], captions * 5):  # batch sizes and padded lengths not seen at export
        assert torch.allclose(onnx.text_encoder.encode(group).sentence, encoder.encode(group).sentence, atol=1e-4)


def test_the_onnx_backend_says_how_to_export_first(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    with pytest.raises(ModelLoadError, match="limner export"):
        TextToImagePipeline.from_pretrained(tmp_path / "model", backend="onnx")
    with pytest.raises(ValueError, match="backend must be one of"):
        TextToImagePipeline.from_pretrained(tmp_path / "model", backend="tensorrt")


def test_export_and_generate_from_the_command_line(tmp_path, capsys):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--format", "onnx"]) == 0
    assert "largest difference from PyTorch: generator" in capsys.readouterr().out
    for backend in ("torch", "onnx"):
        grid = tmp_path / f"{backend}.png"
        assert main(["generate", str(tmp_path / "model"), PROMPTS[0], "-n", "2", "--backend", backend, "-o", str(grid)]) == 0
        assert grid.stat().st_size > 0


def test_the_server_generates_with_the_onnx_backend(tmp_path):
    from fastapi.testclient import TestClient

    from limner.serving import ServeConfig, create_app

    tiny_pipeline().save_pretrained(tmp_path / "model")
    export_onnx(tmp_path / "model")
    app = create_app({"tiny": load_pipeline(tmp_path / "model", backend="onnx")}, ServeConfig())
    with TestClient(app) as client:
        body = client.post("/v1/images/generations", json={"prompt": PROMPTS[0], "n": 3, "seed": 1}).json()
    assert len(body["data"]) == 3


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_export_loads_as_its_own_backend_and_stays_near_pytorch(tmp_path, mode):
    import onnx

    tiny_pipeline().save_pretrained(tmp_path / "model")
    report = export_onnx(tmp_path / "model", quantize=mode, calibration_captions=PROMPTS * 8)
    int8 = report["int8"]
    assert int8["mode"] == mode and int8["calibration_captions"] == (16 if mode == "static" else 0)
    assert 0 < int8["mean_abs_diff"] < 0.05, int8  # quantised, so not exact, but close
    graph = onnx.load(str(tmp_path / "model" / "onnx" / "generator.int8.onnx"))
    ops = {node.op_type for node in graph.graph.node}
    assert ops & ({"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} if mode == "dynamic" else {"QuantizeLinear", "DequantizeLinear"}), ops
    eager = TextToImagePipeline.from_pretrained(tmp_path / "model")
    quantised = TextToImagePipeline.from_pretrained(tmp_path / "model", backend="onnx-int8")
    expected = eager.generate_tensors(PROMPTS, num_images_per_prompt=3, seed=3)
    got = quantised.generate_tensors(PROMPTS, num_images_per_prompt=3, seed=3)
    assert got.shape == expected.shape and (got - expected).abs().mean() < 0.05


def test_onnx_graphs_that_disagree_with_the_model_are_refused(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    export_onnx(tmp_path / "model", quantize="dynamic")
    onnx_folder = tmp_path / "model" / "onnx"
    # an export without --quantize drops the int8 graph of the earlier export
    export_onnx(tmp_path / "model")
    with pytest.raises(ModelLoadError, match="--quantize"):
        TextToImagePipeline.from_pretrained(tmp_path / "model", backend="onnx-int8")
    # a graph of another model (another noise size) under this model's name
    torch.manual_seed(1)
    encoder = tiny_pipeline().text_encoder
    other = TextToImagePipeline(Generator(tiny_generator_config(noise_dim=5, text_dim=encoder.dim)), encoder)
    other.save_pretrained(tmp_path / "other")
    export_onnx(tmp_path / "other")
    (onnx_folder / "generator.onnx").write_bytes((tmp_path / "other" / "onnx" / "generator.onnx").read_bytes())
    with pytest.raises(ModelLoadError, match="differs from the graph the export wrote"):
        TextToImagePipeline.from_pretrained(tmp_path / "model", backend="onnx")
    (onnx_folder / "export.json").unlink()  # no checksums to go by: the shapes still give it away
    with pytest.raises(ModelLoadError, match="'noise' is shaped"):
        TextToImagePipeline.from_pretrained(tmp_path / "model", backend="onnx")
    # weights retrained after the export
    export_onnx(tmp_path / "model")
    torch.manual_seed(2)
    TextToImagePipeline(Generator(tiny_generator_config(text_dim=encoder.dim)), encoder).save_pretrained(tmp_path / "model")
    with pytest.raises(ModelLoadError, match="weights changed since the ONNX export"):
        TextToImagePipeline.from_pretrained(tmp_path / "model", backend="onnx")


def test_int8_export_from_the_command_line(tmp_path, capsys):
    from limner.cli import BACKEND_CHOICES
    from limner.pipelines.text_to_image import BACKENDS

    assert BACKEND_CHOICES == BACKENDS
    tiny_pipeline().save_pretrained(tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--quantize", "static"]) == 2  # no training config, no captions file
    assert "--calibration-captions" in capsys.readouterr().err
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(PROMPTS) + "\n\n")
    assert main(["export", str(tmp_path / "model"), "--quantize", "static", "--calibration-captions", str(captions)]) == 0
    assert "int8 (static): mean difference from PyTorch" in capsys.readouterr().out
    grid = tmp_path / "int8.png"
    assert main(["generate", str(tmp_path / "model"), PROMPTS[0], "-n", "2", "--backend", "onnx-int8", "-o", str(grid)]) == 0
    assert grid.stat().st_size > 0
