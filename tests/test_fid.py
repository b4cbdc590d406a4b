"""Fréchet distance, FID report and feature extractors (synthmr.metrics.fid, synthmr.metrics.extractors)."""

from __future__ import annotations

import socket
import urllib.request
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from synthmr.errors import InputError
from synthmr.metrics.extractors import (
    DomainExtractor,
    FIDInceptionV3,
    RadImageNetResNet50,
    describe_extractor,
    get_extractor,
    shipped_domain_weights,
)
from synthmr.metrics.fid import extract_features, fid, frechet_distance
from feature_stubs import MomentFeatures

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
RADIMAGENET_FILE = "RadImageNet-ResNet50_notop.pth"


def closed_form(mu_a, cov_a, mu_b, cov_b) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), with SciPy's general matrix square root."""
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * np.real(root)))


# ---------------------------------------------------------------------------------------------------- the distance


def test_identical_sets_give_zero_even_with_fewer_samples_than_features():
    rng = np.random.default_rng(0)
    assert frechet_distance(rng.normal(size=(200, 16)), np.zeros((3, 16)) + 5) > 1.0  # not trivially zero
    well = rng.normal(size=(200, 16))
    assert frechet_distance(well, well) == pytest.approx(0.0, abs=1e-9)
    singular = rng.normal(size=(12, 512)) * 3.0  # covariance of rank 11 in 512 dimensions
    assert frechet_distance(singular, singular) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(torch.from_numpy(singular), singular.copy()) == pytest.approx(0.0, abs=1e-8)


def test_known_gaussians_match_the_closed_form():
    mu_a, mu_b = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.5, 0.0])
    chol_a = np.array([[1.0, 0, 0], [0.5, 1.0, 0], [0.2, -0.3, 0.8]])
    chol_b = np.array([[1.5, 0, 0], [-0.4, 0.7, 0], [0.3, 0.2, 1.2]])
    cov_a, cov_b = chol_a @ chol_a.T, chol_b @ chol_b.T
    expected = closed_form(mu_a, cov_a, mu_b, cov_b)  # 2.5995 for these parameters
    rng = np.random.default_rng(0)
    a = rng.multivariate_normal(mu_a, cov_a, size=4000)
    b = rng.multivariate_normal(mu_b, cov_b, size=4000)
    # The estimate's spread over seeds is ~0.07 at n = 4000 (measured); 0.3 still catches a wrong term.
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.3)
    # At the sample moments (mean, unbiased covariance) the formula is exact.
    at_moments = closed_form(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(at_moments, rel=1e-10)


def test_symmetric_and_exact_when_features_outnumber_samples():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(15, 300)), rng.normal(size=(9, 300)) * 2 + 0.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-12)
    # Reference without the QR shortcut: Tr (S_a S_b)^(1/2) = nuclear norm of A B^T / sqrt((n_a - 1)(n_b - 1)).
    ca, cb = a - a.mean(0), b - b.mean(0)
    trace_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(14 * 8)
    reference = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.sum(ca**2) / 14 + np.sum(cb**2) / 8 - 2 * trace_sqrt
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-10)


def test_agrees_with_monai_on_well_conditioned_features():
    from monai.metrics.fid import get_fid_score

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(300, 8)) * 1.3 + 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI passes SciPy's deprecated `disp` argument
        monai_value = float(get_fid_score(torch.from_numpy(a), torch.from_numpy(b)))
    assert frechet_distance(a, b) == pytest.approx(monai_value, rel=1e-9)


def test_distance_rejects_bad_features():
    rng = np.random.default_rng(3)
    with pytest.raises(InputError, match="at least 2"):
        frechet_distance(rng.normal(size=(1, 4)), rng.normal(size=(5, 4)))
    with pytest.raises(InputError, match="feature sizes differ"):
        frechet_distance(rng.normal(size=(5, 4)), rng.normal(size=(5, 3)))
    with pytest.raises(InputError, match="NaN"):
        frechet_distance(np.full((3, 4), np.nan), rng.normal(size=(5, 4)))
    with pytest.raises(InputError, match="number of features"):
        frechet_distance(rng.normal(size=(5,)), rng.normal(size=(5, 4)))


