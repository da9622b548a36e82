import math

import pytest
import torch

from limner.metrics.alignment import alignment_score, diversity, nearest_neighbours, r_precision, retrieval_recall
from limner.metrics.images import DistributionMetrics, PairedImageMetrics, banding, fine_grain, paired_image_metrics


def test_r_precision_is_one_for_a_perfect_space_and_chance_for_noise():
    table = torch.eye(120)  # 120 orthogonal captions
    ids = torch.arange(120)
    perfect = r_precision(table[ids], ids, table)
    assert perfect["mean"] == 1.0 and perfect["std"] == 0.0 and perfect["candidates"] == 100 and perfect["folds"] == 10
    torch.manual_seed(0)
    noise = torch.nn.functional.normalize(torch.randn(2000, 16), dim=1)
    ids = torch.randint(120, (2000,))
    chance = r_precision(noise, ids, torch.nn.functional.normalize(torch.randn(120, 16), dim=1))
    assert 0.003 < chance["mean"] < 0.02  # 1 in 100 by chance; 2,000 images give a std near 0.002


def test_r_precision_needs_enough_images_and_captions():
    with pytest.raises(ValueError, match="two distinct captions"):
        r_precision(torch.eye(1), torch.zeros(1, dtype=torch.long), torch.eye(1))
    with pytest.raises(ValueError, match="10 folds"):
        r_precision(torch.eye(3), torch.arange(3), torch.eye(3))


def test_retrieval_recall_by_hand():
    text = torch.eye(3)
    # image 0 matches caption 0; image 1 (caption 1) looks like caption 2; image 2 matches caption 2
    images = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.4, 0.9], [0.0, 0.0, 1.0]])
    recall = retrieval_recall(images, torch.tensor([0, 1, 2]), text, ks=(1, 2))
    assert recall["image_to_text_r@1"] == pytest.approx(2 / 3) and recall["image_to_text_r@2"] == 1.0
    # caption 1's best image is image 1 (0.4 against 0 for the others): all three captions find theirs
    assert recall["text_to_image_r@1"] == 1.0


def test_recall_at_k_counts_any_relevant_candidate_and_skips_queries_with_none():
    from limner.metrics.alignment import recall_at_k

    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.1, 0.2, 0.3]])
    relevant = torch.tensor([[False, True, True], [True, False, False], [False, False, False]])
    # query 0: best is 0 (irrelevant), then 2 (relevant); query 1: 0 is its worst; query 2 has nothing relevant
    assert recall_at_k(scores, relevant, 1) == 0.0
    assert recall_at_k(scores, relevant, 2) == 0.5
    assert recall_at_k(scores, relevant, 3) == 1.0


def test_alignment_diversity_and_nearest_neighbours_by_hand():
    assert alignment_score(torch.eye(2), torch.eye(2)) == 1.0
    features = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0]])
    assert diversity(features, torch.tensor([0, 0, 1, 1])) == pytest.approx((5.0 + 0.0) / 2)
    distance, index = nearest_neighbours(torch.tensor([[0.0, 1.0]]), torch.tensor([[5.0, 5.0], [0.0, 0.0]]))
    assert index.tolist() == [1] and distance.tolist() == [1.0]


def test_psnr_and_ssim_by_hand():
    real = torch.full((2, 3, 16, 16), -1.0)
    fake = real + 0.2  # 0.1 apart on a [0, 1] scale: MSE 0.01, PSNR 20 dB
    assert paired_image_metrics(fake, real)["psnr"] == pytest.approx(20.0, abs=1e-3)
    torch.manual_seed(0)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    metrics = PairedImageMetrics()
    metrics.update(images, images)
    assert metrics.compute()["ssim"] == pytest.approx(1.0, abs=1e-4) and metrics.compute()["n"] == 4
    with pytest.raises(ValueError, match="one shape"):
        metrics.update(images, images[:2])


class _MeanColour(torch.nn.Module):
    """A stand-in feature network: per-channel means and standard deviations."""

    num_features = 6

    def forward(self, images):
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


def test_fid_and_kid_with_an_injected_feature_network():
    torch.manual_seed(0)
    real = torch.rand(64, 3, 8, 8) * 2 - 1
    same = torch.rand(64, 3, 8, 8) * 2 - 1
    shifted = (torch.rand(64, 3, 8, 8) * 2 - 1) * 0.5 + 0.4
    metrics = DistributionMetrics(_MeanColour(), kid_subsets=10)
    metrics.update(real, real=True)
    metrics.update(same, real=False)
    close = metrics.compute()
    metrics.reset()
    metrics.update(real, real=True)
    metrics.update(shifted, real=False)
    far = metrics.compute()
    assert close["fid"] < far["fid"] and close["kid_mean"] < far["kid_mean"]
    assert far["n_real"] == far["n_fake"] == 64 and far["kid_subset_size"] == 64
    assert math.isfinite(close["fid"])


class _Identity(torch.nn.Module):
    """Features are the inputs themselves: (N, F) in, (N, F) out."""

    def __init__(self, features: int):
        super().__init__()
        self.num_features = features

    def forward(self, x):
        return x


