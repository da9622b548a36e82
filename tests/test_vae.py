"""The conditional VAE: a KL that is never negative, an ELBO that falls, encode/decode/reconstruct,
sampling through TextToImagePipeline, save/load, export, and training from the CLI."""

import json

import torch

from limner.cli import main
from limner.export import export_onnx
from limner.models.vae import ConditionalVAE, VAEConfig
from limner.pipelines import TextToImagePipeline
from limner.text import BagOfWordsEncoder
from limner.training.losses import elbo_loss, gaussian_kl
from limner.training.vae_trainer import vae_step
from tests.conftest import tiny_train_overrides

CAPTIONS = ["a small red circle in the top left", "a large blue square", "a green triangle", "a red square"]
TINY_VAE = {"base_channels": 4, "condition_hidden": 16, "encoder_channels": 4, "hidden": 32, "latent_dim": 8}


def tiny_vae(encoder) -> ConditionalVAE:
    torch.manual_seed(0)
    vae = ConditionalVAE(VAEConfig(text_dim=encoder.dim, **TINY_VAE))
    vae.text_norm.fit(encoder.encode(CAPTIONS).sentence)
    return vae


def test_kl_is_never_negative_and_zero_between_equal_gaussians():
    g = torch.Generator().manual_seed(0)
    mean_q, log_var_q, mean_p, log_var_p = (torch.randn(64, 16, generator=g) * 2 for _ in range(4))
    assert (gaussian_kl(mean_q, log_var_q, mean_p, log_var_p) >= 0).all()
    assert torch.allclose(gaussian_kl(mean_q, log_var_q, mean_q, log_var_q), torch.zeros(64, 16), atol=1e-6)
    kl = torch.full((4, 3), 0.01)
    assert elbo_loss(torch.zeros(4, 3, 2, 2), torch.zeros(4, 3, 2, 2), kl, free_bits=0.5)[2].item() == 1.5  # 3 dims at 0.5 nats


def test_the_elbo_falls_on_one_batch_and_reconstructions_improve():
    encoder = BagOfWordsEncoder.from_captions(CAPTIONS)
    vae = tiny_vae(encoder)
    colours = torch.tensor([[1.0, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]])
    images = colours[:, :, None, None].expand(4, 3, 32, 32).clone()  # a learnable batch: one solid colour per caption
    images[:, :, 8:16, 8:16] = 1.0
    sentence = encoder.encode(CAPTIONS).sentence
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    error_before = (vae.reconstruct(images, sentence) - images).abs().mean().item()
    losses = [vae_step(vae, optimizer, images, sentence, beta=1.0, free_bits=0.0, sigma=0.1)["loss"] for _ in range(60)]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert (vae.reconstruct(images, sentence) - images).abs().mean().item() < error_before
    mean, log_var = vae.encode(images, sentence)
    assert mean.shape == log_var.shape == (4, 8) and vae.decode(mean, sentence).shape == images.shape


def test_the_vae_samples_through_the_pipeline_saves_loads_and_exports(tmp_path):
    encoder = BagOfWordsEncoder.from_captions(CAPTIONS)
    pipe = TextToImagePipeline(tiny_vae(encoder), encoder)
    pipe.save_pretrained(tmp_path / "vae")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "vae")
    assert isinstance(loaded.generator, ConditionalVAE)
    expected = pipe.generate_tensors(CAPTIONS[:2], num_images_per_prompt=3, seed=5)
    assert expected.shape == (6, 3, 32, 32) and torch.equal(loaded.generate_tensors(CAPTIONS[:2], num_images_per_prompt=3, seed=5), expected)
    assert not torch.equal(expected[0], expected[1])  # the prior's noise matters
    assert export_onnx(tmp_path / "vae")["generator_max_abs_diff"] < 1e-4


def test_train_the_vae_from_the_command_line(tiny_shapes, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    overrides = tiny_train_overrides(tiny_shapes, tmp_path / "vae", kind="vae", max_train_steps=3, kl_warmup_steps=2)
    overrides["vae"] = TINY_VAE
    config.write_text(json.dumps(overrides))
    assert main(["train", "--model", "vae", "--config", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test reconstructions: PSNR" in out and "held-out judge accuracy" in out
    scores = json.loads((tmp_path / "vae" / "vae_scores.json").read_text())
    assert scores["steps"] == 3 and 0 <= scores["test_reconstruction"]["ssim"] <= 1 and scores["held_out_judge"]["images"] > 0
    assert (tmp_path / "vae" / "samples.png").is_file()
