"""A one-stage text-to-image GAN with deep text-image fusion (the DF-GAN family).

Generator: noise -> linear -> (C, 4, 4) -> up-blocks. Each up-block fuses the
condition [noise; sentence] into the image features through normalisation-free
affine layers (per-channel scale and shift predicted from the condition).
Discriminator: residual down-blocks to (C, 4, 4), then a conditional head that
sees the features beside the sentence embedding.
One config serves resolutions 32, 64, 128 and 256: the number of blocks follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from limner.errors import ConfigError
from limner.models.layers import TextStandardizer, check_resolution, down_channel_plan, down_path
from limner.models.modeling import PretrainedModel

UPSAMPLE_MODES = ("nearest", "bilinear")
WARP_RESAMPLING = ("bilinear", "lanczos")
WARP_READS = ("noise and text", "noise")
WARP_SPREADS = ("learned", "fixed")
WARP_FRACTIONS = ("warped", "dropped")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """ConfigError naming the setting and its choices (quoted where one holds a space) unless value is one."""
    if value not in choices:
        shown = map(repr, choices) if any(" " in choice for choice in choices) else choices
        raise ConfigError(f"{name} must be one of {', '.join(shown)}, got {value!r}")


def _channel_plan(base: int, multipliers: tuple[int, ...], blocks: int) -> list[int]:
    """Channels at 4x4, 8x8, ... up to the output: the last `blocks + 1` multipliers."""
    if len(multipliers) < blocks + 1:
        raise ConfigError(f"channel_multipliers needs at least {blocks + 1} entries for this resolution, got {len(multipliers)}")
    return [base * m for m in multipliers[-(blocks + 1):]]


def generator_channels(config: "GeneratorConfig") -> list[int]:
    """The generator's channels per stage, coarse to fine."""
    if config.stage_channels:
        return list(config.stage_channels)
    return _channel_plan(config.base_channels, config.channel_multipliers, check_resolution(config.resolution))


