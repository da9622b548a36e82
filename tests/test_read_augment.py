"""Read augmentations: each keeps the picture's size and range and its caption true (the object stays
where and what it was), draws per image, and reaches the readers' training through their configs."""

import pytest
import torch

from limner.errors import ConfigError
from limner.training import build_train_config
from limner.training.read_augment import READ_POLICIES, blur, jpeg, max_shift_for, parse_read_policy, read_augment, resample, shift


def square_images(count=4, side=32):
    """Black pictures with a red square in the top-left quarter, in [-1, 1]."""
    images = torch.full((count, 3, side, side), -1.0)
    images[:, 0, 4:14, 4:14] = 1.0
    return images


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", READ_POLICIES)
def test_every_transform_keeps_size_range_and_where_the_object_is(name):
    images = square_images()
    out = read_augment(images, (name,), rng(), probability=1.0, max_shift=1)
    assert out.shape == images.shape and out.min() >= -1 - 1e-5 and out.max() <= 1 + 1e-5
    red = (out[:, 0] - out[:, 1:].mean(1))  # (B, H, W): how red each pixel is
    assert (red[:, 4:14, 4:14].mean((1, 2)) > 1.0).all()   # the square is still red, and still there
    assert (red[:, 20:, 20:].abs().mean((1, 2)) < 0.2).all()  # the far corner is still black


def test_probability_picks_which_images_change():
    images = square_images(count=64)
    untouched = read_augment(images, ("noise",), rng(), probability=0.0)
    assert torch.equal(untouched, images)
    changed = read_augment(images, ("noise",), rng(), probability=0.5)
    moved = (changed != images).flatten(1).any(1)
    assert 10 < int(moved.sum()) < 54  # about half
    assert torch.equal(images, square_images(count=64))  # the input is not modified in place


def test_blur_keeps_flat_colour_and_softens_edges():
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(blur(flat, rng()), flat, atol=1e-6)
    edge = blur(square_images(count=1), rng())
    assert -1 < edge[0, 0, 9, 14].item() < 1  # a pixel on the square's edge is now between


def test_resample_mixes_smooth_and_hard_edges():
    out = resample(square_images(count=64), rng(3))
    hard = [bool(((picture[0] == 1) | (picture[0] == -1)).all()) for picture in out]
    assert any(hard) and not all(hard)  # nearest both ways keeps two values; smoothing makes values in between


def test_jpeg_compresses_each_image_at_its_own_quality():
    images = square_images(count=2)
    out = jpeg(images, rng())
    assert not torch.equal(out, images) and (out - images).abs().mean() < 0.1


def test_shift_moves_at_most_max_shift():
    images = torch.full((8, 3, 16, 16), -1.0)
    images[:, :, 8, 8] = 1.0
    out = shift(images, rng(), max_shift=2)
    for picture in out:
        y, x = divmod(int(picture[0].argmax()), 16)
        assert abs(y - 8) <= 2 and abs(x - 8) <= 2
    assert max_shift_for(32) == 1 and max_shift_for(64) == 2


def test_policies_are_checked_and_reach_the_readers_configs():
    assert parse_read_policy("jpeg, blur") == ("jpeg", "blur") and parse_read_policy("") == ()
    with pytest.raises(ConfigError, match="unknown read augmentation"):
        parse_read_policy("rotate")
    config = build_train_config(None, {"model": "captioner", "read_augment": "jpeg,shift"})
    images = square_images()
    assert not torch.equal(config.image_augmenter(rng())(images), images)
    assert torch.equal(build_train_config(None, {"model": "captioner"}).image_augmenter(rng())(images), images)
    with pytest.raises(ConfigError, match="unknown read augmentation"):
        build_train_config(None, {"model": "aligner", "read_augment": "mirror"})
    with pytest.raises(ConfigError, match="'read_augment' is a setting of --model"):
        build_train_config(None, {"model": "gan", "read_augment": "jpeg"})


def test_the_captioner_trains_with_read_augmentation(tiny_shapes, tmp_path):
    from limner.training.captioner_trainer import train_captioner

    config = build_train_config(None, {"model": "captioner", "train_data_dir": str(tiny_shapes), "output_dir": str(tmp_path / "cap"),
                                       "max_train_steps": 2, "max_train_minutes": None, "train_batch_size": 8,
                                       "read_augment": "resample,jpeg,blur,noise,shift", "read_augment_probability": 1.0})
    result = train_captioner(config, progress=False)
    assert result.steps == 2 and result.final_loss == result.final_loss  # trained, and the loss is a number
