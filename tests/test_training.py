import copy
import math
import shutil

import pytest
import torch

from limner.errors import ConfigError
from limner.models import Discriminator, Generator, GeneratorConfig, LatentEncoder, LatentEncoderConfig
from limner.training import Trainer, build_train_config
from limner.training.gan_config import GANTrainConfig
from limner.training.checkpoint import list_checkpoints, resolve_checkpoint
from limner.models.gan import coded_noise, noise_code, with_code
from limner.training.gan_step import GANBatch, GANModels, GANOptimizers, encoded_pair_noise, gan_train_step, nearest_noise, other_codes
from tests.conftest import tiny_discriminator_config, tiny_generator_config, tiny_train_overrides


def _models(seed=0, contrastive_dim=0, latent_dims=0, noise_codes=0, classes=(), **generator_extra):
    torch.manual_seed(seed)
    generator = Generator(tiny_generator_config(base_channels=8, condition_hidden=32, noise_codes=noise_codes, **generator_extra))
    discriminator = Discriminator(tiny_discriminator_config(base_channels=8, contrastive_dim=contrastive_dim, classes=classes))
    encoder = LatentEncoder(LatentEncoderConfig(latent_dims=latent_dims, channels=8)) if latent_dims else None
    models = GANModels(generator, discriminator, copy.deepcopy(generator), encoder)
    optimizers = GANOptimizers(
        torch.optim.Adam([*generator.parameters(), *(encoder.parameters() if encoder else [])], lr=2e-3, betas=(0.0, 0.9)),
        torch.optim.Adam(discriminator.parameters(), lr=2e-3, betas=(0.0, 0.9)),
    )
    return models, optimizers


def test_gan_overfits_one_batch():
    """Two fixed images, each with its own caption: the generator learns to draw each one."""
    models, optimizers = _models()
    target = torch.full((2, 3, 32, 32), -1.0)
    target[0, 0, 4:14, 4:14] = 1.0     # a red square top left for caption 0
    target[1, 2, 18:30, 18:30] = 1.0   # a blue square bottom right for caption 1
    sentence = torch.eye(12)[:2]
    images, captions = target.repeat(4, 1, 1, 1), sentence.repeat(4, 1)
    mismatched = captions.roll(1, 0)

    def error():
        with torch.no_grad():
            fake = models.generator(torch.randn(8, 8), captions)
        return (fake - images).abs().mean().item()

    before = error()
    for _ in range(300):
        gan_train_step(models, optimizers, GANBatch(images, captions, mismatched, torch.randn(8, 8)), ema_decay=0.9)
    after = error()
    assert after < 0.25 * before, (before, after)


def test_step_reports_finite_losses_and_moves_ema():
    models, optimizers = _models()
    ema_before = [p.clone() for p in models.ema.parameters()]
    batch = GANBatch(torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, 12), torch.randn(4, 12), torch.randn(4, 8))
    losses = gan_train_step(models, optimizers, batch, ema_decay=0.5)
    assert set(losses) >= {"d_loss", "g_loss", "gp"} and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, models.ema.parameters()))
    assert all(p.grad is None or p.requires_grad for p in models.discriminator.parameters())


def test_contrastive_step_trains_the_head_and_reports_each_term():
    models, optimizers = _models(contrastive_dim=16)
    head_before = models.discriminator.image_projection.weight.clone()
    batch = GANBatch(torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, 12), torch.randn(4, 12), torch.randn(4, 8))
    losses = gan_train_step(models, optimizers, batch, contrastive_weight=1.0, image_contrastive_weight=1.0)
    assert {"contrastive_real", "contrastive_fake", "contrastive_image"} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())
    assert not torch.equal(head_before, models.discriminator.image_projection.weight)


def test_contrastive_weights_without_what_they_need_are_refused():
    with pytest.raises(ConfigError, match="contrastive_dim"):
        build_train_config("shapes", {"contrastive_weight": 1.0, "discriminator": {"contrastive_dim": 0}})
    with pytest.raises(ConfigError, match="needs contrastive_weight"):
        build_train_config("shapes", {"contrastive_weight": 0.0, "image_contrastive_weight": 1.0})


def _trainer(data, out, **extra):
    return Trainer(build_train_config(None, tiny_train_overrides(data, out, **extra)), progress=False)


def test_a_step_without_the_penalty_takes_no_second_backward(monkeypatch):
    models, optimizers = _models()
    batch = GANBatch(torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, 12), torch.randn(4, 12), torch.randn(4, 8))
    second_backward = []
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: second_backward.append(k.get("create_graph")) or real_grad(*a, **k))
    losses = gan_train_step(models, optimizers, batch, gp_weight=0.0)
    assert "gp" not in losses and second_backward == [] and math.isfinite(losses["d_loss"])
    assert "gp" in gan_train_step(models, optimizers, batch, gp_weight=2.0) and second_backward == [True]


def test_lazy_regularisation_weighs_the_penalty_on_every_nth_step_only(tiny_shapes, tmp_path):
    trainer = _trainer(tiny_shapes, tmp_path / "run", gp_every=4, gp_weight=2.0)
    weights = []
    for step in range(8):
        trainer.step = step
        weights.append(trainer.penalty_weight())
    assert weights == [8.0, 0.0, 0.0, 0.0, 8.0, 0.0, 0.0, 0.0]  # the penalty's mean weight stays gp_weight
    for wrong in (0, 1.5, True):
        with pytest.raises(ConfigError, match="gp_every must be a whole number of steps"):
            _trainer(tiny_shapes, tmp_path / "wrong", gp_every=wrong)


