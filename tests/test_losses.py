import math

import pytest
import torch

from limner.training.losses import class_loss, contrastive_loss, hinge_d_loss, hinge_g_loss, matching_aware_gp, reconstruction_loss


def test_hinge_d_loss_by_hand():
    real = torch.tensor([2.0, 0.5])      # relu(1 - x): 0, 0.5 -> mean 0.25
    fake = torch.tensor([-2.0, 0.0])     # relu(1 + x): 0, 1 -> mean 0.5
    mismatched = torch.tensor([1.0, -1.0])  # 2, 0 -> mean 1.0
    assert torch.isclose(hinge_d_loss(real, fake, mismatched), torch.tensor(0.25 + 0.5 * (0.5 + 1.0)))


def test_hinge_g_loss():
    assert hinge_g_loss(torch.tensor([1.0, 3.0])) == -2.0


def test_matching_aware_gp_of_a_linear_critic():
    # D(x, s) = <a, x> + <b, s>: the gradient norm is sqrt(|a|^2 + |b|^2) for every sample.
    a, b = torch.full((3 * 4 * 4,), 0.1), torch.full((5,), 0.2)
    images = torch.randn(6, 3, 4, 4, requires_grad=True)
    sentence = torch.randn(6, 5, requires_grad=True)
    logits = images.flatten(1) @ a + sentence @ b
    norm = torch.sqrt((a**2).sum() + (b**2).sum())
    gp = matching_aware_gp(logits, images, sentence, weight=2.0, power=6.0)
    assert torch.isclose(gp, 2.0 * norm**6)


def test_matching_aware_gp_is_differentiable():
    weight = torch.tensor(0.5, requires_grad=True)
    images = torch.randn(2, 3, 4, 4, requires_grad=True)
    sentence = torch.randn(2, 5, requires_grad=True)
    logits = weight * (images.flatten(1).sum(1) + sentence.sum(1))
    matching_aware_gp(logits, images, sentence).backward()
    assert weight.grad is not None and weight.grad > 0


def test_contrastive_loss_by_hand():
    # Orthogonal unit vectors, matched pairs: logits are 1/t on the diagonal, 0 elsewhere.
    image = text = torch.eye(3)
    expected = -math.log(math.exp(10.0) / (math.exp(10.0) + 2.0))
    loss = contrastive_loss(image, text, torch.eye(3, dtype=torch.bool), temperature=0.1)
    assert math.isclose(loss.item(), expected, rel_tol=1e-3)  # float32 near zero


def test_contrastive_loss_prefers_matching_pairs():
    image = torch.randn(6, 8)
    positives = torch.eye(6, dtype=torch.bool)
    matched = contrastive_loss(image, image + 0.01 * torch.randn(6, 8), positives)
    shuffled = contrastive_loss(image, image.roll(1, 0), positives)
    assert matched < shuffled


def test_contrastive_loss_spreads_the_target_over_a_repeated_caption():
    # Rows 0 and 1 share a caption, so each of them has two positives of weight 1/2.
    # With logits 10 on the diagonal and 0 elsewhere, rows 0 and 1 cost L - 5 and row 2
    # costs L - 10, where L = log(e^10 + 2); both directions alike.
    shared = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    loss = contrastive_loss(torch.eye(3), torch.eye(3), shared, temperature=0.1)
    assert math.isclose(loss.item(), math.log(math.exp(10.0) + 2.0) - 20.0 / 3.0, rel_tol=1e-5)


def test_reconstruction_loss_is_the_mean_absolute_pixel_error():
    fake = torch.tensor([[0.5, -1.0], [0.0, 1.0]])
    real = torch.tensor([[0.0, -1.0], [1.0, 1.0]])  # errors 0.5, 0, 1, 0
    assert reconstruction_loss(fake, real) == pytest.approx(0.375)
    assert reconstruction_loss(real, real) == 0.0