# ---------------------------------------------------------------------------------------------------- fid() report


def test_fid_report_names_extractor_and_sample_sizes():
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(6, 1, 16, 16, generator=generator)
    dark = real * 0.3
    same = fid(real, real.clone(), MomentFeatures(), batch_size=4)
    assert set(same) == {"fid", "extractor", "n_real", "n_fake", "feature_dim"}
    assert same["fid"] == pytest.approx(0.0, abs=1e-9)
    assert (same["n_real"], same["n_fake"], same["feature_dim"]) == (6, 6, 5)
    assert "MomentFeatures" in same["extractor"] and "not recorded" in same["extractor"]
    assert fid(real, dark, MomentFeatures())["fid"] > 0.01
    # lists of 2D arrays of different sizes go through the same extractor, in order
    images = [np.full((8, 8), 0.2), np.full((8, 8), 0.4), np.full((10, 12), 0.6)]
    features = extract_features(images, MomentFeatures(), batch_size=2)
    assert features.shape == (3, 5) and features.dtype == torch.float64
    assert features[:, 0].tolist() == pytest.approx([0.2, 0.4, 0.6])


def test_fid_rejects_bad_image_sets():
    real = torch.rand(4, 1, 8, 8)
    with pytest.raises(InputError, match="fake_images.*at least 2"):
        fid(real, real[:1], MomentFeatures())
    with pytest.raises(InputError, match=r"real_images.*\[0, 1\]"):
        fid(real * 1000, real, MomentFeatures())
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        fid(torch.rand(4, 8, 8), real, MomentFeatures())
    with pytest.raises(InputError, match="unknown feature extractor"):
        fid(real, real, "vgg")


# ---------------------------------------------------------------------------------------------------- extractors


def test_downloadable_extractors_without_weights_name_the_file(tmp_path):
    for name, file_name in (("inception", INCEPTION_FILE), ("radimagenet_resnet50", RADIMAGENET_FILE)):
        with pytest.raises(InputError, match=file_name) as error:
            get_extractor(name)
        assert "\n" not in str(error.value) and "http" in str(error.value)
        with pytest.raises(InputError, match=file_name):
            get_extractor(name, weights=tmp_path / "absent.pth")


def test_paper_size_parameter_counts():
    # torchvision inception_v3: 27,161,264 parameters, minus AuxLogits (3,326,696) and the 1000-class fc (2,049,000)
    assert sum(p.numel() for p in FIDInceptionV3().parameters()) == 21_785_568
    # Keras ResNet50(include_top=False): 23,534,592 trainable parameters (every conv has a bias)
    assert sum(p.numel() for p in RadImageNetResNet50().parameters()) == 23_534_592


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Random weights saved the way the released files are laid out."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    inception = FIDInceptionV3()
    state = inception.state_dict()
    # The release also holds the 1008-class classifier; the extractor must drop it, not fail on it.
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, 2048), torch.randn(1008)
    torch.save(state, folder / INCEPTION_FILE)
    radimagenet = RadImageNetResNet50()
    # a DataParallel-style copy: "module." prefixes are stripped
    torch.save({f"module.{k}": v for k, v in radimagenet.state_dict().items()}, folder / RADIMAGENET_FILE)
    return {"inception": (folder / INCEPTION_FILE, inception), "radimagenet_resnet50": (folder / RADIMAGENET_FILE,
                                                                                      radimagenet)}


