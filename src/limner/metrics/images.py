"""Image metrics on limner's image convention (float (N, 3, H, W) in [-1, 1]), on torchmetrics.

PairedImageMetrics: PSNR (of the pooled mean squared error) and SSIM (mean over images)
of images against references of the same caption.
DistributionMetrics: FID and KID with an injectable feature network (an nn.Module
mapping images in [-1, 1] to (N, F) features, with a `num_features` attribute),
by default limner's trained evaluator; its name goes into every report.
"""

from __future__ import annotations

import torch
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.image.fid import FrechetInceptionDistance


def _unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)


class PairedImageMetrics:
    """update(images, references) over batches; compute() -> {"psnr", "ssim", "n"}."""

    def __init__(self) -> None:
        # over the pooled squared error of all pixels, so that one identical pair does not make it infinite
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.count = 0

    def update(self, images: torch.Tensor, references: torch.Tensor) -> None:
        if images.shape != references.shape:
            raise ValueError(f"paired images must have one shape, got {tuple(images.shape)} and {tuple(references.shape)}")
        self.psnr.update(_unit(images), _unit(references))
        self.ssim.update(_unit(images), _unit(references))
        self.count += images.shape[0]

    def compute(self) -> dict[str, float]:
        return {"psnr": float(self.psnr.compute()), "ssim": float(self.ssim.compute()), "n": self.count}

    def reset(self) -> None:
        self.psnr.reset()
        self.ssim.reset()
        self.count = 0


def paired_image_metrics(images: torch.Tensor, references: torch.Tensor) -> dict[str, float]:
    metrics = PairedImageMetrics()
    metrics.update(images, references)
    return metrics.compute()


class DistributionMetrics:
    """update(images, real=...) over batches; compute() -> {"fid", "kid_mean", "kid_std", "n_real", "n_fake"}.

    Each batch goes through the feature network once; what is kept is what the scores need, never
    the images: FID's running sums (torchmetrics keeps the mean and covariance sums) and the
    features themselves for KID, whose subsets are drawn at compute time.
    """

    def __init__(self, feature_network: torch.nn.Module, *, kid_subsets: int = 100, kid_subset_size: int = 1000) -> None:
        self.feature_network = feature_network.eval()
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self._given = _GivenFeatures(feature_network.num_features)
        self.fid = FrechetInceptionDistance(feature=self._given, reset_real_features=True)
        self.real: list[torch.Tensor] = []  # features (B, F) of each batch
        self.fake: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, images: torch.Tensor, *, real: bool) -> None:
        self.update_features(self.feature_network(images.float()), real=real)

    @torch.no_grad()
    def update_features(self, features: torch.Tensor, *, real: bool) -> None:
        """As update, for features (B, F) the feature network already gave."""
        features = features.float()
        self.fid.update(features, real=real)
        (self.real if real else self.fake).append(features)

    @torch.no_grad()
    def compute(self) -> dict[str, float]:
        n_real, n_fake = sum(x.shape[0] for x in self.real), sum(x.shape[0] for x in self.fake)
        subset = min(self.kid_subset_size, n_real, n_fake)
        kid = KernelInceptionDistance(feature=self._given, subsets=self.kid_subsets, subset_size=subset)
        for batch in self.real:
            kid.update(batch, real=True)
        for batch in self.fake:
            kid.update(batch, real=False)
        kid_mean, kid_std = kid.compute()
        return {"fid": float(self.fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std),
                "kid_subset_size": subset, "n_real": n_real, "n_fake": n_fake}

    def reset(self) -> None:
        self.fid.reset()
        self.real.clear()
        self.fake.clear()


class _GivenFeatures(torch.nn.Module):
    """The identity, as torchmetrics' feature network, for features computed beforehand."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def distribution_metrics(feature_network: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    metrics = DistributionMetrics(feature_network)
    metrics.update(real, real=True)
    metrics.update(fake, real=False)
    return metrics.compute()


class InceptionFeatures(torch.nn.Module):
    """Inception-v3 pool features (2048-d) as torch-fidelity computes them, for the classic FID.

    Needs the optional package torch-fidelity and its weights already on disk (limner never
    downloads); takes images in [-1, 1] like every other limner feature network.
    """

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
            self.inception = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
        except (ImportError, ModuleNotFoundError, RuntimeError, OSError) as err:
            from limner.errors import DependencyError

            raise DependencyError(
                f"Inception FID needs torch-fidelity and its Inception weights on disk ({err}); "
                "the default feature network is limner's evaluator (`limner train --model evaluator`)"
            ) from err

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inception((_unit(images) * 255).to(torch.uint8)).reshape(images.shape[0], -1)


def fine_grain(images: torch.Tensor, cutoff: float = 0.375) -> float:
    """Hatching: the share of an image's brightness variation at periods under 1 / cutoff pixels
    (2.7 px by default) in either direction, over a batch (N, C, H, W). Flat fills with sharp
    outlines put little power there (real emoji-styles test images: 0.007); a generator that
    lays a fine plaid over its fills (one-pixel lines the eye reads as crosshatch) reads
    several times its data's figure."""
    if images.dim() != 4 or images.shape[-1] < 4 or images.shape[-2] < 4:
        raise ValueError(f"fine_grain needs images of shape (N, C, H, W) with H, W >= 4, got {tuple(images.shape)}")
    if not 0 < cutoff < 0.5:
        raise ValueError(f"cutoff is in cycles per pixel, between 0 and 0.5 (exclusive), got {cutoff}")
    brightness = images.float().mean(1)
    brightness = brightness - brightness.mean((1, 2), keepdim=True)
    power = torch.fft.fft2(brightness).abs().pow(2).sum(0)  # (H, W)
    rows = torch.fft.fftfreq(power.shape[0]).abs()[:, None]
    columns = torch.fft.fftfreq(power.shape[1]).abs()[None, :]
    fine = torch.maximum(rows, columns) > cutoff
    return float((power * fine).sum() / power.sum().clamp_min(1e-12))


def banding(images: torch.Tensor) -> float:
    """Horizontal stripes: the mean absolute change between vertically neighbouring pixels over
    that between horizontally neighbouring ones, over a batch (N, C, H, W). About 1 for pictures
    without a preferred direction (real emoji test images: 1.16); a generator that draws
    horizontal bands reads well above its data's figure, vertical bands below it."""
    if images.dim() != 4 or images.shape[-1] < 2 or images.shape[-2] < 2:
        raise ValueError(f"banding needs images of shape (N, C, H, W) with H, W >= 2, got {tuple(images.shape)}")
    pixels = images.float()
    between_rows = (pixels[..., 1:, :] - pixels[..., :-1, :]).abs().mean()
    between_columns = (pixels[..., :, 1:] - pixels[..., :, :-1]).abs().mean()
    return float(between_rows / between_columns.clamp_min(1e-8))