def test_diversity_loss_falls_to_zero_at_the_target_spread():
    from limner.training.losses import diversity_loss

    noise_a, noise_b = torch.zeros(4, 8), torch.ones(4, 8)  # noise distance 1
    image = torch.zeros(4, 3, 8, 8)
    assert diversity_loss(image, image, noise_a, noise_b, target=0.2) == 1.0  # identical pairs
    assert torch.isclose(diversity_loss(image, image + 0.1, noise_a, noise_b, target=0.2), torch.tensor(0.5))
    assert diversity_loss(image, image + 0.5, noise_a, noise_b, target=0.2) == 0.0  # no push past the target


def test_pooled_diversity_counts_moves_between_cells_not_outlines_within_one():
    from limner.training.losses import diversity_loss

    noise_a, noise_b = torch.zeros(1, 8), torch.ones(1, 8)
    square = torch.zeros(1, 3, 8, 8)
    square[..., 0:2, 0:2] = 1.0
    redrawn = torch.zeros(1, 3, 8, 8)  # the same mass in the same 4x4 cell, another outline
    redrawn[..., 0, 0:4] = 1.0
    moved = torch.zeros(1, 3, 8, 8)  # the same square in another cell
    moved[..., 4:6, 4:6] = 1.0
    assert diversity_loss(square, redrawn, noise_a, noise_b, target=0.01, pool=4) == 1.0  # no spread seen
    assert diversity_loss(square, redrawn, noise_a, noise_b, target=0.01) < 1.0  # by pixels there is
    assert diversity_loss(square, moved, noise_a, noise_b, target=0.01, pool=4) == 0.0


def test_pooled_reconstruction_ignores_shifts_within_a_cell():
    from limner.training.losses import reconstruction_loss

    real = torch.zeros(1, 3, 8, 8)
    real[..., 0, 0] = 1.0
    shifted = torch.zeros(1, 3, 8, 8)
    shifted[..., 1, 1] = 1.0  # one pixel away, inside the same 4 x 4 cell
    assert reconstruction_loss(shifted, real) > 0
    assert reconstruction_loss(shifted, real, pool=4) == 0


def test_shifted_reconstruction_forgives_moves_up_to_the_shift_and_no_further():
    real = torch.zeros(1, 3, 16, 16)
    real[..., 6:10, 6:10] = 1.0  # a square in the middle
    moved_two = torch.roll(real, shifts=(2, -1), dims=(2, 3))
    moved_four = torch.roll(real, shifts=(4, 0), dims=(2, 3))
    assert reconstruction_loss(moved_two, real) > 0
    assert reconstruction_loss(moved_two, real, shift=2) == 0
    assert reconstruction_loss(moved_two, real, shift=1) > 0
    assert reconstruction_loss(moved_four, real, shift=2) > 0
    blurred = torch.full_like(real, real.mean().item())  # a changed outline is never forgiven
    assert reconstruction_loss(blurred, real, shift=2) > 0


def test_shifted_images_cover_every_offset_once():
    from limner.training.losses import shifted

    images = torch.arange(25.0).view(1, 1, 5, 5)
    moves = shifted(images, 1)
    assert len(moves) == 9 and all(m.shape == images.shape for m in moves)
    assert torch.equal(moves[4], images)  # (0, 0) is the middle one
    assert moves[0][0, 0, 1, 1] == images[0, 0, 0, 0]  # moved down and right by one


def smooth_blob(size: int = 16, centre: float = 7.5) -> torch.Tensor:
    """(1, 3, size, size): a Gaussian blob, detailed less than a pixel's frequency (so Fourier moves are exact)."""
    grid = torch.arange(size, dtype=torch.float64)
    rows = torch.exp(-((grid - centre) ** 2) / (2 * 1.5**2))
    return (rows[:, None] * rows[None, :]).expand(1, 3, size, size).float().contiguous()