def test_training_writes_model_grids_logs_and_checkpoints(tiny_shapes, tmp_path):
    result = _trainer(tiny_shapes, tmp_path / "run").train()
    out = tmp_path / "run"
    assert result.steps == 4
    for name in ("model_index.json", "generator/config.json", "generator/model.safetensors", "text_encoder/config.json",
                 "samples.png", "training_config.json", "validation/step-000002.png", "scores.json"):
        assert (out / name).is_file(), name
    assert [step for step, _ in list_checkpoints(out / "checkpoints")] == [2, 4]
    assert any((out / "logs").iterdir())
    assert set(result.scores) >= {"all", "color", "shape", "size", "position"}


def test_resume_continues_exactly(tiny_shapes, tmp_path):
    straight = _trainer(tiny_shapes, tmp_path / "a", max_train_steps=4)
    straight.train()
    first = _trainer(tiny_shapes, tmp_path / "b", max_train_steps=2)
    first.train()
    resumed = _trainer(tiny_shapes, tmp_path / "b", max_train_steps=4, resume_from_checkpoint="latest")
    assert resumed.step == 2
    resumed.train()
    for a, b in zip(straight.models.generator.parameters(), resumed.models.generator.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.models.ema.parameters(), resumed.models.ema.parameters()):
        assert torch.equal(a, b)


def test_a_half_written_checkpoint_is_never_picked(tiny_shapes, tmp_path):
    _trainer(tiny_shapes, tmp_path / "run", max_train_steps=2, checkpointing_steps=2).train()
    root = tmp_path / "run" / "checkpoints"
    # What a kill in the middle of saving step 4 leaves behind:
    shutil.copytree(root / "checkpoint-2", root / ".checkpoint-4.tmp")
    (root / ".checkpoint-4.tmp" / "training_state.pt").unlink()
    assert resolve_checkpoint(root, "latest") == root / "checkpoint-2"
    resumed = _trainer(tiny_shapes, tmp_path / "run", max_train_steps=3, resume_from_checkpoint="latest")
    assert resumed.step == 2


def test_a_fresh_run_sets_an_earlier_runs_checkpoints_aside(tiny_shapes, tmp_path):
    """An earlier run's later checkpoints must neither outlive the new run's by pruning nor be
    what "latest" resumes; nothing of it is deleted."""
    _trainer(tiny_shapes, tmp_path / "run", max_train_steps=4, checkpointing_steps=2).train()
    root = tmp_path / "run" / "checkpoints"
    earlier = sorted(p.name for p in root.iterdir())
    _trainer(tiny_shapes, tmp_path / "run", max_train_steps=2, checkpointing_steps=2).train()
    assert sorted(p.name for p in (root / "earlier-run-1").iterdir()) == earlier == ["checkpoint-2", "checkpoint-4"]
    assert resolve_checkpoint(root, "latest") == root / "checkpoint-2"
    assert _trainer(tiny_shapes, tmp_path / "run", max_train_steps=3, resume_from_checkpoint="latest").step == 2
    _trainer(tiny_shapes, tmp_path / "run", max_train_steps=2, checkpointing_steps=2)
    assert (root / "earlier-run-2" / "checkpoint-2").is_dir()


def test_resume_latest_with_no_checkpoint_starts_fresh(tiny_shapes, tmp_path):
    assert _trainer(tiny_shapes, tmp_path / "new", resume_from_checkpoint="latest").step == 0


def test_interrupt_saves_a_checkpoint(tiny_shapes, tmp_path, monkeypatch):
    trainer = _trainer(tiny_shapes, tmp_path / "run", max_train_steps=50, checkpointing_steps=100)
    calls = {"n": 0}
    original = trainer._train_one_step

    def interrupted_after_three():
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original()

    monkeypatch.setattr(trainer, "_train_one_step", interrupted_after_three)
    result = trainer.train()
    assert result.interrupted and result.steps == 3
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [3]


def _learning_rate_factors(trainer, *, interrupt_at_step: int | None = None) -> list[float]:
    """Train (Ctrl-C as step `interrupt_at_step` begins, when given), and return each step's learning
    rates as factors of the configured ones (checked equal for both networks)."""
    seen = []
    original = trainer._train_one_step

    def recording():
        if len(seen) + 1 == interrupt_at_step:
            raise KeyboardInterrupt
        losses = original()
        seen.append((trainer.optimizers.generator.param_groups[0]["lr"], trainer.optimizers.discriminator.param_groups[0]["lr"]))
        return losses

    trainer._train_one_step = recording
    trainer.train()
    config = trainer.config
    generator = [g / config.learning_rate for g, _ in seen]
    assert [d / config.discriminator_learning_rate for _, d in seen] == pytest.approx(generator)
    return generator


def test_learning_rates_fall_linearly_between_the_decay_steps(tiny_shapes, tmp_path):
    trainer = _trainer(tiny_shapes, tmp_path / "run", max_train_steps=4, learning_rate_decay=[1, 3], learning_rate_floor=0.2)
    # steps 0 and 1 before the decay, halfway at 2, the floor from 3 on
    assert _learning_rate_factors(trainer) == pytest.approx([1.0, 1.0, 0.6, 0.2])


def test_a_decay_in_minutes_follows_the_clock_and_goes_on_after_a_resume(tiny_shapes, tmp_path, monkeypatch):
    from limner.training.loop import StepLoop

    monkeypatch.setattr(StepLoop, "elapsed", lambda loop: 60.0 * (loop.step - loop.start_step))  # a minute a step
    settings = {"learning_rate_decay_minutes": [1, 3], "learning_rate_floor": 0.2, "checkpointing_steps": 2}
    straight = _trainer(tiny_shapes, tmp_path / "a", max_train_steps=4, **settings)
    # 0, 1, 2 and 3 minutes trained as steps 1-4 begin
    assert _learning_rate_factors(straight) == pytest.approx([1.0, 1.0, 0.6, 0.2])
    interrupted = _trainer(tiny_shapes, tmp_path / "b", max_train_steps=4, **settings)
    assert _learning_rate_factors(interrupted, interrupt_at_step=3) == pytest.approx([1.0, 1.0])
    # its checkpoint holds the 2 minutes trained, and the resumed run counts on from them
    resumed = _trainer(tiny_shapes, tmp_path / "b", max_train_steps=4, resume_from_checkpoint="latest", **settings)
    assert (resumed.step, resumed.minutes_before) == (2, pytest.approx(2.0))
    assert _learning_rate_factors(resumed) == pytest.approx([0.6, 0.2])