@dataclass
class GeneratorConfig:
    resolution: int = 32
    text_dim: int = 384        # sentence embedding size of the text encoder
    noise_dim: int = 100
    base_channels: int = 32    # width scale; cost grows with its square
    # channels per stage, coarse (4x4) to fine; 256 px uses all seven
    channel_multipliers: tuple[int, ...] = (8, 8, 8, 8, 4, 2, 1)
    condition_hidden: int = 256  # hidden width of the MLPs that predict scale and shift
    # feed [noise; sentence] to the 4x4 stem too (DF-GAN feeds noise only); the per-channel
    # affines cannot move things in space, so a text-aware stem lays out position sooner
    text_in_stem: bool = True
    # keep only this many principal directions of the training captions' embeddings
    # (0: all); see TextStandardizer. Small values help new wordings of known ideas.
    text_components: int = 0
    # scale each kept direction to unit spread (needs text_components), so that an attribute
    # the text encoder moves little (shape, beside colour) reaches the network as strongly
    text_whiten: bool = False
    # explicit channels at 4x4, 8x8, ... (one per stage), instead of base_channels x multipliers;
    # what a channel-pruned generator carries (limner.models.pruning)
    stage_channels: tuple[int, ...] = ()
    # > 1: the first noise_codes noise entries choose one of that many discrete codes (the largest
    # entry wins, so every code is equally likely) and reach the network as a one-hot instead. Training
    # can then try every code for a real image and pull only the nearest (multiple-choice learning), so
    # each code settles on one of a caption's looks: an emoji name drawn in six styles gets a code per style
    noise_codes: int = 0
    # what each code was taught to draw, when training tied the codes to a metadata column
    # (GANTrainConfig.noise_code_column): ("fluent", "google", ...); empty when they were searched
    noise_code_names: tuple[str, ...] = ()
    # trained with every labelled image drawn from its value's code (noise_code_rows "all"): a prompt
    # that names a value ("..., twitter style") is then drawn from that code (see the pipeline)
    code_from_prompt: bool = False
    # how each up-block doubles its grid: "nearest" copies every pixel into a 2x2 block, which the
    # convs must smooth away; "bilinear" interpolates, so no block seams are left for a fine plaid
    upsample: str = "nearest"
    # True: each up-block's first fusion (per-channel affines and LeakyReLU) runs on the coarse grid,
    # before the upsampling, on a quarter of the pixels; after it (False, DF-GAN's order) it reads the
    # interpolated features. The same with "nearest" (it copies pixels), a little smoother with "bilinear"
    fuse_before_upsample: bool = False
    # > 0: a head on [noise; sentence] moves the finished image by up to this fraction of its side in
    # each direction and scales it by up to exp(+-2 x this). A convolutional generator finds it hard
    # to place an object anywhere but one spot; the warp moves and resizes it whole, so the noise can
    # vary place and size without redrawing (and blurring) the outline. It starts reading the noise
    # only (moves of spread about 0.5 of the bound), so the samples vary from the first step
    noise_warp: float = 0.0
    # how many up-blocks draw after the warp: 0 moves the finished image (bilinear resampling softens
    # a small object's corners); 1 moves the features before the last block, which then draws the
    # edges afresh at full resolution
    noise_warp_depth: int = 0
    # > 0: the last this-many noise entries reach the warp head only. The rest of the generator sees
    # the noise too and can learn to draw each object pre-moved against the warp, cancelling it (the
    # samples then sit still again); noise it cannot see, it cannot cancel
    noise_warp_private: int = 0
    # how the warp reads what it moves: "bilinear" (a half-pixel move blurs each edge over two pixels)
    # or "lanczos" (a 6 x 6 windowed-sinc read that keeps a smooth drawing's edges as sharp as they were)
    noise_warp_resample: str = "bilinear"
    # True: the warp's moves are split into whole pixels, made on the finished image (exactly: a whole-
    # pixel move copies pixels, so nothing is softened and no later block can pull it back), and what is
    # left (under half a pixel) with the scale at noise_warp_depth. The rounding passes gradients
    # straight through, as if the whole move were a bilinear one of the finished image
    noise_warp_whole_pixels: bool = False
    # with noise_warp_whole_pixels, what becomes of the shift's part under half a pixel: "warped" (at
    # noise_warp_depth, with the scale) or "dropped" (the shift is whole pixels only, so the blocks after
    # the warp never redraw a small object at a fraction of a pixel; the scale still goes at the depth)
    noise_warp_fraction: str = "warped"
    # what the warp head reads: "noise and text" (the moves may depend on the caption) or "noise" (the
    # moves are the same for every caption: the noise alone places and sizes, about one mean)
    noise_warp_reads: str = "noise and text"
    # "learned": the head's weights train, so the GAN loss may shrink the moves (on one seed of two it
    # took them to a tenth of a pixel, and the samples sat still again); "fixed": its weights on the
    # noise stay as initialised and only its bias (where the moves centre) learns, so the samples keep
    # the spread of places and sizes they start with
    noise_warp_spread: str = "learned"
    # how far the warp head's moves spread at the start (with noise_warp_spread "fixed": always), as the
    # standard deviation before the tanh, in units of noise_warp (0.6: about half the bound)
    noise_warp_start_spread: float = 0.6

    def __post_init__(self) -> None:
        blocks = check_resolution(self.resolution)
        if not 0.0 <= self.noise_warp <= 0.25:
            raise ConfigError(f"noise_warp must be 0 (off) to 0.25 of the image side, got {self.noise_warp}")
        if self.noise_warp_private and not (self.noise_warp > 0 and 0 < self.noise_warp_private <= self.noise_dim - max(self.noise_codes, 1)):
            raise ConfigError(f"noise_warp_private needs noise_warp on and must leave the generator some noise "
                              f"(1 to {self.noise_dim - max(self.noise_codes, 1)}), got {self.noise_warp_private}")
        if self.noise_warp_depth and self.noise_warp == 0:
            raise ConfigError(f"noise_warp_depth {self.noise_warp_depth} places a warp that is off: set noise_warp > 0 too")
        if not 0 <= self.noise_warp_depth <= blocks:
            raise ConfigError(f"noise_warp_depth must be 0 to {blocks} up-blocks at resolution {self.resolution}, got {self.noise_warp_depth}")
        if self.noise_warp_whole_pixels and self.noise_warp == 0:
            raise ConfigError("noise_warp_whole_pixels splits the warp's moves: set noise_warp > 0 too")
        check_choice("noise_warp_fraction", self.noise_warp_fraction, WARP_FRACTIONS)
        if self.noise_warp_fraction == "dropped" and not self.noise_warp_whole_pixels:
            raise ConfigError("noise_warp_fraction 'dropped' drops what is left of a whole-pixel move: set noise_warp_whole_pixels too")
        check_choice("noise_warp_reads", self.noise_warp_reads, WARP_READS)
        check_choice("noise_warp_spread", self.noise_warp_spread, WARP_SPREADS)
        if self.noise_warp_spread == "fixed" and (self.noise_warp == 0 or self.noise_warp_reads != "noise"):
            raise ConfigError("noise_warp_spread 'fixed' keeps the warp head's weights as they start, and they start blind to the "
                              "text: set noise_warp > 0 and noise_warp_reads to 'noise' too")
        if not 0.0 < self.noise_warp_start_spread <= 3.0:
            raise ConfigError(f"noise_warp_start_spread must be above 0 and at most 3 (tanh is flat beyond), got {self.noise_warp_start_spread}")
        check_choice("noise_warp_resample", self.noise_warp_resample, WARP_RESAMPLING)
        check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        if self.noise_codes < 0 or self.noise_codes == 1 or self.noise_codes > self.noise_dim:
            raise ConfigError(f"noise_codes must be 0 (off) or 2 to noise_dim ({self.noise_dim}), got {self.noise_codes}")
        self.noise_code_names = tuple(self.noise_code_names)
        if self.noise_code_names and len(self.noise_code_names) != self.noise_codes:
            raise ConfigError(f"noise_code_names names {len(self.noise_code_names)} codes, but noise_codes is {self.noise_codes}")
        if self.stage_channels and (len(self.stage_channels) != blocks + 1 or min(self.stage_channels) < 1):
            raise ConfigError(f"stage_channels needs {blocks + 1} positive entries at resolution {self.resolution}, got {self.stage_channels}")


