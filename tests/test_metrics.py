import math

import numpy as np
import pytest
import torch

from streamdit.metrics import (
    bootstrap_ci,
    bootstrap_frechet,
    clip_score,
    clip_scores,
    colour_fraction,
    frechet_distance,
    frechet_from_stats,
    gaussian_stats,
    retrieval_top1,
    shape_iou,
)


def reference_frechet(mu1, s1, mu2, s2):
    """An independent route: tr((s1 s2)^(1/2)) from the eigenvalues of the (non-symmetric) product,
    which are real and >= 0 for PSD s1, s2, so the trace of the root is the sum of their roots."""
    eig = np.linalg.eigvals(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig.real.clip(0)).sum())


def random_covariance(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_diagonal_gaussians_match_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    # = (1 + 0 + 6.25) + (1 + 9 - 6) + (4 + 1 - 4) + 0 = 12.25
    assert expected == pytest.approx(12.25)
    assert frechet_from_stats(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(12.25, rel=1e-12)


@pytest.mark.parametrize("d", [2, 7, 32])
def test_full_covariances_match_an_independent_computation(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    assert frechet_from_stats(mu1, s1, mu2, s2) == pytest.approx(
        reference_frechet(mu1, s1, mu2, s2), rel=1e-6
    )


def test_frechet_distance_of_samples_uses_their_gaussian_fits():
    gen = np.random.default_rng(0)
    a = gen.standard_normal((50, 4)) @ gen.standard_normal((4, 4))
    b = 2 + gen.standard_normal((40, 4))
    mu_a, s_a = a.mean(0), np.cov(a, rowvar=False)
    mu_b, s_b = b.mean(0), np.cov(b, rowvar=False)
    expected = reference_frechet(mu_a, s_a, mu_b, s_b)
    assert frechet_distance(a, torch.from_numpy(b).float()) == pytest.approx(expected, rel=1e-5)


def test_identical_sets_give_zero_even_when_covariances_are_singular():
    feats = np.random.default_rng(1).standard_normal((10, 64))  # rank 9 covariance in 64 dims
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)
    shifted = feats + 3.0
    assert frechet_distance(feats, shifted) == pytest.approx(64 * 9.0, rel=1e-8)


def test_gaussian_stats_shapes_and_unbiased_covariance():
    mu, sigma = gaussian_stats(np.array([[0.0, 1.0], [2.0, 3.0]]))
    np.testing.assert_allclose(mu, [1.0, 2.0])
    np.testing.assert_allclose(sigma, [[2.0, 2.0], [2.0, 2.0]])


def test_frechet_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="widths differ"):
        frechet_distance(np.zeros((4, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="matrix"):
        frechet_distance(np.zeros(4), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.full((4, 2), np.nan), np.zeros((5, 2)))


def test_clip_score_is_100_cos_clamped_at_zero():
    images = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    texts = np.array([[1.0, 1.0], [-1.0, 0.0], [0.0, 5.0]])
    np.testing.assert_allclose(clip_scores(images, texts), [100 / math.sqrt(2), 0.0, 100.0])
    assert clip_score(images, texts) == pytest.approx((100 / math.sqrt(2) + 100) / 3)


def test_retrieval_counts_own_caption_first_and_reports_chance():
    captions = np.eye(4)[:3]  # three orthogonal caption embeddings in 4 dims
    images = np.array([[1.0, 0.1, 0, 0], [0, 0.2, 1.0, 0], [0, 1.0, 0.5, 0], [0.9, 0, 0, 0.1]])
    labels = [0, 2, 1, 1]  # the last image points at caption 0, not its own caption 1
    top1, chance = retrieval_top1(images, captions, labels)
    assert top1 == pytest.approx(0.75) and chance == pytest.approx(1 / 3)
    assert retrieval_top1(np.eye(3), 2 * np.eye(3)) == (1.0, pytest.approx(1 / 3))
    with pytest.raises(ValueError, match="labels"):
        retrieval_top1(images, captions, [0, 1, 2, 3])


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    values = np.random.default_rng(3).standard_normal(400) + 5.0
    low, high = bootstrap_ci(values, torch.Generator().manual_seed(0), n_boot=500)
    assert low < values.mean() < high
    # the standard error is about 1/sqrt(400) = 0.05, so the 95% interval spans about 0.2
    assert 0.12 < high - low < 0.28
    again = bootstrap_ci(values, torch.Generator().manual_seed(0), n_boot=500)
    assert again == (low, high)


def test_bootstrap_accepts_a_statistic_over_feature_rows():
    feats = np.random.default_rng(4).standard_normal((30, 3))
    seen = []

    def statistic(f):
        seen.append(f)
        return frechet_distance(f, feats)

    low, high = bootstrap_ci(feats, torch.Generator().manual_seed(1), n_boot=50, statistic=statistic)
    # each resample is 30 whole feature rows of `feats`, drawn with replacement
    assert len(seen) == 50 and all(f.shape == (30, 3) for f in seen)
    assert all((f[:, None] == feats[None]).all(-1).any(-1).all() for f in seen)
    # the percentiles of the same resamples drawn by hand (indices from the same seeded generator)
    draws = torch.randint(30, (50, 30), generator=torch.Generator().manual_seed(1)).numpy()
    by_hand = np.percentile([frechet_distance(feats[idx], feats) for idx in draws], [2.5, 97.5])
    assert (low, high) == pytest.approx(tuple(by_hand), rel=1e-12)
    # a resample repeats rows, so it is never the full set: its distance to it is > 0 (measured 0.057)
    assert low > 0.01
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(feats, torch.Generator(), level=1.5)


def test_bootstrap_frechet_resamples_prompts_with_all_their_windows():
    rng = np.random.default_rng(5)
    real = rng.standard_normal((40, 3, 2))  # 40 prompts, 3 windows each, 2-d features
    near, far = real + 0.1 * rng.standard_normal(real.shape), real + 2.0  # far: mean shifted by 2 per dim
    low, high = bootstrap_frechet(far, real, torch.Generator().manual_seed(0), n_boot=100)
    # |mu_a - mu_b|^2 = 2 * 2^2 = 8 exactly in every resample (the shift is shared); covariances agree
    assert 7.9 < low <= 8.0 + 1e-6 and high == pytest.approx(8.0, abs=1e-6)
    near_low, near_high = bootstrap_frechet(near, real, torch.Generator().manual_seed(0), n_boot=100)
    # the bias correction takes the lower end below 0, where the floor at 0 holds it
    assert near_low == 0.0
    assert near_low <= frechet_distance(near.reshape(-1, 2), real.reshape(-1, 2)) <= near_high < 0.2
    assert bootstrap_frechet(near, real, torch.Generator().manual_seed(0), n_boot=100) == (
        near_low,
        near_high,
    )
    with pytest.raises(ValueError, match="paired"):
        bootstrap_frechet(real[:5], real, torch.Generator())


def test_bootstrap_frechet_corrects_the_upward_bias_of_resampling():
    # Two independent samples of one distribution, as real clips against real clips of other scenes:
    # resamples repeat prompts, so their distances sit above the full-sample one.
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((32, 3, 8)), rng.standard_normal((32, 3, 8))
    estimate = frechet_distance(a.reshape(-1, 8), b.reshape(-1, 8))
    plain = bootstrap_ci(
        np.arange(32),
        torch.Generator().manual_seed(0),
        n_boot=200,
        statistic=lambda idx: frechet_distance(a[idx].reshape(-1, 8), b[idx].reshape(-1, 8)),
    )
    assert plain[0] > estimate  # the percentile interval misses the estimate entirely
    low, high = bootstrap_frechet(a, b, torch.Generator().manual_seed(0), n_boot=200)
    assert low <= estimate <= high
    # the same resamples, shifted down by one amount (the bias), floored at 0
    shift = plain[1] - high
    assert shift > 0 and low == pytest.approx(max(0.0, plain[0] - shift), rel=1e-9)


def square_video(frames: int, centre: tuple[int, int], half: int, size: int = 16) -> torch.Tensor:
    """One video ``[1, frames, 3, size, size]``: a red square of side 2 * half + 1 on black."""
    video = -torch.ones(1, frames, 3, size, size)
    y, x = centre
    video[0, :, 0, y - half : y + half + 1, x - half : x + half + 1] = 1.0
    return video


RED = (255, 0, 0)


def test_colour_fraction_counts_the_pixels_of_the_colour():
    video = square_video(2, (8, 8), 1)  # 9 red pixels of 256
    assert colour_fraction(video, [RED]).tolist() == [[9 / 256, 9 / 256]]
    assert colour_fraction(video, [(0, 0, 255)]).tolist() == [[0.0, 0.0]]


def test_shape_iou_ignores_position_and_sees_shape():
    real = square_video(3, (8, 8), 2)
    moved = square_video(3, (4, 11), 2)  # the same square elsewhere: centred, it matches exactly
    assert shape_iou(moved, real, [RED]) == pytest.approx(
        {"iou": 1.0, "disc": shape_iou(real, real, [RED])["disc"], "present": 1.0}
    )
    bigger = square_video(3, (8, 8), 3)  # 49 pixels against 25, nested: IoU 25 / 49
    assert shape_iou(bigger, real, [RED])["iou"] == pytest.approx(25 / 49)
    # a disc of the square's area overlaps it only partly
    assert 0.5 < shape_iou(real, real, [RED])["disc"] < 1.0


def test_shape_iou_skips_missing_objects_and_unscored_videos():
    real = square_video(4, (8, 8), 2)
    empty = -torch.ones_like(real)
    assert shape_iou(empty, real, [RED]) == {"iou": 0.0, "disc": 0.0, "present": 0.0}
    both = torch.cat([real, real])
    assert shape_iou(both, both, [RED, None])["present"] == 1.0  # only the first video's 4 frames count