def _numpy_fid(a, b):
    import numpy as np
    from scipy import linalg

    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def _numpy_kid(a, b):
    """Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, on all samples."""
    d = a.shape[1]
    kernel = lambda x, y: (x @ y.T / d + 1.0) ** 3  # noqa: E731
    m = a.shape[0]
    k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
    return float((k_aa.sum() - k_aa.trace()) / (m * (m - 1)) + (k_bb.sum() - k_bb.trace()) / (m * (m - 1)) - 2 * k_ab.mean())


def test_fid_and_kid_match_an_independent_numpy_computation():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(300, 8, generator=generator, dtype=torch.float64)
    b = torch.randn(300, 8, generator=generator, dtype=torch.float64) * 1.3 + 0.5
    metrics = DistributionMetrics(_Identity(8), kid_subsets=1, kid_subset_size=300)  # one subset = all samples
    metrics.update(a, real=True)
    metrics.update(b, real=False)
    figures = metrics.compute()
    assert figures["fid"] == pytest.approx(_numpy_fid(a.numpy(), b.numpy()), rel=1e-4)
    assert figures["kid_mean"] == pytest.approx(_numpy_kid(a.numpy(), b.numpy()), rel=1e-4)


def test_fid_of_a_set_against_itself_is_zero_and_kid_of_one_distribution_is_near_zero():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(500, 8, generator=generator, dtype=torch.float64)
    metrics = DistributionMetrics(_Identity(8), kid_subsets=50, kid_subset_size=250)
    metrics.update(features, real=True)
    metrics.update(features, real=False)
    assert abs(metrics.compute()["fid"]) < 1e-6
    # KID is an unbiased MMD estimate: zero in expectation for two samples of one distribution
    # (a set against itself gives a small negative value, since the cross term keeps its diagonal)
    metrics = DistributionMetrics(_Identity(8), kid_subsets=50, kid_subset_size=250)
    metrics.update(features, real=True)
    metrics.update(torch.randn(500, 8, generator=generator, dtype=torch.float64), real=False)
    same = metrics.compute()
    metrics.reset()
    metrics.update(features, real=True)
    metrics.update(torch.randn(500, 8, generator=generator, dtype=torch.float64) + 0.5, real=False)
    shifted = metrics.compute()
    assert abs(same["kid_mean"]) < 3 * same["kid_std"] and shifted["kid_mean"] > 0.5


def test_distribution_metrics_keep_features_not_images():
    images = torch.rand(64, 3, 8, 8) * 2 - 1
    fakes = (torch.rand(64, 3, 8, 8) * 2 - 1) * 0.5
    by_images = DistributionMetrics(_MeanColour(), kid_subsets=5, kid_subset_size=32)
    by_images.update(images, real=True)
    by_images.update(fakes, real=False)
    assert by_images.real[0].shape == (64, 6) and by_images.fake[0].shape == (64, 6)  # 6 numbers an image, not 192
    by_features = DistributionMetrics(_MeanColour(), kid_subsets=5, kid_subset_size=32)
    by_features.update_features(_MeanColour()(images), real=True)
    by_features.update_features(_MeanColour()(fakes), real=False)
    torch.manual_seed(0)
    first = by_images.compute()
    torch.manual_seed(0)
    assert by_features.compute() == pytest.approx(first)


def test_banding_reads_stripes_by_their_direction():
    rows = torch.arange(8.0).remainder(2).mul(2).sub(1)  # -1, 1, -1, ... down the image
    horizontal = rows.view(1, 1, 8, 1).expand(2, 3, 8, 8).clone()
    horizontal[..., ::2] += 0.1  # a little change between columns so that the ratio is finite
    assert banding(horizontal) == pytest.approx(2.0 / 0.1, rel=1e-4)
    assert banding(horizontal.transpose(-1, -2)) == pytest.approx(0.1 / 2.0, rel=1e-4)
    torch.manual_seed(0)
    assert banding(torch.rand(4, 3, 32, 32)) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="shape"):
        banding(torch.zeros(3, 8, 8))


def test_fine_grain_sees_a_plaid_over_a_flat_fill_and_not_a_sharp_outline():
    square = -torch.ones(2, 3, 32, 32)
    square[..., 8:24, 8:24] = 1.0  # a flat fill with sharp edges
    plaid = square.clone()
    lines = torch.arange(32.0).remainder(2).mul(0.3)  # one-pixel lines every other pixel
    plaid[..., 8:24, 8:24] -= lines[8:24].view(16, 1) + lines[8:24].view(1, 16)
    assert fine_grain(square) < 0.03
    assert fine_grain(plaid) > 1.5 * fine_grain(square)
    # white noise spreads its power evenly over the 32 x 32 frequencies; 7 of 32 per axis lie above 0.375
    torch.manual_seed(0)
    assert fine_grain(torch.rand(8, 3, 32, 32)) == pytest.approx(1 - (25 / 32) ** 2, abs=0.02)
    with pytest.raises(ValueError, match="shape"):
        fine_grain(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="cutoff"):
        fine_grain(square, cutoff=0.5)