def test_subpixel_phases_move_by_a_fraction_of_a_pixel_and_keep_the_unmoved_image_first():
    from limner.training.losses import subpixel_phases

    image = smooth_blob()
    phases = subpixel_phases(image, 2)
    assert len(phases) == 4 and all(p.shape == image.shape for p in phases)
    assert torch.allclose(phases[0], image, atol=1e-5)
    down_half, right_half = phases[2], phases[1]  # (j, i) = (1, 0) moves down; (0, 1) moves right
    assert torch.allclose(down_half, smooth_blob(centre=7.5), atol=1e-5) is False
    exact_down = torch.exp(-((torch.arange(16.0) - 8.0) ** 2) / (2 * 1.5**2))[:, None] * torch.exp(-((torch.arange(16.0) - 7.5) ** 2) / (2 * 1.5**2))[None, :]
    assert torch.allclose(down_half[0, 0], exact_down, atol=1e-3)
    assert torch.allclose(right_half[0, 0], exact_down.T, atol=1e-3)
    assert subpixel_phases(image, 1)[0] is image


def test_subpixel_reconstruction_forgives_a_half_pixel_move_that_whole_pixels_cannot():
    real = smooth_blob(centre=7.0)
    half_moved = smooth_blob(centre=8.5)  # 1.5 px down and right: between two whole-pixel moves
    assert reconstruction_loss(half_moved, real, shift=2) > 0.01
    assert reconstruction_loss(half_moved, real, shift=2, subpixel=2) < 1e-3
    assert reconstruction_loss(half_moved, real, shift=1, subpixel=2) < 1e-3  # 1 + 1/2 of a pixel
    assert reconstruction_loss(smooth_blob(centre=11.0), real, shift=2, subpixel=2) > 0.01  # 4 px is beyond it


def test_shifted_reconstruction_has_the_least_error_and_its_gradient():
    from limner.training.losses import shifted

    torch.manual_seed(0)
    real = torch.rand(3, 3, 8, 8)
    fake = torch.rand(3, 3, 8, 8, requires_grad=True)
    reconstruction_loss(fake, real, shift=1).backward()
    fake_again = fake.detach().clone().requires_grad_(True)
    every = torch.stack([(fake_again - moved).abs().flatten(1).mean(1) for moved in shifted(real, 1)])  # (9, B)
    every.min(0).values.mean().backward()
    assert torch.allclose(reconstruction_loss(fake, real, shift=1), every.min(0).values.mean())
    assert torch.allclose(fake.grad, fake_again.grad)


def test_reconstruction_subpixel_needs_a_shift_and_a_sensible_count():
    from limner.errors import ConfigError
    from limner.training.gan_config import GANTrainConfig

    with pytest.raises(ConfigError, match="reconstruction_subpixel"):
        GANTrainConfig(resolution=32, reconstruction_subpixel=2)
    with pytest.raises(ConfigError, match="reconstruction_subpixel"):
        GANTrainConfig(resolution=32, reconstruction_shift=2, reconstruction_subpixel=0)
    assert GANTrainConfig(resolution=32, reconstruction_shift=2, reconstruction_subpixel=4).reconstruction_subpixel == 4


def test_reconstruction_shift_beyond_an_eighth_of_the_resolution_is_refused():
    from limner.errors import ConfigError
    from limner.training.gan_config import GANTrainConfig

    with pytest.raises(ConfigError, match="reconstruction_shift"):
        GANTrainConfig(resolution=32, reconstruction_shift=5)


def test_best_of_reconstruction_pulls_only_the_nearer_sample():
    from limner.training.losses import best_of_reconstruction_loss

    real = torch.zeros(2, 3, 4, 4)
    near = torch.full((2, 3, 4, 4), 0.1, requires_grad=True)
    far = torch.full((2, 3, 4, 4), 0.5, requires_grad=True)
    far.data[1] = -0.05  # the second image's nearer sample is in `far`
    loss = best_of_reconstruction_loss([near, far], real)
    assert loss.item() == pytest.approx((0.1 + 0.05) / 2)
    loss.backward()
    assert near.grad[0].abs().sum() > 0 and near.grad[1].abs().sum() == 0
    assert far.grad[0].abs().sum() == 0 and far.grad[1].abs().sum() > 0


def test_class_loss_reads_only_the_labelled_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [5.0, -5.0]])
    labels = torch.tensor([0, -1, 1])
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert torch.allclose(class_loss(logits, labels), expected)
    assert class_loss(logits, torch.full((3,), -1)).item() == 0.0
