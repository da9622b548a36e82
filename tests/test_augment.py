import pytest
import torch

from limner.errors import ConfigError
from limner.training.augment import cutout, diff_augment, parse_policy, translation


def test_policies_parse_and_unknown_names_are_refused():
    assert parse_policy("translation, cutout") == ("translation", "cutout")
    assert parse_policy("") == ()
    with pytest.raises(ConfigError, match="unknown augmentation \\['flip'\\]"):
        parse_policy("translation,flip")


def test_augmentation_keeps_shape_and_passes_gradients():
    images = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = diff_augment(images, ("translation", "cutout", "color"), torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_same_seed_same_transform():
    images = torch.rand(4, 3, 16, 16)
    a = diff_augment(images, ("translation", "cutout"), torch.Generator().manual_seed(3))
    b = diff_augment(images, ("translation", "cutout"), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_translation_moves_content_and_repeats_the_border():
    images = -torch.ones(8, 3, 16, 16)
    images[:, :, 6:10, 6:10] = 1.0  # a white square on black
    moved = translation(images, torch.Generator().manual_seed(0), translation_ratio=0.25)
    assert (moved.flatten(1) != images.flatten(1)).any(dim=1).any()  # some image moved
    assert moved.min() == -1.0 and (moved == 1.0).flatten(1).sum(1).eq(3 * 16).all()  # square kept whole, border black


def test_cutout_blanks_a_square_of_the_given_share():
    images = torch.ones(5, 3, 16, 16)
    out = cutout(images, torch.Generator().manual_seed(0), cutout_ratio=0.5)
    assert (out == 0).flatten(1).sum(1).eq(3 * 8 * 8).all()