@pytest.mark.parametrize("name", ["inception", "radimagenet_resnet50"])
def test_random_state_dict_round_trip(name, weight_files):
    path, original = weight_files[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights do not carry the release's SHA-256
        extractor = get_extractor(name, weights=path)
    for key, value in original.state_dict().items():
        assert torch.equal(extractor.state_dict()[key], value), key
    assert not extractor.training and not any(p.requires_grad for p in extractor.parameters())
    images = torch.rand(2, 1, 64, 80)
    features = extractor(images)
    assert features.shape == (2, 2048)
    assert torch.allclose(extractor(images.expand(-1, 3, -1, -1)), features)  # grey = replicated channels
    assert name in describe_extractor(extractor) and path.name in describe_extractor(extractor)


def test_wrong_file_is_refused(tmp_path, weight_files):
    path, original = weight_files["inception"]
    state = dict(original.state_dict())
    state["AuxLogits.conv0.conv.weight"] = torch.zeros(128, 768, 1, 1)  # torchvision's layout, not the FID port
    del state["Mixed_7c.branch_pool.conv.weight"]
    wrong = tmp_path / "torchvision_inception.pth"
    torch.save(state, wrong)
    with pytest.raises(InputError, match="missing.*unexpected.*" + INCEPTION_FILE):
        get_extractor("inception", weights=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        get_extractor("radimagenet_resnet50", weights=garbage)
    with pytest.warns(UserWarning, match="6726825d"):
        get_extractor("inception", weights=path)


def test_no_network_access_is_attempted(monkeypatch, weight_files):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for name in ("inception", "radimagenet_resnet50"):
        with pytest.raises(InputError):
            get_extractor(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            get_extractor(name, weights=weight_files[name][0])
    if shipped_domain_weights().is_file():
        get_extractor("domain")


def test_domain_extractor_features_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    extractor = DomainExtractor().eval()
    images = torch.rand(4, 1, 96, 112)
    with torch.no_grad():
        together = extractor(images)
        alone = torch.cat([extractor(images[i : i + 1]) for i in range(4)])
        rgb = extractor(images.expand(-1, 3, -1, -1))
    assert together.shape == (4, 256)
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(together, rgb, atol=1e-6)
    with pytest.raises(InputError, match="1 or 3"):
        extractor(torch.rand(2, 2, 32, 32))


# ---------------------------------------------------------------------------------------------------- shipped weights

shipped = pytest.mark.skipif(not shipped_domain_weights().is_file(), reason="domain_extractor.pt not shipped yet")


@shipped
def test_shipped_domain_weights_load_safely():
    path = shipped_domain_weights()
    assert path.stat().st_size <= 16 * 2**20
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in state.values())
    extractor = get_extractor()
    assert describe_extractor(extractor).startswith("domain (domain_extractor.pt, sha256 ")
    assert any(float(p.abs().sum()) > 0 for p in extractor.parameters())


def _slices(organ: str, seeds, sequences) -> torch.Tensor:
    from monai.transforms import ScaleIntensityRangePercentiles

    from synthmr.phantom import phantom_class

    scale = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
    phantom = phantom_class(organ)(dims=2)
    cases = [phantom(seed) for seed in seeds]
    return [np.asarray(scale(case.images[s][None]))[0] for case in cases for s in sequences]


@shipped
def test_shipped_domain_extractor_separates_organs():
    extractor = get_extractor("domain")
    brain_a = extract_features(_slices("brain", [100, 101], ("t1n", "t2w", "t2f")), extractor)
    brain_b = extract_features(_slices("brain", [102, 103], ("t1n", "t2w", "t2f")), extractor)
    liver = extract_features(_slices("liver", [100, 101], ("t1fs_arterial", "t1fs_portal", "t2")), extractor)
    within = torch.linalg.norm(brain_a.mean(0) - brain_b.mean(0))
    between = torch.linalg.norm(brain_a.mean(0) - liver.mean(0))
    assert between > 2 * within  # 4.4x with the shipped weights
    assert frechet_distance(brain_a, liver) > frechet_distance(brain_a, brain_b)