def test_a_learning_rate_decay_must_end_after_it_starts(tiny_shapes, tmp_path):
    with pytest.raises(ConfigError, match="learning_rate_decay"):
        build_train_config(None, tiny_train_overrides(tiny_shapes, tmp_path, learning_rate_decay=[5, 5]))


@pytest.mark.parametrize("settings, message", [
    ({"learning_rate_decay_minutes": [30]}, "start minute, end minute"),
    ({"learning_rate_decay_minutes": [60, 30]}, "start minute, end minute"),
    ({"learning_rate_decay_minutes": [30, 60], "learning_rate_decay": [10, 20]}, "not both"),
])
def test_a_decay_in_minutes_must_run_forwards_and_alone(tiny_shapes, tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        build_train_config(None, tiny_train_overrides(tiny_shapes, tmp_path, **settings))


def test_a_single_caption_dataset_still_samples(tmp_path):
    from limner.training.data import CaptionedImages

    data = CaptionedImages(
        images=torch.zeros(3, 3, 32, 32, dtype=torch.uint8), captions=["only"], sentence_table=torch.ones(1, 4),
        caption_ids=torch.zeros(3, dtype=torch.long), offsets=torch.arange(3), counts=torch.ones(3, dtype=torch.long),
    )
    images, sentence, mismatched = data.sample(5, torch.Generator().manual_seed(0))
    assert images.shape == (5, 3, 32, 32) and torch.equal(sentence, mismatched)


def test_each_image_draws_among_its_own_captions():
    from limner.training.data import CaptionedImages

    table = torch.eye(3)
    data = CaptionedImages(
        images=torch.zeros(2, 3, 32, 32, dtype=torch.uint8), captions=["a", "b", "c"], sentence_table=table,
        caption_ids=torch.tensor([0, 1, 2]), offsets=torch.tensor([0, 1]), counts=torch.tensor([1, 2]),
    )
    rng = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(50):
        _, sentence, mismatched = data.sample(8, rng)
        seen.update(sentence.argmax(1).tolist())
        assert not (sentence == mismatched).all(dim=1).any()
    assert seen == {0, 1, 2}


def test_alignment_and_cycle_terms_train_the_generator_through_frozen_guides(tiny_shapes, tmp_path):
    """Text -> image -> (aligner score, captioner cross-entropy): both terms are logged, reach the
    generator, and leave the guides untouched."""
    from limner.models.dual_encoder import DualEncoder, aligner_config
    from limner.pipelines import DualEncoderPipeline
    from limner.pipelines.image_to_text import ImageToTextPipeline
    from limner.text import BagOfWordsEncoder
    from limner.data import ImageFolder
    from tests.conftest import tiny_captioner_pipeline

    captions = ImageFolder(tiny_shapes, "train").captions
    encoder = BagOfWordsEncoder.from_captions(captions)
    DualEncoderPipeline(DualEncoder(aligner_config(text_dim=encoder.dim, base_channels=4, embedding_dim=16, text_hidden=32)), encoder).save_pretrained(tmp_path / "aligner")
    tiny_captioner_pipeline(captions).save_pretrained(tmp_path / "captioner")
    overrides = tiny_train_overrides(tiny_shapes, tmp_path / "run", max_train_steps=2, alignment_weight=0.5, aligner_dir=str(tmp_path / "aligner"),
                                     cycle_weight=0.5, captioner_dir=str(tmp_path / "captioner"))
    trainer = Trainer(build_train_config(None, overrides), progress=False)
    aligner_before = {k: v.clone() for k, v in trainer.guides.aligner.state_dict().items()}
    losses = trainer._train_one_step()
    assert losses["alignment"] > 0 and losses["cycle"] > 0
    assert all(torch.equal(v, trainer.guides.aligner.state_dict()[k]) for k, v in aligner_before.items())
    assert not any(p.requires_grad for p in trainer.guides.captioner.parameters())
    assert isinstance(ImageToTextPipeline.from_pretrained(tmp_path / "captioner"), ImageToTextPipeline)


def test_guides_must_read_captions_as_the_generator_does(tiny_shapes, tmp_path):
    from limner.models.dual_encoder import DualEncoder, aligner_config
    from limner.pipelines import DualEncoderPipeline
    from limner.text import BagOfWordsEncoder

    other = BagOfWordsEncoder.from_captions(["words the generator never uses"])
    DualEncoderPipeline(DualEncoder(aligner_config(text_dim=other.dim, base_channels=4)), other).save_pretrained(tmp_path / "aligner")
    overrides = tiny_train_overrides(tiny_shapes, tmp_path / "run", alignment_weight=1.0, aligner_dir=str(tmp_path / "aligner"))
    with pytest.raises(ConfigError, match="the aligner reads captions with"):
        Trainer(build_train_config(None, overrides), progress=False)
    with pytest.raises(ConfigError, match="cycle_weight > 0 needs captioner_dir"):
        build_train_config(None, tiny_train_overrides(tiny_shapes, tmp_path / "run", cycle_weight=1.0))


def _noise_spread(generator, caption: torch.Tensor) -> float:
    """Mean absolute difference between images of one caption drawn from different noise."""
    with torch.no_grad():
        images = generator(torch.randn(8, 8, generator=torch.Generator().manual_seed(5)), caption.repeat(8, 1))
    return (images[:4] - images[4:]).abs().mean().item()


def test_diversity_term_makes_the_generator_use_its_noise():
    """With a pixel reconstruction term the samples of a caption collapse onto one image; the
    diversity term (pairs of noises for the same captions) keeps them apart."""
    spreads = {}
    for weight in (0.0, 1.0):
        models, optimizers = _models()
        target = torch.full((8, 3, 32, 32), -1.0)
        target[:, 0, 4:14, 4:14] = 1.0
        captions = torch.eye(12)[:1].repeat(8, 1)
        rng = torch.Generator().manual_seed(0)
        for _ in range(150):
            batch = GANBatch(target, captions, torch.eye(12)[1:2].repeat(8, 1), torch.randn(8, 8, generator=rng),
                             pair_noise=torch.randn(4, 8, generator=rng))
            losses = gan_train_step(models, optimizers, batch, reconstruction_weight=10.0, diversity_weight=weight,
                                     diversity_target=0.2)
        spreads[weight] = _noise_spread(models.generator, captions[:1])
        assert ("diversity" in losses) == (weight > 0)
    assert spreads[1.0] > 3 * spreads[0.0], spreads


def test_training_with_augmentation_and_the_diversity_term(tiny_shapes, tmp_path):
    config = build_train_config(None, tiny_train_overrides(tiny_shapes, tmp_path / "out", augment="translation,cutout",
                                                           diversity_weight=1.0, diversity_target=0.05, reconstruction_weight=1.0,
                                                           reconstruction_pool=4))
    trainer = Trainer(config, progress=False)
    assert trainer.diversity_target == 0.05
    result = trainer.train()
    assert "diversity" in result.last_losses and all(math.isfinite(v) for v in result.last_losses.values())
    with pytest.raises(ConfigError, match="unknown augmentation"):
        build_train_config(None, {"augment": "mirror"})


def test_diversity_target_is_the_spread_of_real_images_sharing_a_caption():
    from limner.errors import DataError
    from limner.training.data import CaptionedImages, estimate_diversity_target

    images = torch.zeros(4, 3, 4, 4, dtype=torch.uint8)
    images[1] = 51  # differs from image 0 by 51 / 127.5 = 0.4 in [-1, 1]; images 2 and 3 are equal
    data = CaptionedImages(images, ["a", "b"], torch.zeros(2, 3), torch.tensor([0, 0, 1, 1]), torch.arange(4), torch.ones(4, dtype=torch.long))
    assert abs(estimate_diversity_target(data, pairs=4000) - 0.2) < 0.02  # half the pairs 0.4 apart, half 0
    lonely = CaptionedImages(images, list("abcd"), torch.zeros(4, 3), torch.arange(4), torch.arange(4), torch.ones(4, dtype=torch.long))
    with pytest.raises(DataError, match="no caption has two images"):
        estimate_diversity_target(lonely)


def test_best_of_two_reconstruction_lets_one_caption_keep_two_looks():
    """One caption, two real images (a square top-left or bottom-right): the plain reconstruction
    term pulls every sample onto their blurred mean; best-of-two lets the noise choose one."""
    spreads = {}
    for best_of_two in (False, True):
        models, optimizers = _models()
        target = torch.full((8, 3, 32, 32), -1.0)
        target[:4, 0, 2:14, 2:14] = 1.0
        target[4:, 1, 18:30, 18:30] = 1.0
        captions = torch.eye(12)[:1].repeat(8, 1)
        rng = torch.Generator().manual_seed(0)
        for _ in range(150):
            batch = GANBatch(target, captions, torch.eye(12)[1:2].repeat(8, 1), torch.randn(8, 8, generator=rng),
                             pair_noise=torch.randn(8, 8, generator=rng))
            losses = gan_train_step(models, optimizers, batch, reconstruction_weight=10.0, reconstruction_best_of_two=best_of_two)
        spreads[best_of_two] = _noise_spread(models.generator, captions[:1])
        assert math.isfinite(losses["reconstruction"])
    assert spreads[True] > 3 * spreads[False], spreads


def test_reconstruction_that_follows_the_warp_leaves_the_placement_to_the_warp():
    """Where the body draws the real image exactly, the plain term still pulls the warp's moves back
    to none; moving the real image by each sample's own warp makes the target the sample itself,
    wherever the warp put it: no error and no pull on the warp head."""
    from limner.training.gan_step import warped_like_samples
    from limner.training.losses import reconstruction_loss

    models, optimizers = _models(noise_warp=0.125)
    generator, captions = models.generator.eval(), torch.eye(12)[:4]
    noise = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    still = copy.deepcopy(generator)
    with torch.no_grad():
        still.warp.weight.zero_()
        body = still(noise, captions)  # what the generator draws before its warp
    batch = GANBatch(body, captions, captions, noise)
    pulls = {}
    for follows in (False, True):
        generator.zero_grad()
        target = warped_like_samples(generator, batch, captions) if follows else body
        error = reconstruction_loss(generator(noise, captions), target)
        error.backward()
        pulls[follows] = (error.item(), generator.warp.weight.grad.norm().item())
    assert pulls[False][0] > 0.01 and pulls[False][1] > 1e-3, pulls
    assert pulls[True][0] < 1e-5 and pulls[True][1] < 1e-4, pulls
    losses = gan_train_step(models, optimizers, batch, reconstruction_weight=10.0, reconstruction_follows_warp=True)
    assert math.isfinite(losses["reconstruction"])


def test_with_whole_pixel_moves_the_target_follows_only_the_whole_pixels_and_exactly():
    """Warp at the finished image (depth 0): the real image is copied by the same whole pixels the
    sample was (no resampling, so its pixel values are unchanged), not by the sub-pixel rest."""
    from limner.models.gan import split_whole_pixels, warped
    from limner.training.gan_step import warped_like_samples

    models, optimizers = _models(noise_warp=0.125, noise_warp_whole_pixels=True, noise_warp_reads="noise")
    generator, captions = models.generator, torch.eye(12)[:4]
    torch.nn.init.normal_(generator.warp.weight, std=2.0)  # moves of several pixels
    noise = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    batch = GANBatch(real, captions, captions, noise)
    target = warped_like_samples(generator, batch, captions)
    whole = split_whole_pixels(generator.warp_moves(noise, captions), 0.125, 32)[1] * 0.125 * 32  # in pixels
    assert whole[:, :2].abs().sum() > 0 and torch.equal(whole[:, :2], whole[:, :2].round())
    for image, moved, (dx, dy) in zip(real, target, whole[:, :2].long().tolist()):
        assert torch.allclose(moved[:, max(dy, 0):32 + min(dy, 0), max(dx, 0):32 + min(dx, 0)],
                              image[:, max(-dy, 0):32 + min(-dy, 0), max(-dx, 0):32 + min(-dx, 0)], atol=1e-5)
    assert not torch.allclose(target, warped(real, generator.warp_moves(noise, captions), 0.125))  # not the full move
    losses = gan_train_step(models, optimizers, batch, reconstruction_weight=10.0, reconstruction_follows_warp=True)
    assert math.isfinite(losses["reconstruction"])


def test_reconstruction_that_follows_the_warp_needs_a_warp():
    with pytest.raises(ConfigError, match="reconstruction_follows_warp moves each real image"):
        GANTrainConfig(reconstruction_weight=10.0, reconstruction_follows_warp=True)
    assert GANTrainConfig(reconstruction_weight=10.0, reconstruction_follows_warp=True,
                          generator=GeneratorConfig(noise_warp=0.06)).reconstruction_follows_warp


def test_nearest_noise_picks_the_candidate_whose_image_is_nearest():
    models, _ = _models()
    candidates = torch.randn(3, 2, 8, generator=torch.Generator().manual_seed(1))  # (K, B, Z)
    captions = torch.eye(12)[:2]
    with torch.no_grad():
        drawn = torch.stack([models.generator(noise, captions) for noise in candidates])  # (K, B, 3, H, W)
    real = torch.stack([drawn[2, 0], drawn[0, 1]])  # caption 0 looks like candidate 2, caption 1 like candidate 0
    chosen = nearest_noise(models.generator, candidates, captions, real, pool=1)
    assert torch.equal(chosen[0], candidates[2, 0]) and torch.equal(chosen[1], candidates[0, 1])


def _four_corner_looks() -> torch.Tensor:
    """(4, 3, 32, 32): one caption's four real looks, a square in each corner."""
    looks = torch.full((4, 3, 32, 32), -0.8)
    for index, (row, column) in enumerate([(2, 2), (2, 18), (18, 2), (18, 18)]):
        looks[index, index % 3, row:row + 12, column:column + 12] = 0.8
    return looks


def _train_on_four_looks(steps: int, labels: torch.Tensor | None = None, seed: int = 0):
    """A generator with 4 noise codes (initialised from `seed`) trained on one caption's four looks
    (twice each in a batch of 8, the batches' noise always from seed 0), every code tried for each
    real image; with `labels` (8,), the codes tied to them instead.
    -> (looks, the caption (1, 12), models)."""
    from limner.training.gan_step import tie_codes
    looks = _four_corner_looks()
    target = looks.repeat(2, 1, 1, 1)  # (8, 3, 32, 32)
    captions = torch.eye(12)[:1].repeat(8, 1)
    models, optimizers = _models(seed=seed, noise_codes=4)
    rng = torch.Generator().manual_seed(0)
    every = torch.ones(8, dtype=torch.bool)
    for _ in range(steps):
        pair_noise = torch.randn(8, 8, generator=rng)
        batch = GANBatch(target, captions, torch.eye(12)[1:2].repeat(8, 1), torch.randn(8, 8, generator=rng),
                         pair_noise=pair_noise, search_noise=other_codes(pair_noise, 4), search_rows=None if labels is None else every)
        if labels is not None:
            tie_codes(batch, labels, every, 4)
        gan_train_step(models, optimizers, batch, reconstruction_weight=10.0, reconstruction_best_of_two=True)
    return looks, captions, models


def test_noise_codes_each_settle_on_one_look_when_every_code_is_tried():
    """One caption, four real looks (a square in each corner). With four discrete codes, every code
    tried for each real image and only the nearest pulled (multiple-choice learning), the codes
    divide the looks among them: each code draws its own look, whatever the rest of the noise.
    Multiple-choice learning can leave a code that never wins (two codes on one look, one look
    uncovered), and which start does so depends on the CPU's float kernels (the generator from seed
    0 did on an AVX512-BF16 EPYC, not on others; seeds 1 to 4 divided the looks there), so three
    starts are trained and two must divide the looks. The batches' noise stays that of seed 0: with
    other draws 300 steps left a code uncovered in both starts tried, so the division is a property
    of these starts, not a guarantee of the method."""
    divided = []
    for seed in range(3):
        looks, captions, models = _train_on_four_looks(300, seed=seed)
        divided.append(_codes_divide_looks(models, captions, looks))
    assert sum(divided) >= 2, divided


def _codes_divide_looks(models, captions: torch.Tensor, looks: torch.Tensor) -> bool:
    """True when, for two draws of the rest of the noise, the four codes draw four different looks,
    each near its look (measured 0.04 to 0.09, where the looks' blurred mean is 0.15 to 0.2 from each)."""
    with torch.no_grad():
        tails = torch.randn(2, 8, generator=torch.Generator().manual_seed(7))
        for tail in tails:
            drawn = torch.cat([models.generator(with_code(tail[None], code, 4), captions[:1]) for code in range(4)])  # (code, 3, H, W)
            errors = (drawn[:, None] - looks[None]).abs().flatten(2).mean(2)  # (code, look)
            if sorted(errors.argmin(1).tolist()) != [0, 1, 2, 3] or errors.min(1).values.max() >= 0.11:
                return False
    return True


def test_noise_codes_are_uniform_and_settable():
    noise = torch.randn(4000, 10, generator=torch.Generator().manual_seed(0))
    coded = coded_noise(noise, 4)
    assert coded.shape == noise.shape and torch.equal(coded[:, 4:], noise[:, 4:])
    assert torch.equal((coded[:, :4] > 0).sum(1), torch.ones(4000, dtype=torch.long))  # exactly one code on
    shares = torch.bincount(noise_code(noise, 4), minlength=4) / 4000
    assert (shares - 0.25).abs().max() < 0.03, shares
    others = other_codes(noise[:3], 4)  # (3, 3, 10): every code but each noise's own, the rest kept
    assert others.shape == (3, 3, 10) and torch.equal(others[:, :, 4:], noise[:3, 4:].expand(3, -1, -1))
    codes = torch.stack([noise_code(candidate, 4) for candidate in [noise[:3], *others]])  # (4, 3)
    assert torch.equal(codes.sort(0).values, torch.arange(4)[:, None].expand(4, 3))
    with pytest.raises(ConfigError, match="noise_codes"):
        tiny_generator_config(noise_codes=1)
    with pytest.raises(ConfigError, match="reconstruction_best_of 2"):
        build_train_config(None, {"generator": {"noise_codes": 4}, "reconstruction_best_of": 1})


def test_latent_encoder_lets_the_noise_pick_one_of_a_captions_looks():
    """One caption, two real images (a red square top-left, a green one bottom-right). With the
    latent encoder each real image's proposed noise redraws that image."""
    target = torch.full((8, 3, 32, 32), -0.8)  # short of tanh's ends, where a collapsed generator has no gradient
    target[:4, 0, 2:14, 2:14] = 0.8
    target[4:, 1, 18:30, 18:30] = 0.8
    captions = torch.eye(12)[:1].repeat(8, 1)
    models, optimizers = _models(latent_dims=2)
    rng = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = GANBatch(target, captions, torch.eye(12)[1:2].repeat(8, 1), torch.randn(8, 8, generator=rng),
                         pair_noise=torch.randn(8, 8, generator=rng), shared_caption=torch.ones(8, dtype=torch.bool))
        losses = gan_train_step(models, optimizers, batch, reconstruction_weight=10.0, latent_kl_weight=0.01)
    assert math.isfinite(losses["reconstruction"])
    assert "latent_kl" in losses and losses["latent_kl"] > 0
    # Not asserted: that prior samples spread more than with plain reconstruction. It held (over 1.5x)
    # on the machine that wrote this test and not on a later one (0.113 against 0.133), so it says
    # nothing either way; what is asserted is the mechanism, below.
    with torch.no_grad():  # the proposal for each look (as the step standardises it, at zero draw) redraws that look
        batch.pair_noise = torch.zeros(8, 8)
        noise, _ = encoded_pair_noise(models.latent_encoder, batch)
        drawn = models.generator(noise[[0, 4]], captions[:2])
    errors = (drawn[:, None] - target[None, [0, 4]]).abs().flatten(2).mean(2)  # (drawn, look)
    assert errors[0, 0] < errors[0, 1] and errors[1, 1] < errors[1, 0], errors


def test_latent_encoder_serves_only_captions_several_images_share():
    """A caption with a single image keeps the plain noise (and adds no KL)."""
    models, _ = _models(latent_dims=2)
    images = torch.zeros(4, 3, 32, 32)
    pair_noise = torch.randn(4, 8)
    batch = GANBatch(images, torch.zeros(4, 12), torch.zeros(4, 12), torch.randn(4, 8), pair_noise=pair_noise,
                     shared_caption=torch.tensor([True, False, True, False]))
    noise, kl = encoded_pair_noise(models.latent_encoder, batch)
    assert torch.equal(noise[[1, 3]], pair_noise[[1, 3]]) and not torch.equal(noise[[0, 2]], pair_noise[[0, 2]])
    assert torch.equal(noise[:, 2:], pair_noise[:, 2:])  # only the first latent_dims entries are proposed
    batch.shared_caption = torch.zeros(4, dtype=torch.bool)
    assert encoded_pair_noise(models.latent_encoder, batch)[1].item() == 0.0


def test_training_with_the_latent_encoder_checkpoints_and_resumes_it(tiny_shapes, tmp_path):
    overrides = tiny_train_overrides(tiny_shapes, tmp_path / "out", latent_encoder_dims=2, reconstruction_weight=1.0,
                                     checkpointing_steps=2)
    result = Trainer(build_train_config(None, overrides), progress=False).train()
    assert "latent_kl" in result.last_losses and all(math.isfinite(v) for v in result.last_losses.values())
    checkpoint = resolve_checkpoint(tmp_path / "out" / "checkpoints", "latest")
    assert (checkpoint / "latent_encoder" / "model.safetensors").is_file()
    resumed = Trainer(build_train_config(None, {**overrides, "resume_from_checkpoint": "latest"}), progress=False)
    saved = LatentEncoder.from_pretrained(checkpoint / "latent_encoder").state_dict()
    assert all(torch.equal(saved[name], value) for name, value in resumed.models.latent_encoder.state_dict().items())
    with pytest.raises(ConfigError, match="reconstruction_best_of 1"):
        build_train_config(None, {"latent_encoder_dims": 2, "reconstruction_weight": 1.0, "reconstruction_best_of": 2})


def test_tied_codes_take_each_labelled_images_code_and_leave_the_rest_drawn():
    from limner.training.gan_step import tie_codes
    noise, pair_noise = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    batch = GANBatch(torch.zeros(4, 3, 8, 8), torch.zeros(4, 12), torch.zeros(4, 12), noise.clone(), pair_noise=pair_noise.clone(),
                     search_noise=other_codes(pair_noise, 4), search_rows=torch.tensor([True, True, True, False]))
    labels, shared = torch.tensor([2, -1, 0, 3]), torch.tensor([True, True, True, False])
    tie_codes(batch, labels, shared, 4)
    assert noise_code(batch.noise, 4)[[0, 2]].tolist() == [2, 0] and noise_code(batch.pair_noise, 4)[[0, 2]].tolist() == [2, 0]
    assert torch.equal(batch.noise[[1, 3]], noise[[1, 3]]) and torch.equal(batch.pair_noise[[1, 3]], pair_noise[[1, 3]])  # unlabelled, or one image
    assert torch.equal(batch.noise[:, 4:], noise[:, 4:])  # the rest of each noise kept
    assert batch.search_rows.tolist() == [False, True, False, False]  # only the unlabelled shared caption is still searched


def test_tied_codes_each_learn_their_labels_look():
    """One caption, four real looks labelled 0-3 (a square in each corner). With the codes tied to the
    labels, code k draws look k: not a permutation found by the search, the labelled one."""
    looks, captions, models = _train_on_four_looks(200, labels=torch.arange(4).repeat(2))
    with torch.no_grad():
        tail = torch.randn(1, 8, generator=torch.Generator().manual_seed(7))
        drawn = torch.cat([models.generator(with_code(tail, code, 4), captions[:1]) for code in range(4)])
        errors = (drawn[:, None] - looks[None]).abs().flatten(2).mean(2)  # (code, look)
        assert errors.argmin(1).tolist() == [0, 1, 2, 3], errors


def test_codes_tie_to_a_metadata_column_or_say_what_is_wrong():
    from limner.training.data import CaptionedImages, column_codes
    data = CaptionedImages(images=torch.zeros(4, 3, 8, 8, dtype=torch.uint8), captions=["a"], sentence_table=torch.zeros(1, 4),
                           caption_ids=torch.zeros(4, dtype=torch.long), offsets=torch.arange(4), counts=torch.ones(4, dtype=torch.long),
                           columns=[{"style": "twitter"}, {"style": "google"}, {}, {"style": "twitter", "concept": "heart"}])
    names, codes = column_codes(data, "style")
    assert names == ("google", "twitter") and codes.tolist() == [1, 0, -1, 1]
    with pytest.raises(ConfigError, match="no training image has that metadata column .*concept, style"):
        column_codes(data, "colour")
    with pytest.raises(ConfigError, match="needs generator.noise_codes"):
        build_train_config(None, {"noise_code_column": "style"})
    with pytest.raises(ConfigError, match='noise_code_rows must be "shared" or "all"'):
        build_train_config(None, {"noise_code_rows": "styled"})


def _styled_folder(root):
    """A tiny imagefolder with a style column: one concept drawn in two styles, each image with a
    styled and a style-free caption, so the style-free caption is shared."""
    import json
    from PIL import Image
    split = root / "train"
    split.mkdir(parents=True)
    lines = []
    for index in range(8):
        style = ("plain", "outlined")[index % 2]
        Image.new("RGB", (32, 32), (200, 40 * index, 90 if index % 2 else 10)).save(split / f"{index}.png")
        lines.append(json.dumps({"file_name": f"{index}.png", "text": [f"dot {index // 2}, {style} style", f"dot {index // 2}"], "style": style,
                                 "concept": f"dot {index // 2}"}))
    (split / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_training_ties_the_codes_to_a_column_and_saves_their_names(tmp_path):
    data = _styled_folder(tmp_path / "styled")
    from tests.conftest import TINY_GENERATOR
    tied = {"generator": {**TINY_GENERATOR, "noise_codes": 2}, "noise_code_column": "style",
            "reconstruction_weight": 1.0, "reconstruction_best_of": 2}
    config = build_train_config(None, tiny_train_overrides(data, tmp_path / "out", **tied, max_train_steps=2))
    Trainer(config, progress=False).train()
    from limner.pipelines import TextToImagePipeline
    tied_shared = TextToImagePipeline.from_pretrained(tmp_path / "out")
    assert tied_shared.code_names == ("outlined", "plain") and not tied_shared.generator.config.code_from_prompt
    config = build_train_config(None, tiny_train_overrides(data, tmp_path / "all", **tied, noise_code_rows="all", max_train_steps=1))
    Trainer(config, progress=False).train()
    assert TextToImagePipeline.from_pretrained(tmp_path / "all").generator.config.code_from_prompt  # styled prompts name their code
    tied["generator"]["noise_codes"] = 3
    with pytest.raises(ConfigError, match=r"'style' has 2 values \(outlined, plain\) but generator.noise_codes is 3"):
        Trainer(build_train_config(None, tiny_train_overrides(data, tmp_path / "out3", **tied)), progress=False)


def test_the_class_head_alone_teaches_each_code_its_labels_look():
    """One caption, four real looks labelled 0-3, each image drawn from its label's code, and no
    reconstruction term: only the discriminator's class head (trained on the real images) tells the
    generator which look a code's image should show. Code k then draws look k."""
    looks = _four_corner_looks()
    target, labels = looks.repeat(2, 1, 1, 1), torch.arange(4).repeat(2)
    captions = torch.eye(12)[:1].repeat(8, 1)
    models, optimizers = _models(noise_codes=4, classes=(4,))
    rng = torch.Generator().manual_seed(0)
    for _ in range(STEPS_CLASS_HEAD):
        noise = with_code(torch.randn(8, 8, generator=rng), labels, 4)
        batch = GANBatch(target, captions, torch.eye(12)[1:2].repeat(8, 1), noise, class_labels=labels[:, None], fake_class_labels=labels[:, None])
        stats = gan_train_step(models, optimizers, batch, class_weight=1.0)
    assert stats["class_real"] < 0.1, stats  # the head reads the real looks
    with torch.no_grad():
        tail = torch.randn(1, 8, generator=torch.Generator().manual_seed(7))
        drawn = torch.cat([models.generator(with_code(tail, code, 4), captions[:1]) for code in range(4)])
        errors = (drawn[:, None] - looks[None]).abs().flatten(2).mean(2)  # (code, look)
        assert errors.argmin(1).tolist() == [0, 1, 2, 3], errors


STEPS_CLASS_HEAD = 200


def test_caption_labels_keep_a_value_only_where_every_image_of_the_caption_agrees():
    from limner.training.data import CaptionedImages, caption_labels
    # images 0-2 carry caption 0 (styles 1, 0, 1); image 1 also caption 1; image 2 caption 2; image 3 caption 3 (no style)
    data = CaptionedImages(images=torch.zeros(4, 3, 8, 8, dtype=torch.uint8), captions=["dot", "dot, a style", "dot, b style", "x"],
                           sentence_table=torch.zeros(4, 4), caption_ids=torch.tensor([0, 0, 1, 0, 2, 3]),
                           offsets=torch.tensor([0, 1, 3, 5]), counts=torch.tensor([1, 2, 2, 1]))
    assert caption_labels(data, torch.tensor([1, 0, 1, -1])).tolist() == [-1, 0, 1, -1]


def test_training_with_a_class_head_labels_real_and_generated_images(tmp_path):
    data = _styled_folder(tmp_path / "styled")
    from tests.conftest import TINY_GENERATOR
    config = build_train_config(None, tiny_train_overrides(data, tmp_path / "out", class_column="style, concept", max_train_steps=1))
    trainer = Trainer(config, progress=False)
    assert trainer.class_names == (("outlined", "plain"), ("dot 0", "dot 1", "dot 2", "dot 3"))
    assert trainer.models.discriminator.config.classes == (2, 4)
    batch, own, _ = trainer._sample_batch()
    styled = torch.tensor([", " in trainer.data.captions[caption] for caption in own.tolist()])
    assert batch.class_labels.shape == (len(own), 2) and (batch.class_labels >= 0).all()
    assert torch.equal(batch.fake_class_labels[:, 0] >= 0, styled)  # a style-free caption's images differ in style: not known
    assert (batch.fake_class_labels[:, 1] >= 0).all()  # but agree on the concept
    assert {"class_real", "class_fake"} <= trainer._run_step(batch).keys()
    tied = {"generator": {**TINY_GENERATOR, "noise_codes": 2}, "noise_code_column": "style", "class_column": "concept,style",
            "reconstruction_weight": 1.0, "reconstruction_best_of": 2}
    trainer = Trainer(build_train_config(None, tiny_train_overrides(data, tmp_path / "tied", **tied, max_train_steps=1)), progress=False)
    batch, _, _ = trainer._sample_batch()
    assert torch.equal(batch.fake_class_labels, batch.class_labels)  # tied codes: every generated image's value is its code's
    with pytest.raises(ConfigError, match="class_column 'colour': no training image has that metadata column"):
        Trainer(build_train_config(None, tiny_train_overrides(data, tmp_path / "x", class_column="colour")), progress=False)
    with pytest.raises(ConfigError, match="class_weight must be 0"):
        build_train_config(None, {"class_weight": -1})
    with pytest.raises(ConfigError, match="distinct metadata columns"):
        build_train_config(None, {"class_column": "style,,style"})


def test_the_diversity_term_waits_for_its_start_step(tiny_shapes, tmp_path):
    config = build_train_config(None, tiny_train_overrides(tiny_shapes, tmp_path / "out", diversity_weight=1.0, diversity_start_step=2,
                                                          diversity_target=0.1))
    trainer = Trainer(config, progress=False)
    assert "diversity" not in trainer._train_one_step()  # step 0: the caption first
    trainer.step = 2
    assert "diversity" in trainer._train_one_step()
    with pytest.raises(ConfigError, match="diversity_start_step"):
        build_train_config(None, {"diversity_start_step": -1})


@pytest.mark.parametrize("mixed_precision, native, dtype", [
    ("bf16", False, torch.bfloat16), ("no", True, torch.float32), ("auto", True, torch.float32),
    ("native", True, torch.bfloat16), ("native", False, torch.float32),
])
def test_the_step_runs_under_bf16_autocast_on_the_cpu_only_when_asked(tiny_shapes, tmp_path, monkeypatch, mixed_precision, native, dtype):
    from limner.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: native)  # whether this CPU has bf16 instructions
    config = build_train_config(None, tiny_train_overrides(tiny_shapes, tmp_path / "out", mixed_precision=mixed_precision, device="cpu"))
    trainer = Trainer(config, progress=False)
    seen = []
    trainer.models.generator.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    losses = trainer._train_one_step()
    assert seen and set(seen) == {dtype} and all(math.isfinite(v) for v in losses.values())
    assert all(p.dtype == torch.float32 for p in trainer.models.generator.parameters())  # weights stay fp32 under autocast


def test_mixed_precision_names_what_it_takes():
    with pytest.raises(ConfigError, match="mixed_precision must be one of auto, native, bf16, no"):
        build_train_config(None, {"mixed_precision": "fp16"})


def test_bf16_on_a_cpu_without_bf16_instructions_warns_that_it_is_emulated(tiny_shapes, tmp_path, monkeypatch, caplog):
    from limner.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_has_bf16", lambda: False)
    config = build_train_config(None, tiny_train_overrides(tiny_shapes, tmp_path / "out", mixed_precision="bf16", device="cpu"))
    with caplog.at_level("WARNING", logger="limner.train"):
        Trainer(config, progress=False)
    assert "no bf16 instructions" in caplog.text
