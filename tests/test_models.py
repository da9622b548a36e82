import math

import pytest
import torch

from limner.errors import ConfigError, ModelLoadError
from limner.models import Discriminator, Generator, truncated_noise
from limner.models.gan import UpBlock
from tests.conftest import tiny_discriminator_config, tiny_generator_config


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_generator_and_discriminator_shapes_and_ranges(resolution):
    generator = Generator(tiny_generator_config(resolution=resolution))
    discriminator = Discriminator(tiny_discriminator_config(resolution=resolution))
    images = generator(torch.randn(3, 8), torch.randn(3, 12))
    assert images.shape == (3, 3, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images, torch.randn(3, 12)).shape == (3,)


def test_256_builds_from_the_same_config():
    generator = Generator(tiny_generator_config(resolution=256, base_channels=2))
    assert generator(torch.randn(1, 8), torch.randn(1, 12)).shape == (1, 3, 256, 256)


def test_generator_depends_on_the_caption():
    generator = Generator(tiny_generator_config())
    torch.nn.init.normal_(generator.blocks[0].fuse1.affine1.shift[2].weight)  # leave identity init
    noise = torch.randn(2, 8)
    a = generator(noise, torch.randn(2, 12))
    b = generator(noise, torch.randn(2, 12))
    assert not torch.allclose(a, b)


def test_save_and_load_give_identical_outputs(tmp_path):
    generator = Generator(tiny_generator_config(resolution=64))
    generator.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(tmp_path / "g")
    assert loaded.config == generator.config
    noise, sentence = torch.randn(2, 8), torch.randn(2, 12)
    assert torch.equal(generator.eval()(noise, sentence), loaded(noise, sentence))
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["config.json", "model.safetensors"]


