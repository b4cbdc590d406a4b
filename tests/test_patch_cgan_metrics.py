"""breast_dce_patch_cgan's held-out metrics on tiny data: KID per class and channel with its intervals (FID only
where reliable), and the conditioning accuracy of a classifier trained on real patches."""

import numpy as np
import pytest
import torch

from synthmr.errors import InputError
from synthmr.methods.breast_dce_patch_cgan import CLASSES, FID_CHANNELS, conditioning_accuracy, evaluate_patches
from synthmr.metrics.kid import kernel_distance


class PoolExtractor(torch.nn.Module):
    """A feature extractor of 4 features: the 2 x 2 average pooling of a grey image."""

    def forward(self, images):
        return torch.nn.functional.adaptive_avg_pool2d(images.mean(dim=1, keepdim=True), 2).flatten(1)


def class_pattern(labels, size):
    """(N, 1, size, size): no pattern for healthy, a bright left half for benign, a bright top half for malignant
    (a spatial pattern, which the classifier's instance norm keeps)."""
    labels = torch.as_tensor(labels)
    pattern = torch.zeros(len(labels), 1, size, size)
    pattern[labels == 1, :, : size // 2, :] = 0.6
    pattern[labels == 2, :, :, : size // 2] = 0.6
    return pattern - 0.3


def toy_patches(n_per_class, shift=0.0, seed=0, size=8, same_channels=False, noise=0.3):
    """Patches (N, 6, size, size) in [-1, 1]: noise around the class's pattern, plus ``shift``."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    shape = (len(labels), 1 if same_channels else 6, size, size)
    images = class_pattern(labels, size).numpy() + shift + noise * rng.standard_normal(shape)
    images = np.broadcast_to(images, (len(labels), 6, size, size))
    return torch.as_tensor(np.clip(images, -1, 1), dtype=torch.float32), torch.as_tensor(labels)


# ---------------------------------------------------------------------------------------------- KID


def test_kid_interval_of_the_mean_uses_the_same_resamples_in_every_channel():
    # With the three channels equal, the mean over channels is each channel's KID, and an interval of the mean
    # bootstrapped from the same resample indices in every channel is exactly the per-channel interval.
    real, real_labels = toy_patches(12, seed=1, same_channels=True)
    fake, fake_labels = toy_patches(12, shift=0.2, seed=2, same_channels=True)
    report = evaluate_patches(real, real_labels, fake, fake_labels, PoolExtractor(), n_max=12, distance="kid",
                              n_bootstrap=200, seed=3)
    for entry in report["classes"].values():
        channel = entry["kid_channels"]["t2"]
        assert entry["kid"] == pytest.approx(channel["kid"])
        assert entry["kid_interval"] == pytest.approx(channel["interval"])


def test_kid_mean_is_the_channel_mean_with_an_interval_around_it():
    real, real_labels = toy_patches(10, seed=1)
    fake, fake_labels = toy_patches(10, shift=0.3, seed=2)
    report = evaluate_patches(real, real_labels, fake, fake_labels, PoolExtractor(), n_max=10, distance="kid",
                              n_bootstrap=300, seed=0)
    for name in CLASSES:
        entry = report["classes"][name]
        assert set(entry["kid_channels"]) == set(FID_CHANNELS)
        assert entry["kid"] == pytest.approx(np.mean([c["kid"] for c in entry["kid_channels"].values()]))
        low, high = entry["kid_interval"]
        assert 0 < low <= entry["kid"] <= high  # shifted by 0.3: clearly apart


def test_kid_separates_shifted_patches_and_not_patches_of_one_distribution():
    real, real_labels = toy_patches(16, seed=1)
    same, same_labels = toy_patches(16, seed=2)
    shifted, shifted_labels = toy_patches(16, shift=0.5, seed=2)
    kwargs = dict(extractor=PoolExtractor(), n_max=16, distance="kid", n_bootstrap=300)
    alike = evaluate_patches(real, real_labels, same, same_labels, **kwargs)
    apart = evaluate_patches(real, real_labels, shifted, shifted_labels, **kwargs)
    for name in CLASSES:
        low, high = alike["classes"][name]["kid_interval"]
        assert low <= 0 <= high, (name, low, high)
        assert apart["classes"][name]["kid_interval"][0] > high, name


def test_fid_is_reported_only_where_reliable_and_always_for_selection():
    extractor = PoolExtractor()  # 4 features: FID needs >= 8 patches per class and set
    real, real_labels = toy_patches(10, seed=1)
    fake, fake_labels = toy_patches(10, shift=0.2, seed=2)
    few = evaluate_patches(real, real_labels, fake, fake_labels, extractor, n_max=6, distance="kid", n_bootstrap=0)
    enough = evaluate_patches(real, real_labels, fake, fake_labels, extractor, n_max=8, distance="kid", n_bootstrap=0)
    selection = evaluate_patches(real, real_labels, fake, fake_labels, extractor, n_max=6)
    for name in CLASSES:
        assert few["classes"][name]["fid_reliable"] is False and "fid" not in few["classes"][name]
        assert few["classes"][name]["kid_interval"] is None  # no resamples asked for
        reliable = enough["classes"][name]
        assert reliable["fid_reliable"] is True and set(reliable["fid_channels"]) == set(FID_CHANNELS)
        assert "fid" in selection["classes"][name] and "kid" not in selection["classes"][name]


def test_kid_per_channel_is_the_metrics_kernel_distance():
    real, real_labels = toy_patches(8, seed=1)
    fake, fake_labels = toy_patches(8, shift=0.1, seed=2)
    report = evaluate_patches(real, real_labels, fake, fake_labels, PoolExtractor(), n_max=8, distance="kid",
                              n_bootstrap=0)
    extractor = PoolExtractor()
    t1_pre = 1  # channel index of t1_pre
    features = [extractor(((x[y == 2][:, t1_pre : t1_pre + 1] + 1) / 2)).double() for x, y in
                ((real, real_labels), (fake, fake_labels))]
    # n_max equals the class size, so the random subsets are permutations: the same sets.
    expected = kernel_distance(*features, n_bootstrap=0)["kid"]
    assert report["classes"]["malignant"]["kid_channels"]["t1_pre"]["kid"] == pytest.approx(expected)


def test_unknown_distance_is_one_clear_error():
    real, labels = toy_patches(3)
    with pytest.raises(InputError, match="distance must be one of fid, kid"):
        evaluate_patches(real, labels, real, labels, PoolExtractor(), distance="is")


# ---------------------------------------------------------------------------------------------- conditioning


class ToyGenerator(torch.nn.Module):
    """Patches with the toy pattern of a class: the asked-for class (``obeys``) or one drawn from z (ignores it)."""

    latent_dim, n_classes = 1 + 16 * 16, 3  # z[:, 0] may pick the class, z[:, 1:] is the pixels' noise

    def __init__(self, obeys: bool):
        super().__init__()
        self.obeys = obeys
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # a device to sample on

    def forward(self, z, labels):
        # z[:, 0] ~ N(0, 1) cut at its tertiles: each class equally likely, whatever was asked for.
        drawn = torch.bucketize(z[:, 0].contiguous(), torch.tensor([-0.4307, 0.4307]))
        pattern = class_pattern(labels if self.obeys else drawn, 16)
        return (pattern + 0.1 * z[:, 1:].reshape(-1, 1, 16, 16)).expand(len(z), 6, 16, 16).clamp(-1, 1)


def as_items(images, labels):
    return [{"image": image.numpy(), "label": int(label)} for image, label in zip(images, labels)]


@pytest.fixture(scope="module")
def toy_sets():
    return [as_items(*toy_patches(n, seed=seed, size=16, noise=0.1)) for n, seed in ((30, 0), (10, 1), (10, 2))]


def test_conditioning_accuracy_separates_a_class_following_from_a_class_ignoring_generator(toy_sets):
    generators = {"obeys": ToyGenerator(obeys=True), "ignores": ToyGenerator(obeys=False)}
    result = conditioning_accuracy(generators, *toy_sets, n_per_class=300, seed=0, epochs=10)
    assert all(value >= 0.9 for value in result["real"].values()), result["real"]  # trivially separable: learnt
    assert all(value >= 0.9 for value in result["generated"]["obeys"].values()), result["generated"]
    ignores = result["generated"]["ignores"]
    assert np.mean(list(ignores.values())) == pytest.approx(1 / 3, abs=0.05), ignores  # chance
    assert all(value <= 0.5 for value in ignores.values()), ignores
    classifier = result["classifier"]
    assert 1 <= classifier["best_epoch"] <= 10 and classifier["n_train"] == 90 and classifier["n_test"] == 30
    assert classifier["validation_balanced_accuracy"] == max(classifier["history"])
    # Deterministic: the same seed gives the same classifier and the same numbers; the global state is untouched.
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    again = conditioning_accuracy({"ignores": ToyGenerator(obeys=False)}, *toy_sets, n_per_class=300, seed=0, epochs=10)
    assert torch.rand(1) == before
    assert again["generated"]["ignores"] == ignores and again["real"] == result["real"]


def test_conditioning_accuracy_judges_the_classes_the_real_patches_hold(toy_sets):
    # Cancer-only data (Duke's boxes): no benign patch anywhere. The classifier learns healthy and malignant,
    # never answers benign, and a class-ignoring generator is at chance among two classes.
    train, val, test = ([item for item in items if item["label"] != 1] for items in toy_sets)
    generators = {"obeys": ToyGenerator(obeys=True), "ignores": ToyGenerator(obeys=False)}
    result = conditioning_accuracy(generators, train, val, test, n_per_class=300, seed=0, epochs=10)
    assert result["absent"] == ["benign"] and result["classifier"]["classes"] == ["healthy", "malignant"]
    assert set(result["real"]) == {"healthy", "malignant"} and min(result["real"].values()) >= 0.9
    assert set(result["generated"]["obeys"]) == {"healthy", "malignant"}
    assert min(result["generated"]["obeys"].values()) >= 0.9
    ignores = result["generated"]["ignores"]
    assert np.mean(list(ignores.values())) == pytest.approx(1 / 2, abs=0.05), ignores
    # Test patches may lack a learnt class (no ceiling for it), but not hold an unlearnt one.
    only_malignant = [item for item in test if item["label"] == 2]
    assert set(conditioning_accuracy(generators, train, val, only_malignant, n_per_class=4, epochs=1)["real"]) == {
        "malignant"}
    with pytest.raises(InputError, match="test_patches: class benign has no training patch"):
        conditioning_accuracy(generators, train, val, toy_sets[2], n_per_class=4, epochs=1)


def test_scores_choose_among_the_learnt_classes_only():
    from synthmr.methods.breast_dce_patch_cgan import _accuracy_by_class

    class PrefersBenign(torch.nn.Module):
        """Logits (healthy, benign, malignant): benign always largest, then the patch's own class."""

        def forward(self, images):
            logits = torch.zeros(len(images), 3)
            logits[:, 1] = 10.0
            logits[torch.arange(len(images)), images[:, 0, 0, 0].long()] += 5.0
            return logits

    labels = torch.tensor([0, 0, 2, 2])
    images = labels.float()[:, None, None, None].expand(4, 6, 8, 8)
    assert _accuracy_by_class(PrefersBenign(), images, labels, list(CLASSES)) == {"healthy": 0.0, "malignant": 0.0}
    assert _accuracy_by_class(PrefersBenign(), images, labels, ["healthy", "malignant"]) == {
        "healthy": 1.0, "malignant": 1.0}


@pytest.mark.parametrize("case, message", [
    ("one class", "train_patches: only class malignant; the classifier needs at least two classes"),
    ("validation misses one", "val_patches: no patch of class healthy, which the training patches hold"),
    ("validation has another", "val_patches: class benign has no training patch"),
])
def test_conditioning_accuracy_refuses_real_patches_it_cannot_learn_or_judge(toy_sets, case, message):
    train, val, test = toy_sets
    without = {label: [item for item in items if item["label"] != label] for label, items in ((0, val), (1, train))}
    train, val = {
        "one class": ([item for item in train if item["label"] == 2], val),
        "validation misses one": (train, without[0]),
        "validation has another": (without[1], val),
    }[case]
    test = [item for item in test if item["label"] in {item["label"] for item in train}]
    with pytest.raises(InputError, match=message):
        conditioning_accuracy(ToyGenerator(obeys=True), train, val, test, n_per_class=2, epochs=1)


def test_the_table_shows_kid_with_intervals_omits_unreliable_fid_and_lists_conditioning():
    from synthmr.methods.breast_dce_patch_cgan import format_report

    real, real_labels = toy_patches(6, seed=1)
    fake, fake_labels = toy_patches(6, shift=0.2, seed=2)
    evaluation = evaluate_patches(real, real_labels, fake, fake_labels, PoolExtractor(), n_max=6, distance="kid",
                                  n_bootstrap=50)
    accuracy = dict(zip(CLASSES, (0.99, 0.9, 0.8)))
    report = {
        "model": evaluation, "untrained": evaluation,
        "conditioning": {"classifier": {"n_train": 90, "best_epoch": 3, "epochs": 5, "n_validation": 30},
                         "real": accuracy, "generated": {"model": accuracy}},
    }
    table = format_report(report)
    entry = evaluation["classes"]["benign"]
    low, high = entry["kid_interval"]
    assert f"{1e3 * entry['kid']:.2f} [{1e3 * low:.2f}, {1e3 * high:.2f}]" in table
    assert "FID only where n >= 8" in table and "real (ceiling)" in table and "benign 0.900" in table
    assert "not judged" not in table
    # Cancer-only data: the conditioning rows name the judged classes and say which are not.
    cancer_only = {name: value for name, value in accuracy.items() if name != "benign"}
    report["conditioning"].update(real=cancer_only, generated={"model": cancer_only}, absent=["benign"])
    table = format_report(report)
    assert "benign 0.900" not in table and "malignant 0.800" in table
    assert "not judged (no real training patch): benign" in table
