"""Train the conditional VAE on the ELBO: KL warm-up, free bits, a learnt text-conditioned prior.

`limner train --model vae` writes a TextToImagePipeline folder (the VAE in generator/),
`samples.png`, `scores.json` (for shapes: the judge on held-out compositions, sampling
from the prior) and `vae_scores.json` (PSNR and SSIM of the test split's reconstructions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from limner.config import save_config_json
from limner.metrics.images import PairedImageMetrics
from limner.models.vae import ConditionalVAE
from limner.pipelines import TextToImagePipeline
from limner.text import CachedTextEncoder, TextEncoder
from limner.text.prompts import vocabulary_of
from limner.training.config import VAETrainConfig
from limner.training.data import load_test_split, load_training_data, resolve_data_dir
from limner.training.loop import StepLoop
from limner.training.losses import elbo_loss, gaussian_kl
from limner.training.trainer import held_out_scores
from limner.utils.images import make_grid, save_png

SCORES_NAME = "vae_scores.json"


@dataclass
class VAEResult:
    output_dir: Path
    steps: int
    train_seconds: float
    last_losses: dict
    held_out: dict | None
    reconstruction: dict | None


def vae_step(vae: ConditionalVAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, sentence: torch.Tensor, *,
             beta: float, free_bits: float, sigma: float) -> dict[str, float]:
    """One ELBO step on a batch; returns the loss terms."""
    mean_q, log_var_q = vae.encode(images, sentence)
    z = mean_q + (0.5 * log_var_q).exp() * torch.randn_like(mean_q)
    kl = gaussian_kl(mean_q, log_var_q, *vae.prior_params(sentence))
    total, reconstruction, kl_term = elbo_loss(vae.decode(z, sentence), images, kl, beta=beta, free_bits=free_bits, sigma=sigma)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 100.0)
    optimizer.step()
    return {"loss": total.item(), "reconstruction": reconstruction.item(), "kl": kl_term.item(), "beta": beta}


def train_vae(config: VAETrainConfig, *, progress: bool = True) -> VAEResult:
    torch.manual_seed(config.seed)
    rng = torch.Generator().manual_seed(config.seed)
    data_dir = resolve_data_dir(config)
    text_encoder, data, _ = load_training_data(config, data_dir, progress=progress, streaming=False)
    vae = ConditionalVAE(config.vae_config(text_encoder.dim, data.sentence_table))
    vae.text_norm.fit(data.sentence_table)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.vae_learning_rate)
    loop = StepLoop(max_steps=config.max_train_steps, max_minutes=config.max_train_minutes, name="training vae",
                    progress=progress, logging_steps=config.logging_steps)

    def step() -> dict[str, float]:
        images, sentence, _ = data.sample(config.train_batch_size, rng)
        beta = min(1.0, loop.step / config.kl_warmup_steps) if config.kl_warmup_steps else 1.0
        return vae_step(vae, optimizer, images, sentence, beta=beta, free_bits=config.free_bits, sigma=config.reconstruction_sigma)

    vae.train()
    ran = loop.run(step)
    step, train_seconds, losses = ran.steps, ran.seconds, ran.last_losses
    vae.eval()
    out = Path(config.output_dir)
    pipe = TextToImagePipeline(vae, text_encoder, truncation=config.truncation, training_words=vocabulary_of(data.captions))
    pipe.save_pretrained(out)
    save_config_json(config, out / "training_config.json")
    prompts = list(config.validation_prompts) or data.captions[:6]
    grid = make_grid(pipe(prompts, num_images_per_prompt=6, seed=config.seed), 6, row_labels=prompts, scale=max(1, 96 // config.resolution))
    save_png(grid, out / "samples.png", {"prompts": json.dumps(prompts), "seed": config.seed, "step": step})
    held_out = held_out_scores(pipe, data_dir, out, steps=step, seed=config.seed)
    reconstruction = reconstruction_scores(vae, text_encoder, data_dir, config.resolution)
    report = {"steps": step, "train_seconds": round(train_seconds, 1), "last_losses": losses, "test_reconstruction": reconstruction,
              "held_out_judge": held_out, "train_data_dir": str(data_dir),
              "interrupted": ran.interrupted}
    (out / SCORES_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return VAEResult(out, step, train_seconds, losses, held_out, reconstruction)


@torch.no_grad()
def reconstruction_scores(vae: ConditionalVAE, text_encoder: TextEncoder, data_dir: Path, resolution: int, *, max_images: int = 2000) -> dict | None:
    """PSNR and SSIM of the test split's images against their reconstructions (posterior means), None without a test split."""
    split = load_test_split(data_dir, resolution, max_images=max_images)
    if split is None:
        return None
    records, images = split
    sentence = CachedTextEncoder(text_encoder).sentence_table([r.captions[0] for r in records], progress=False)
    metrics = PairedImageMetrics()
    for chunk, text in zip(images.split(256), sentence.split(256)):
        metrics.update(vae.reconstruct(chunk, text), chunk)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.compute().items()}