def test_bilinear_upsampling_leaves_no_two_by_two_seams_and_travels_with_the_weights(tmp_path):
    torch.manual_seed(0)
    grid = torch.randn(1, 4, 4, 4)
    for mode, seams in (("nearest", True), ("bilinear", False)):
        block = UpBlock(4, 4, condition_dim=6, hidden=8, upsample=mode)
        torch.nn.init.zeros_(block.conv2.weight), torch.nn.init.zeros_(block.conv2.bias)  # shortcut only
        out = block(grid, torch.randn(1, 6))
        assert torch.equal(out[..., 0::2, :], out[..., 1::2, :]) == seams  # nearest: every row twice
    nearest = Generator(tiny_generator_config())
    bilinear = Generator(tiny_generator_config(upsample="bilinear"))
    bilinear.load_state_dict(nearest.state_dict())  # the same weights: only the upsampling differs
    noise, sentence = torch.randn(2, 8), torch.randn(2, 12)
    assert not torch.allclose(nearest.eval()(noise, sentence), bilinear.eval()(noise, sentence))
    bilinear.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(tmp_path / "g")
    assert loaded.config.upsample == "bilinear"
    assert torch.equal(loaded(noise, sentence), bilinear(noise, sentence))
    with pytest.raises(ConfigError, match="upsample must be one of nearest, bilinear, got 'cubic'"):
        tiny_generator_config(upsample="cubic")


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_the_shortcut_on_the_coarse_grid_draws_what_it_drew_on_the_fine_one(mode):
    torch.manual_seed(0)
    block = UpBlock(6, 3, condition_dim=5, hidden=8, upsample=mode)
    torch.nn.init.normal_(block.shortcut.bias)  # a bias passes through too: the weights of each upsampled pixel sum to one
    grid = torch.randn(2, 6, 4, 4)
    fine = torch.nn.functional.interpolate(grid, scale_factor=2, mode=mode)
    assert torch.allclose(block._finer(block.shortcut(grid)), block.shortcut(fine), atol=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_a_block_that_keeps_its_channels_adds_its_upsampled_input(mode):
    torch.manual_seed(0)
    block = UpBlock(4, 4, condition_dim=5, hidden=8, upsample=mode)
    grid, condition = torch.randn(2, 4, 4, 4), torch.randn(2, 5)
    fine = torch.nn.functional.interpolate(grid, scale_factor=2, mode=mode)
    residual = block.conv2(block.fuse2(block.conv1(block.fuse1(fine, condition)), condition))
    assert torch.allclose(block(grid, condition), fine + residual, atol=1e-6)


def test_fusing_before_the_upsampling_is_the_same_block_with_nearest_and_travels_with_the_weights(tmp_path):
    torch.manual_seed(0)
    grid, condition = torch.randn(2, 4, 4, 4), torch.randn(2, 6)
    for mode, same in (("nearest", True), ("bilinear", False)):
        after = UpBlock(4, 4, condition_dim=6, hidden=8, upsample=mode)
        before = UpBlock(4, 4, condition_dim=6, hidden=8, upsample=mode, fuse_before_upsample=True)
        for affine in (before.fuse1.affine1, before.fuse1.affine2):  # affines that do something (they start as identity)
            torch.nn.init.normal_(affine.scale[2].weight), torch.nn.init.normal_(affine.shift[2].weight)
        after.load_state_dict(before.state_dict())
        # nearest copies pixels, so per-pixel work commutes with it; bilinear interpolates between them
        assert torch.allclose(after(grid, condition), before(grid, condition), atol=1e-6) == same
    generator = Generator(tiny_generator_config(upsample="bilinear", fuse_before_upsample=True))
    generator.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(tmp_path / "g")
    assert loaded.config.fuse_before_upsample and all(block.fuse_before_upsample for block in loaded.blocks)
    noise, sentence = torch.randn(2, 8), torch.randn(2, 12)
    assert torch.equal(loaded(noise, sentence), generator.eval()(noise, sentence))


def smooth_spot(centre_y: float, centre_x: float, width: float = 1.5, size: int = 32) -> torch.Tensor:
    """(1, 3, size, size): a Gaussian spot, smooth at the pixel scale as an anti-aliased drawing is."""
    grid = torch.arange(size, dtype=torch.float32)
    rows = torch.exp(-((grid - centre_y) ** 2) / (2 * width**2))
    columns = torch.exp(-((grid - centre_x) ** 2) / (2 * width**2))
    return (rows[:, None] * columns[None, :]).expand(1, 3, size, size)


def test_lanczos_warp_moves_a_smooth_drawing_without_blurring_it_where_bilinear_does():
    from limner.models.gan import warped

    spot = smooth_spot(15.5, 15.5)
    move = torch.tensor([[0.5, -0.25, 0.0]])  # 0.5 x 0.06 x 32 = 0.96 px right, 0.48 px up
    expected = smooth_spot(15.5 - 0.48, 15.5 + 0.96)
    assert (warped(spot, move, 0.06, "bilinear") - expected).abs().max() > 0.04
    assert (warped(spot, move, 0.06, "lanczos") - expected).abs().max() < 0.01
    grown = warped(spot, torch.tensor([[0.0, 0.0, 1.0]]), 0.06, "lanczos")  # exp(0.12) as wide about the centre
    assert (grown - smooth_spot(15.5, 15.5, width=1.5 * math.exp(0.12))).abs().max() < 0.01
    assert torch.allclose(warped(spot, torch.zeros(1, 3), 0.06, "lanczos"), spot, atol=1e-5)


def test_a_lanczos_warped_generator_stays_in_range_and_unknown_resampling_is_refused(tmp_path):
    warping = Generator(tiny_generator_config(noise_warp=0.06, noise_warp_resample="lanczos"))
    torch.nn.init.normal_(warping.warp.weight, std=3.0)  # large moves: the kernel's overshoot at hard edges
    images = warping.eval()(torch.randn(4, 8), torch.randn(4, 12))
    assert images.abs().max() <= 1.0
    warping.save_pretrained(tmp_path / "g")
    assert Generator.from_pretrained(tmp_path / "g").config.noise_warp_resample == "lanczos"
    with pytest.raises(ConfigError, match="noise_warp_resample must be one of bilinear, lanczos, got 'cubic'"):
        tiny_generator_config(noise_warp=0.06, noise_warp_resample="cubic")


def test_whole_pixel_moves_copy_the_finished_image_exactly_and_still_teach_the_head():
    from limner.models.gan import split_whole_pixels

    moves = torch.tensor([[0.5, -0.9, 0.3]])
    left, whole = split_whole_pixels(moves, 0.06, 32)  # 0.96 px right, 1.73 px up
    assert torch.allclose(whole, torch.tensor([[1.0, -2.0, 0.0]]) / (0.06 * 32))
    assert torch.allclose(left + whole, moves)  # together they are the move asked for
    config = dict(noise_warp=0.06, noise_warp_depth=1, noise_warp_private=2)
    plain = Generator(tiny_generator_config(**config)).eval()
    rolling = Generator(tiny_generator_config(**config, noise_warp_whole_pixels=True)).eval()
    rolling.load_state_dict(plain.state_dict())
    for head in (plain, rolling):
        with torch.no_grad():
            head.warp.weight.zero_()
            head.warp.bias.copy_(torch.atanh(torch.tensor([1.0 / (0.06 * 32), 0.0, 0.0])))  # exactly 1 px right
    noise, sentence = torch.randn(2, 8), torch.randn(2, 12)
    with torch.no_grad():
        plain.warp.bias.zero_()
        unmoved = plain(noise, sentence)
    moved = rolling(noise, sentence)
    assert torch.allclose(moved[..., 1:], unmoved[..., :-1], atol=1e-5)  # every pixel copied one to the right
    (moved * torch.linspace(-1, 1, 32)).sum().backward()  # a loss that cares where things are
    assert rolling.warp.bias.grad[0].abs() > 0
    with pytest.raises(ConfigError, match="noise_warp_whole_pixels"):
        tiny_generator_config(noise_warp_whole_pixels=True)


def test_a_dropped_fraction_leaves_only_the_whole_pixels_of_a_move():
    config = dict(noise_warp=0.06, noise_warp_depth=1, noise_warp_private=2, noise_warp_whole_pixels=True)
    still = Generator(tiny_generator_config(**config)).eval()
    kept = Generator(tiny_generator_config(**config)).eval()
    dropped = Generator(tiny_generator_config(**config, noise_warp_fraction="dropped")).eval()
    kept.load_state_dict(still.state_dict())
    dropped.load_state_dict(still.state_dict())
    with torch.no_grad():
        for head in (still, kept, dropped):
            head.warp.weight.zero_()
            head.warp.bias.zero_()
        for head in (kept, dropped):
            head.warp.bias[0] = torch.atanh(torch.tensor(1.3 / (0.06 * 32)))  # 1.3 px right
        noise, sentence = torch.randn(2, 8), torch.randn(2, 12)
        unmoved, moved_kept, moved_dropped = still(noise, sentence), kept(noise, sentence), dropped(noise, sentence)
    assert torch.allclose(moved_dropped[..., 1:], unmoved[..., :-1], atol=1e-5)  # the whole pixel, nothing more
    assert not torch.allclose(moved_kept[..., 1:], unmoved[..., :-1], atol=1e-3)  # the 0.3 px went to the features
    with pytest.raises(ConfigError, match="noise_warp_fraction 'dropped'"):
        tiny_generator_config(noise_warp=0.06, noise_warp_fraction="dropped")


def test_a_warp_head_that_reads_the_noise_only_moves_every_caption_alike():
    reading_all = Generator(tiny_generator_config(noise_warp=0.06))
    reading_noise = Generator(tiny_generator_config(noise_warp=0.06, noise_warp_reads="noise"))
    for head in (reading_all, reading_noise):
        torch.nn.init.normal_(head.warp.weight)  # the text's columns too
    noise, sentences = torch.randn(1, 8).expand(2, 8), torch.randn(2, 12)
    all_moves, noise_moves = reading_all.warp_moves(noise, sentences), reading_noise.warp_moves(noise, sentences)
    assert not torch.allclose(all_moves[0], all_moves[1])
    assert torch.allclose(noise_moves[0], noise_moves[1])
    with pytest.raises(ConfigError, match="noise_warp_reads must be one of"):
        tiny_generator_config(noise_warp=0.06, noise_warp_reads="text")


def test_a_fixed_spread_warp_head_learns_only_where_its_moves_centre():
    config = dict(noise_warp=0.06, noise_warp_private=2, noise_warp_reads="noise")
    learned = Generator(tiny_generator_config(**config))
    fixed = Generator(tiny_generator_config(**config, noise_warp_spread="fixed"))
    fixed.load_state_dict(learned.state_dict())
    noise, sentence = torch.randn(4, 8), torch.randn(4, 12)
    assert torch.allclose(fixed(noise, sentence), learned(noise, sentence))  # the same moves until trained
    for head in (learned, fixed):
        (head(noise, sentence) * torch.linspace(-1, 1, 32)).sum().backward()
        assert head.warp.bias.grad.abs().sum() > 0
    assert learned.warp.weight.grad.abs().sum() > 0
    assert fixed.warp.weight.grad is None  # Adam skips it: the spread it started with stays
    with pytest.raises(ConfigError, match="noise_warp_spread must be one of"):
        tiny_generator_config(noise_warp=0.06, noise_warp_reads="noise", noise_warp_spread="frozen")
    with pytest.raises(ConfigError, match="noise_warp_reads to 'noise'"):
        tiny_generator_config(noise_warp=0.06, noise_warp_spread="fixed")


def test_the_warp_heads_start_spread_sets_how_far_its_first_moves_reach():
    heads = []
    for spread in (0.6, 0.3):
        torch.manual_seed(0)
        heads.append(Generator(tiny_generator_config(noise_warp=0.06, noise_warp_private=2, noise_warp_start_spread=spread)))
    noise, sentence = torch.randn(64, 8), torch.randn(64, 12)
    wide, narrow = (torch.atanh(head.warp_moves(noise, sentence)) for head in heads)
    assert torch.allclose(narrow, wide / 2, atol=1e-5)  # before the tanh, half the spread
    assert 0.1 < narrow.std() < 0.6
    with pytest.raises(ConfigError, match="noise_warp_start_spread must be above 0"):
        tiny_generator_config(noise_warp=0.06, noise_warp_start_spread=0.0)


def test_warp_moves_and_scales_the_whole_image_and_starts_reading_the_noise_only(tmp_path):
    from limner.models.gan import warped

    square = -torch.ones(1, 1, 16, 16)
    square[..., 6:10, 6:10] = 1.0
    still = warped(square, torch.zeros(1, 3), 0.125)
    assert torch.allclose(still, square, atol=1e-5)
    right = warped(square, torch.tensor([[1.0, 0.0, 0.0]]), 0.125)  # an eighth of 16 px: 2 px right
    assert torch.allclose(right, torch.roll(square, 2, dims=3), atol=1e-5)
    grown = warped(square, torch.tensor([[0.0, 0.0, 1.0]]), 0.125)  # exp(0.25): 1.28x as wide
    assert (grown > 0).sum() > (square > 0).sum()
    warping = Generator(tiny_generator_config(noise_warp=0.06))
    assert warping.warp.weight[:, :8].abs().sum() > 0 and warping.warp.weight[:, 8:].abs().sum() == 0  # the noise's columns only
    plain = Generator(tiny_generator_config())
    plain.load_state_dict({k: v for k, v in warping.state_dict().items() if not k.startswith("warp.")})
    noise, sentence = torch.randn(2, 8), torch.randn(2, 12)
    with torch.no_grad():
        warping.warp.weight.zero_()
    assert torch.allclose(warping.eval()(noise, sentence), plain.eval()(noise, sentence), atol=1e-5)  # a zero head moves nothing
    torch.nn.init.normal_(warping.warp.weight)
    warping.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(tmp_path / "g")
    assert loaded.config.noise_warp == 0.06
    assert torch.equal(loaded(noise, sentence), warping(noise, sentence))
    assert not torch.allclose(loaded(noise, sentence), plain(noise, sentence), atol=1e-3)
    with pytest.raises(ConfigError, match="noise_warp must be 0"):
        tiny_generator_config(noise_warp=0.5)


def test_a_feature_warp_moves_what_the_last_block_reads_and_is_checked(tmp_path):
    import limner.models.gan as gan

    warping = Generator(tiny_generator_config(noise_warp=0.06, noise_warp_depth=1))
    seen = []
    original = gan.warped
    gan.warped = lambda x, moves, bound, resample: seen.append(x.shape) or original(x, moves, bound, resample)
    try:
        images = warping.eval()(torch.randn(2, 8), torch.randn(2, 12))
    finally:
        gan.warped = original
    last_input = warping.blocks[-1].conv1.in_channels
    assert seen == [torch.Size([2, last_input, 16, 16])] and images.shape[-1] == 32  # features at half size, once
    plain = Generator(tiny_generator_config(noise_warp=0.06))
    plain.load_state_dict(warping.state_dict())
    noise, sentence = torch.randn(2, 8), torch.randn(2, 12)
    assert not torch.allclose(plain.eval()(noise, sentence), warping(noise, sentence), atol=1e-4)
    warping.save_pretrained(tmp_path / "g")
    assert Generator.from_pretrained(tmp_path / "g").config.noise_warp_depth == 1
    with pytest.raises(ConfigError, match="noise_warp_depth must be 0 to 3 up-blocks at resolution 32, got 4"):
        tiny_generator_config(noise_warp=0.06, noise_warp_depth=4)
    with pytest.raises(ConfigError, match="noise_warp_depth 1 places a warp that is off"):
        tiny_generator_config(noise_warp_depth=1)


def test_private_warp_noise_reaches_the_warp_head_only():
    warping = Generator(tiny_generator_config(noise_warp=0.06, noise_warp_private=2)).eval()
    assert warping.warp.weight[:, :6].abs().sum() == 0 and warping.warp.weight[:, 6:8].abs().sum() > 0
    noise, sentence = torch.randn(1, 8), torch.randn(1, 12)
    other = noise.clone()
    other[:, 6:] = torch.tensor([2.0, -2.0])
    assert not torch.allclose(warping(noise, sentence), warping(other, sentence), atol=1e-4)  # the private entries move it
    with torch.no_grad():
        warping.warp.weight.zero_()
    assert torch.allclose(warping(noise, sentence), warping(other, sentence))  # and reach nothing else
    with pytest.raises(ConfigError, match="noise_warp_private needs noise_warp on"):
        tiny_generator_config(noise_warp_private=2)
    with pytest.raises(ConfigError, match=r"1 to 7\), got 8"):
        tiny_generator_config(noise_warp=0.06, noise_warp_private=8)


def test_loading_the_wrong_thing_is_a_clear_error(tmp_path):
    Discriminator(tiny_discriminator_config()).save_pretrained(tmp_path / "d")
    with pytest.raises(ModelLoadError, match="holds a Discriminator, not a Generator"):
        Generator.from_pretrained(tmp_path / "d")
    with pytest.raises(ModelLoadError, match="config.json is missing"):
        Generator.from_pretrained(tmp_path / "empty")


def test_unsupported_resolution():
    with pytest.raises(ConfigError, match=r"resolution must be one of \(32, 64, 128, 256\)"):
        tiny_generator_config(resolution=100)


def test_truncated_noise_stays_inside_the_threshold():
    noise = truncated_noise((1000, 16), truncation=0.5, generator=torch.Generator().manual_seed(0))
    assert noise.abs().max() <= 0.5 and noise.std() > 0.2
    same = truncated_noise((1000, 16), truncation=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noise, same)


def test_truncated_noise_has_the_truncated_normal_spread_and_handles_tiny_thresholds():
    noise = truncated_noise((4000, 16), truncation=1.0, generator=torch.Generator().manual_seed(0))
    assert abs(noise.std().item() - 0.5396) < 0.01 and abs(noise.mean().item()) < 0.01  # sd of N(0,1) cut at +-1
    tiny = truncated_noise((8, 4), truncation=1e-300)  # redrawing would never finish here
    assert tiny.abs().max() <= 1e-300 and truncated_noise((2, 2), truncation=0).abs().max() > 0


def test_private_warp_noise_is_drawn_untruncated_and_the_rest_as_before():
    from limner.models import generator_noise

    plain = truncated_noise((4000, 8), truncation=0.6, generator=torch.Generator().manual_seed(0))
    warping = generator_noise(tiny_generator_config(noise_warp=0.06, noise_warp_private=2), 4000, truncation=0.6,
                              generator=torch.Generator().manual_seed(0))
    assert torch.equal(warping[:, :6], plain[:, :6])  # the body's noise: the same draws
    assert abs(warping[:, 6:].std().item() - 1.0) < 0.05 and warping[:, 6:].abs().max() > 2.0  # the tail: a full normal
    assert torch.equal(generator_noise(tiny_generator_config(), 50, truncation=0.6, generator=torch.Generator().manual_seed(0)),
                       plain[:50])


def test_text_standardizer_centres_and_scales_and_travels_with_the_weights(tmp_path):
    torch.manual_seed(0)
    sentences = torch.randn(1, 12) * 5 + torch.randn(40, 12) * 0.1  # a shared part and small offsets
    generator = Generator(tiny_generator_config())
    generator.text_norm.fit(sentences)
    out = generator.text_norm(sentences)
    assert out.mean(0).abs().max() < 1e-4 and torch.isclose(out.pow(2).mean(), torch.tensor(1.0), atol=1e-4)
    generator.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(tmp_path / "g")
    assert torch.equal(loaded.text_norm(sentences), out)


def test_text_components_drop_directions_the_training_captions_never_vary_in(tmp_path):
    torch.manual_seed(0)
    # training captions vary only along the first two axes of a 12-d space
    sentences = torch.zeros(30, 12)
    sentences[:, :2] = torch.randn(30, 2)
    generator = Generator(tiny_generator_config(text_components=2))
    generator.text_norm.fit(sentences)
    new_wording = sentences[:5].clone()
    new_wording[:, 5:] += 3.0  # a shift in directions unseen in training
    assert torch.allclose(generator.text_norm(new_wording), generator.text_norm(sentences[:5]), atol=1e-5)
    assert generator.text_norm(sentences).pow(2).mean().item() == pytest.approx(1.0, abs=1e-4)
    generator.save_pretrained(tmp_path / "g")
    assert torch.equal(Generator.from_pretrained(tmp_path / "g").text_norm(new_wording), generator.text_norm(new_wording))


def test_text_components_beyond_the_training_captions_are_refused():
    with pytest.raises(ConfigError, match="distinct training captions"):
        Generator(tiny_generator_config(text_components=5)).text_norm.fit(torch.randn(3, 12))


def test_condition_noise_stays_in_the_kept_directions_at_the_asked_scale():
    torch.manual_seed(0)
    sentences = torch.zeros(50, 12)
    sentences[:, :3] = torch.randn(50, 3) * torch.tensor([3.0, 2.0, 1.0])
    norm = Generator(tiny_generator_config(text_components=3)).text_norm
    norm.fit(sentences)
    noise = norm.noise_like(torch.zeros(20000, 12), 0.5, torch.Generator().manual_seed(1))
    assert noise[:, 3:].abs().max() < 1e-5  # nothing outside the training captions' directions
    per_direction = (sentences - sentences.mean(0)).pow(2).sum(1).mean().div(3).sqrt()
    assert noise.pow(2).sum(1).mean().div(3).sqrt().item() == pytest.approx(0.5 * per_direction.item(), rel=0.03)


def test_whitening_gives_every_kept_direction_the_same_spread(tmp_path):
    torch.manual_seed(0)
    sentences = torch.zeros(60, 12)
    sentences[:, :3] = torch.randn(60, 3) * torch.tensor([4.0, 1.0, 0.2])  # colour-like, shape-like, faint
    generator = Generator(tiny_generator_config(text_components=3, text_whiten=True))
    generator.text_norm.fit(sentences)
    basis = generator.text_norm.basis.T  # (12, 3)
    spreads = (generator.text_norm(sentences) @ basis).pow(2).mean(0).sqrt()
    assert torch.allclose(spreads, spreads.mean().expand(3), rtol=1e-4)  # unwhitened: 4 : 1 : 0.2
    noise = generator.text_norm.noise_like(torch.zeros(20000, 12), 0.5, torch.Generator().manual_seed(1))
    noise_spreads = ((generator.text_norm(noise) - generator.text_norm(torch.zeros(1, 12))) @ basis).std(0)
    assert torch.allclose(noise_spreads, 0.5 * spreads, rtol=0.05)  # half of each direction's own spread
    generator.save_pretrained(tmp_path / "g")
    assert torch.equal(Generator.from_pretrained(tmp_path / "g").text_norm(sentences), generator.text_norm(sentences))
    with pytest.raises(ConfigError, match="text_whiten needs text_components"):
        Generator(tiny_generator_config(text_whiten=True))


def test_an_evaluator_judges_images_at_its_resolution_and_above_only():
    from limner.models.dual_encoder import DualEncoder, DualEncoderConfig

    evaluator = DualEncoder(DualEncoderConfig(resolution=32, text_dim=8, base_channels=4)).eval()
    evaluator.check_can_judge(32)
    evaluator.check_can_judge(64)  # larger images are downsampled before it reads them
    assert evaluator(torch.zeros(2, 3, 64, 64)).shape == (2, evaluator.num_features)
    with pytest.raises(ConfigError, match="cannot judge 16 px"):
        evaluator.check_can_judge(16)
