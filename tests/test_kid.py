"""Kernel inception distance and its bootstrap interval (synthmr.metrics.kid)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from synthmr.errors import InputError
from synthmr.metrics.kid import FID_SAMPLES_PER_FEATURE, fid_is_reliable, kernel_distance, kid
from feature_stubs import MomentFeatures


def cubic_kernel(x, y):
    return (np.dot(x, y) / len(x) + 1.0) ** 3


def brute_force_mmd2(a, b) -> float:
    """Unbiased MMD^2 of Bińkowski et al. (arXiv 1801.01401), written out pair by pair."""
    within_a = sum(cubic_kernel(a[i], a[j]) for i, j in itertools.permutations(range(len(a)), 2))
    within_b = sum(cubic_kernel(b[i], b[j]) for i, j in itertools.permutations(range(len(b)), 2))
    across = sum(cubic_kernel(x, y) for x in a for y in b)
    n_a, n_b = len(a), len(b)
    return within_a / (n_a * (n_a - 1)) + within_b / (n_b * (n_b - 1)) - 2 * across / (n_a * n_b)


def test_point_value_is_the_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(0.5, 1.2, size=(7, 3))
    result = kernel_distance(a, b, n_bootstrap=0)
    assert result["kid"] == pytest.approx(brute_force_mmd2(a, b), rel=1e-12)
    assert result["interval"] is None
    assert (result["n_a"], result["n_b"], result["feature_dim"], result["n_bootstrap"]) == (5, 7, 3, 0)
    # tensors give the same value as arrays
    assert kernel_distance(torch.as_tensor(a), torch.as_tensor(b), n_bootstrap=0)["kid"] == result["kid"]


def test_sets_from_one_distribution_give_a_value_near_zero_and_an_interval_around_it():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    result = kernel_distance(a, b, n_bootstrap=300, seed=0)
    low, high = result["interval"]
    assert abs(result["kid"]) < 0.05
    assert low < 0 < high


def test_a_shifted_set_gives_an_interval_above_zero():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(60, 8)), rng.normal(0.7, 1.0, size=(60, 8))
    result = kernel_distance(a, b, n_bootstrap=300, seed=0)
    low, high = result["interval"]
    assert 0 < low < result["kid"] < high


def test_the_interval_is_reproducible_by_seed():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 4)), rng.normal(size=(12, 4))
    first = kernel_distance(a, b, n_bootstrap=50, seed=7)["interval"]
    assert kernel_distance(a, b, n_bootstrap=50, seed=7)["interval"] == first
    assert kernel_distance(a, b, n_bootstrap=50, seed=8)["interval"] != first


@pytest.mark.parametrize(
    "a, b, options, message",
    [
        (np.zeros((1, 3)), np.zeros((4, 3)), {}, "features_a: KID needs at least 2"),
        (np.zeros((4, 3)), np.zeros((4, 2)), {}, "feature sizes differ: 3 vs 2"),
        (np.full((4, 3), np.nan), np.zeros((4, 3)), {}, "features_a: features contain NaN"),
        (np.zeros((4, 3)), np.zeros(4), {}, r"features_b: expected a \(number of images, number of features\)"),
        (np.zeros((4, 3)), np.zeros((4, 3)), {"n_bootstrap": -1}, "n_bootstrap must be a non-negative integer"),
        (np.zeros((4, 3)), np.zeros((4, 3)), {"n_bootstrap": 2.5}, "n_bootstrap must be a non-negative integer"),
        (np.zeros((4, 3)), np.zeros((4, 3)), {"seed": -3}, "seed must be a non-negative integer"),
    ],
)
def test_bad_features_and_options_are_refused(a, b, options, message):
    with pytest.raises(InputError, match=message):
        kernel_distance(a, b, **options)


def test_fid_is_reliable_from_twice_as_many_samples_as_features():
    assert FID_SAMPLES_PER_FEATURE == 2
    assert fid_is_reliable(512, 512, 256)
    assert fid_is_reliable(600, 512, 256)
    assert not fid_is_reliable(511, 4000, 256)
    assert not fid_is_reliable(4000, 511, 256)


def test_kid_of_images_names_extractor_and_separates_a_darker_set():
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(12, 1, 16, 16, generator=generator)
    other = torch.rand(12, 1, 16, 16, generator=generator)
    same = kid(real, other, MomentFeatures(), batch_size=5, n_bootstrap=200)
    assert set(same) == {"kid", "interval", "extractor", "n_real", "n_fake", "feature_dim", "n_bootstrap"}
    assert (same["n_real"], same["n_fake"], same["feature_dim"], same["n_bootstrap"]) == (12, 12, 5, 200)
    assert "MomentFeatures" in same["extractor"]
    assert same["interval"][0] <= 0 <= same["interval"][1]
    dark = kid(real, other * 0.3, MomentFeatures(), n_bootstrap=200)
    assert dark["interval"][0] > 0 and dark["kid"] > same["kid"]


def test_kid_of_images_refuses_too_few_or_unscaled_images():
    real = torch.rand(4, 1, 8, 8)
    with pytest.raises(InputError, match="fake_images: KID needs at least 2 images, got 1"):
        kid(real, real[:1], MomentFeatures())
    with pytest.raises(InputError, match=r"real_images.*\[0, 1\]"):
        kid(real * 1000, real, MomentFeatures())