@dataclass
class DiscriminatorConfig:
    resolution: int = 32
    text_dim: int = 384
    base_channels: int = 32
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 8, 8, 8, 8)  # fine to coarse
    # spectral norm on every conv: keeps the critic Lipschitz-bounded, so short CPU runs
    # do not collapse early (the gradient penalty alone acts only on real images)
    spectral_norm: bool = True
    # size of the shared image-text space of the contrastive head (0: no head); the head
    # scores every image against every caption of the batch (XMC-GAN's idea), a denser
    # signal about what a caption asks for than one real/fake logit per pair
    contrastive_dim: int = 0
    text_components: int = 0  # as in GeneratorConfig
    text_whiten: bool = False  # as in GeneratorConfig
    # auxiliary classifier heads (AC-GAN), one per metadata column, each reading that many values of
    # its column (e.g. the six styles) from the image alone; trained on real images (see
    # GANTrainConfig.class_column). (): none
    classes: tuple[int, ...] = ()


class Affine(nn.Module):
    """Per-channel scale and shift predicted from the condition; starts as identity."""

    def __init__(self, condition_dim: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.scale = nn.Sequential(nn.Linear(condition_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.shift = nn.Sequential(nn.Linear(condition_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        nn.init.zeros_(self.scale[2].weight)
        nn.init.ones_(self.scale[2].bias)
        nn.init.zeros_(self.shift[2].weight)
        nn.init.zeros_(self.shift[2].bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale = self.scale(condition)[:, :, None, None]  # (B, C, 1, 1)
        shift = self.shift(condition)[:, :, None, None]
        return x * scale + shift


class FusionBlock(nn.Module):
    """affine -> LeakyReLU -> affine -> LeakyReLU: two rounds of deep fusion."""

    def __init__(self, condition_dim: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.affine1 = Affine(condition_dim, channels, hidden)
        self.affine2 = Affine(condition_dim, channels, hidden)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.affine1(x, condition), 0.2)
        return F.leaky_relu(self.affine2(x, condition), 0.2)


class UpBlock(nn.Module):
    """Upsample x2, then two fuse+conv rounds, with a residual shortcut (with fuse_before_upsample the
    first fusion comes before the upsampling)."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int, hidden: int, upsample: str = "nearest",
                 fuse_before_upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.fuse_before_upsample = fuse_before_upsample
        self.fuse1 = FusionBlock(condition_dim, in_channels, hidden)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.fuse2 = FusionBlock(condition_dim, out_channels, hidden)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        finer = None
        if self.fuse_before_upsample:
            residual = self.conv1(self._finer(self.fuse1(x, condition)))
        else:
            finer = self._finer(x)
            residual = self.conv1(self.fuse1(finer, condition))
        residual = self.conv2(self.fuse2(residual, condition))
        if finer is not None and isinstance(self.shortcut, nn.Identity):
            return finer + residual  # the input already upsampled above
        # both upsamplings mix each channel's pixels with weights that sum to one and a 1x1 conv mixes each
        # pixel's channels, so the two commute (bias included): the shortcut runs on the coarse grid
        return self._finer(self.shortcut(x)) + residual

    def _finer(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode=self.upsample)


class Generator(PretrainedModel):
    config_class = GeneratorConfig

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        channels = generator_channels(config)
        condition_dim = config.noise_dim + config.text_dim
        self.text_norm = TextStandardizer(config.text_dim, config.text_components, whiten=config.text_whiten)
        stem_in = condition_dim if config.text_in_stem else config.noise_dim
        self.stem = nn.Linear(stem_in, channels[0] * 4 * 4)
        self.blocks = nn.ModuleList(
            UpBlock(c_in, c_out, condition_dim, config.condition_hidden, config.upsample, config.fuse_before_upsample)
            for c_in, c_out in zip(channels, channels[1:])
        )
        self.to_rgb = nn.Conv2d(channels[-1], 3, 3, padding=1)
        if config.noise_warp > 0:
            self.warp = nn.Linear(condition_dim, 3)  # (shift x, shift y, log scale), before the bounds
            reads = config.noise_warp_private or config.noise_dim  # the noise columns it starts reading
            with torch.no_grad():
                self.warp.weight.zero_()
                self.warp.weight[:, config.noise_dim - reads:config.noise_dim].normal_(0.0, config.noise_warp_start_spread / reads ** 0.5)
                self.warp.bias.zero_()

    def forward(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """noise (B, Z), sentence (B, D) -> images (B, 3, H, W) in [-1, 1]."""
        noise = coded_noise(noise, self.config.noise_codes)
        text = self.text_norm(sentence)
        moves = self._warp_moves(noise, text)
        whole = None
        if moves is not None and self.config.noise_warp_whole_pixels:
            moves, whole = split_whole_pixels(moves, self.config.noise_warp, self.config.resolution)
            if self.config.noise_warp_fraction == "dropped":
                moves = torch.cat([torch.zeros_like(moves[:, :2]), moves[:, 2:]], dim=1)
        noise = hidden_from_body(noise, self.config.noise_warp_private)
        condition = torch.cat([noise, text], dim=1)
        x = self.stem(condition if self.config.text_in_stem else noise)
        x = x.view(noise.shape[0], -1, 4, 4)  # (B, C, 4, 4)
        warp_before = len(self.blocks) - self.config.noise_warp_depth if moves is not None else None
        for index, block in enumerate(self.blocks):
            if index == warp_before:
                x = warped(x, moves, self.config.noise_warp, self.config.noise_warp_resample)
            x = block(x, condition)
        images = torch.tanh(self.to_rgb(F.leaky_relu(x, 0.2)))
        if warp_before == len(self.blocks):
            images = warped(images, moves, self.config.noise_warp, self.config.noise_warp_resample).clamp(-1.0, 1.0)  # Lanczos may overshoot
        return images if whole is None else warped(images, whole, self.config.noise_warp)

    def warp_moves(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor | None:
        """(B, 3) moves in [-1, 1] (shift x, shift y, log scale; see `warped`) the warp head gives these
        inputs, as forward applies them; None without a warp."""
        return self._warp_moves(coded_noise(noise, self.config.noise_codes), self.text_norm(sentence))

    def _warp_moves(self, coded: torch.Tensor, text: torch.Tensor) -> torch.Tensor | None:
        if self.config.noise_warp == 0:
            return None
        if self.config.noise_warp_reads == "noise":
            text = torch.zeros_like(text)
        weight = self.warp.weight.detach() if self.config.noise_warp_spread == "fixed" else self.warp.weight
        return torch.tanh(F.linear(torch.cat([coded, text], dim=1), weight, self.warp.bias))  # reads all the noise, private entries too


def split_whole_pixels(moves: torch.Tensor, bound: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """moves (B, 3) (see `warped`, for an image `size` pixels wide) -> (what is left: the shift's part
    under half a pixel and the whole scale; the shift's whole pixels, scale 0). In the forward pass the
    two add up to the moves; the whole pixels pass their gradient straight through the rounding and
    what is left passes none, so the head learns from where the finished image ends up."""
    to_pixels = bound * size  # a move of 1 shifts the image by this many pixels
    pixels = moves[:, :2] * to_pixels
    rounded = pixels.detach().round()
    whole = pixels + (rounded - pixels).detach()  # straight through
    left = (pixels.detach() - rounded) / to_pixels
    return torch.cat([left, moves[:, 2:]], dim=1), torch.cat([whole / to_pixels, torch.zeros_like(moves[:, 2:])], dim=1)


def hidden_from_body(noise: torch.Tensor, private: int) -> torch.Tensor:
    """noise (B, Z) with its last `private` entries zeroed: what the generator's body sees."""
    if private == 0:
        return noise
    return torch.cat([noise[:, :-private], torch.zeros_like(noise[:, -private:])], dim=1)


def warped(images: torch.Tensor, moves: torch.Tensor, bound: float, resample: str = "bilinear") -> torch.Tensor:
    """images (B, C, H, W) moved by moves[:, :2] x bound of the side and scaled by exp(2 bound moves[:, 2]);
    moves (B, 3) in [-1, 1]. The edge pixels fill what the move uncovers (the background, for a centred object).
    resample: "bilinear" (each pixel a blend of its four nearest: a move of half a pixel blurs an edge
    over two), or "lanczos" (lanczos_warp: edges as sharp after the move as before)."""
    if resample == "lanczos":
        return lanczos_warp(images, moves.float(), bound)
    shift = moves[:, :2] * (2.0 * bound)  # grid units: the image spans -1..1
    inverse_scale = torch.exp(-2.0 * bound * moves[:, 2])
    zero = torch.zeros_like(inverse_scale)
    theta = torch.stack([torch.stack([inverse_scale, zero, -shift[:, 0] * inverse_scale], 1),
                         torch.stack([zero, inverse_scale, -shift[:, 1] * inverse_scale], 1)], 1)  # (B, 2, 3): output -> input
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


LANCZOS_LOBES = 3
WARP_PAD = 8  # edge pixels repeated on each side before a Lanczos warp: its 3-pixel reach plus the warp's largest move


def lanczos_warp(images: torch.Tensor, moves: torch.Tensor, bound: float) -> torch.Tensor:
    """`warped`'s move and scale, each output pixel read from the 6 x 6 pixels around its source place
    weighted by the Lanczos-3 kernel (sinc(x) sinc(x / 3), the windowed ideal interpolator image
    libraries resize with) instead of bilinearly from its 4 nearest: a smooth drawing comes out as
    sharp as it went in, so a small square moved by half a pixel keeps its corners, where bilinear
    resampling spreads each edge over two pixels. Separable: one (H, H + 2 pad) and one (W, W + 2 pad)
    weight matrix per image, applied by two small matrix products."""
    height, width = images.shape[-2:]
    scale = torch.exp(2.0 * bound * moves[:, 2])
    padded = F.pad(images, (WARP_PAD,) * 4, mode="replicate")
    rows = lanczos_weights(height, moves[:, 1] * bound * height, scale)  # (B, H, H + 2 pad)
    columns = lanczos_weights(width, moves[:, 0] * bound * width, scale)  # (B, W, W + 2 pad)
    return torch.einsum("bhn,bcnm,bwm->bchw", rows.to(images.dtype), padded, columns.to(images.dtype))


def lanczos_weights(size: int, shift_px: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(B, size, size + 2 WARP_PAD) weights, each row summing to 1: output pixel u of each image reads
    the padded pixels around the source place of u under a move of shift_px pixels and a scale about
    the centre (pixel centres placed as affine_grid places them, so it agrees with the bilinear warp)."""
    centre = (size - 1) / 2.0
    output = torch.arange(size, dtype=shift_px.dtype, device=shift_px.device)
    source = centre + (output[None, :] - centre - shift_px[:, None]) / scale[:, None]  # (B, size)
    padded = torch.arange(size + 2 * WARP_PAD, dtype=shift_px.dtype, device=shift_px.device) - WARP_PAD
    weights = lanczos(source[:, :, None] - padded)  # (B, size, size + 2 pad)
    return weights / weights.sum(-1, keepdim=True)


def lanczos(offsets: torch.Tensor) -> torch.Tensor:
    """The Lanczos kernel of LANCZOS_LOBES lobes: sinc(x) sinc(x / lobes) inside |x| < lobes, 0 outside."""
    return torch.where(offsets.abs() < LANCZOS_LOBES, torch.sinc(offsets) * torch.sinc(offsets / LANCZOS_LOBES), torch.zeros_like(offsets))


def coded_noise(noise: torch.Tensor, codes: int) -> torch.Tensor:
    """noise (B, Z) -> the same with its first `codes` entries replaced by the one-hot of their
    largest, scaled by sqrt(codes) (the squared norm of the entries it replaces, on average)."""
    if codes == 0:
        return noise
    head = noise[:, :codes]
    one_hot = (head == head.max(dim=1, keepdim=True).values).to(noise.dtype)  # (B, K); ties have probability 0
    return torch.cat([one_hot * codes**0.5, noise[:, codes:]], dim=1)


def with_code(noise: torch.Tensor, code: torch.Tensor | int, codes: int) -> torch.Tensor:
    """noise (B, Z) whose code (see coded_noise) is `code` (an int or (B,) ints), the rest kept."""
    head = torch.full_like(noise[:, :codes], -1.0)
    code = torch.as_tensor(code, device=noise.device).expand(noise.shape[0])
    head[torch.arange(noise.shape[0], device=noise.device), code] = 1.0
    return torch.cat([head, noise[:, codes:]], dim=1)


def spread_codes(noise: torch.Tensor, group: int, codes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """noise (B, Z), B a multiple of `group` (rows grouped by prompt): within each group the codes
    (see coded_noise) take turns from a random start instead of each being drawn alone, so that n
    images of one prompt show min(n, codes) different codes. Each row's largest code entry trades
    places with its assigned code's entry: the entries keep their values, and a lone image's code
    stays uniform."""
    if codes == 0:
        return noise
    if noise.shape[0] % group:
        raise ValueError(f"{noise.shape[0]} noise rows do not split into groups of {group}")
    start = torch.randint(codes, (noise.shape[0] // group, 1), generator=generator)
    wanted = ((start + torch.arange(group)) % codes).flatten().to(noise.device)  # (B,)
    head = noise[:, :codes].clone()
    rows = torch.arange(noise.shape[0], device=noise.device)
    current = head.argmax(dim=1)
    largest, displaced = head[rows, current].clone(), head[rows, wanted].clone()
    head[rows, current] = displaced
    head[rows, wanted] = largest
    return torch.cat([head, noise[:, codes:]], dim=1)


def noise_code(noise: torch.Tensor, codes: int) -> torch.Tensor:
    """noise (B, Z) -> the code (B,) each noise chooses."""
    return noise[:, :codes].argmax(dim=1)


class Discriminator(PretrainedModel):
    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__(config)
        blocks = check_resolution(config.resolution)
        channels = down_channel_plan(config.base_channels, config.channel_multipliers, blocks)
        self.text_norm = TextStandardizer(config.text_dim, config.text_components, whiten=config.text_whiten)
        self.from_rgb, self.blocks = down_path(channels)
        self.head = nn.Sequential(
            nn.Conv2d(channels[-1] + config.text_dim, channels[-1] // 4 * 2, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels[-1] // 4 * 2, 1, 4),
        )
        if config.contrastive_dim > 0:
            self.image_projection = nn.Linear(channels[-1], config.contrastive_dim)
            self.text_projection = nn.Linear(config.text_dim, config.contrastive_dim)
        if config.classes:
            self.class_heads = nn.ModuleList(nn.Linear(channels[-1], count) for count in config.classes)
        if config.spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(module)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> features (B, C, 4, 4)."""
        return self.blocks(self.from_rgb(images))

    def logits(self, features: torch.Tensor, sentence: torch.Tensor, *, standardized: bool = False) -> torch.Tensor:
        """features (B, C, 4, 4), sentence (B, D) -> realness-and-match logits (B,).

        With standardized=True, `sentence` has already been through `text_norm`
        (the gradient penalty differentiates in that space).
        """
        text = sentence if standardized else self.text_norm(sentence)
        text = text[:, :, None, None].expand(-1, -1, *features.shape[2:])  # (B, D, 4, 4)
        return self.head(torch.cat([features, text], dim=1)).flatten()

    def forward(self, images: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(images), sentence)

    def contrastive_embeddings(self, features: torch.Tensor, sentence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, C, 4, 4), sentence (B, D) -> image and text vectors (B, E) in the shared space."""
        if self.config.contrastive_dim <= 0:
            raise ConfigError("this discriminator has no contrastive head (contrastive_dim is 0)")
        image = self.image_projection(features.sum(dim=(2, 3)))
        text = self.text_projection(self.text_norm(sentence))
        return image, text

    def class_logits(self, features: torch.Tensor) -> list[torch.Tensor]:
        """features (B, C, 4, 4) -> each auxiliary head's logits over its column's values, [(B, classes[h])]."""
        if not self.config.classes:
            raise ConfigError("this discriminator has no class heads (classes is empty)")
        pooled = features.mean(dim=(2, 3))
        return [head(pooled) for head in self.class_heads]


def truncated_noise(shape: tuple[int, int], *, truncation: float = 1.0, generator: torch.Generator | None = None,
                    untruncated_tail: int = 0) -> torch.Tensor:
    """Standard normal noise restricted to [-truncation, truncation] (the truncation trick).

    Drawn by the inverse CDF from the matching slice of a uniform, so its time does
    not depend on how small the truncation is (redrawing would never end near 0).
    truncation <= 0 or >= 10 means no truncation. The last `untruncated_tail` columns
    are drawn unrestricted from the same uniforms (a generator's private warp noise,
    see generator_noise).
    """
    if not 0 < truncation < 10:
        return torch.randn(shape, generator=generator)
    low = torch.full((shape[1],), float(torch.special.ndtr(torch.tensor(-float(truncation), dtype=torch.float64))), dtype=torch.float64)
    bound = torch.full((shape[1],), float(truncation), dtype=torch.float64)
    if untruncated_tail:
        low[shape[1] - untruncated_tail:] = 0.0
        bound[shape[1] - untruncated_tail:] = 6.0  # ndtri(0) is -inf; beyond 6 sigma never matters
    uniform = low + (1 - 2 * low) * torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.special.ndtri(uniform).clamp(-bound, bound).float()


def generator_noise(config: GeneratorConfig, count: int, *, truncation: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """(count, noise_dim) noise to draw from: truncated, except the private warp entries
    (noise_warp_private), which place and size the object; any place within the warp's
    bound is a true draw of the data's jitter, so truncating it would only still the samples."""
    return truncated_noise((count, config.noise_dim), truncation=truncation, generator=generator,
                           untruncated_tail=getattr(config, "noise_warp_private", 0))
