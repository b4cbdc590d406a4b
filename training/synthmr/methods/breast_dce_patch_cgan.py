"""Class-conditional GAN for multiparametric breast DCE patches: the method of bundle ``breast_dce_patch_cgan``.

Haarburger et al., "Multiparametric Magnetic Resonance Image Synthesis using Generative Adversarial Networks"
(VCBM 2019): a DCGAN (Radford et al., arXiv 1511.06434) or a WGAN with weight clipping (Arjovsky et al., arXiv
1701.07875), conditioned on the class (healthy tissue, benign or malignant lesion), generates 64 x 64 axial
patches whose channels are T2 and the T1 dynamic series. Read top to bottom:

1. **Data** (§3, :func:`extract_patches`): 64 x 64 axial patches of benign and malignant lesions, centred on the
   centre of mass of each lesion's segmentation, and of healthy tissue, centred on random points inside the breast
   with no finding in a 32 x 32 neighbourhood; one channel per contrast and time point (T2 and the T1 dynamic
   series: pre and every post-contrast phase), cut at the same place in every channel so that the channels stay
   coherent. Intensities: the paper rescales every image to the fixed range [0, 1023]. Rescaling each T1 phase on
   its own would change the ratio between phases, i.e. the enhancement curve that tells malignant (wash-out) from
   benign (persistent) lesions, so here the five T1 phases of a case share one scale (:func:`scale_case`): their
   common maximum maps to 1 and 0 to -1 (the tanh range). T2, a separate acquisition, is scaled by its own
   maximum. :func:`central_washout` tells whether a patch's centre washes out.
2. **Networks and training** (§3): the generator and critic of :mod:`synthmr.nets.conditional_dcgan` (DCGAN with
   resize-convolutions instead of transposed convolutions, the one-hot class concatenated to ``z``), trained by
   :class:`synthmr.engines.LatentGanTrainer` with the loss, critic steps, weight clipping and optimiser of
   :func:`gan_settings` and :func:`gan_optimizer`.
3. **Evaluation** (§4, :func:`evaluate_patches`): generated patches are judged per class by the FID with T2, T1 pre
   and T1 post1 as the three channels (1000 real and 1000 generated patches), and by the leave-one-out
   1-nearest-neighbour accuracy of real against generated patches (:func:`synthmr.metrics.two_sample.nn_accuracy`,
   1000 vs 1000; 0.5 is ideal). The paper feeds the three contrasts to Inception-v3 as R, G and B. The project's
   default extractor (``domain``) takes one grey channel (an RGB input is averaged to grey, which would mix the
   contrasts into one image), so here the distance is computed per contrast, each of the three channels on its
   own through the extractor, and the class's value is the mean of the three (all three are reported). With
   fewer patches per class than twice the feature dimension the FID is biased by an amount that depends on n, so
   the held-out evaluation reports KID (Bińkowski et al., "Demystifying MMD GANs", arXiv 1801.01401) with
   bootstrap intervals, and FID only where it is reliable (``distance="kid"``); epoch selection ranks epochs by
   FID at a fixed n (``distance="fid"``). The 1-NN test runs on the patches themselves (all channels,
   flattened), which needs no extractor. Whether the class is carried (:func:`conditioning_accuracy`): a small
   classifier trained on real patches labels generated ones.
4. **Epoch selection** (:class:`LowestFidSelection`): the best epoch is the one with the lowest FID.
5. **Output** (:func:`write_patches`): patches written as images in the paper's range [0, 1023], with a datalist
   and a PNG grid; the evaluation table (:func:`format_report`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from synthmr.engines.base import unwrap
from synthmr.engines.selection import CheckpointSelection
from synthmr.errors import InputError, config_bool
from synthmr.io import Volume, read_image, save_datalist
from synthmr.metrics.extractors import describe_extractor, get_extractor
from synthmr.metrics.fid import extract_features, frechet_distance
from synthmr.metrics.kid import cubic_kernels, fid_is_reliable, mmd_with_interval
from synthmr.metrics.two_sample import nn_accuracy

CLASSES = ("healthy", "benign", "malignant")
CHANNELS = ("t2", "t1_pre", "t1_post1", "t1_post2", "t1_post3", "t1_post4")
# Channels that share one intensity scale per case (the dynamic series).
T1_SERIES = ("t1_pre", "t1_post1", "t1_post2", "t1_post3", "t1_post4")
# The FID's three channels, as the paper's R, G and B.
FID_CHANNELS = ("t2", "t1_pre", "t1_post1")
# Written intensities: the paper's fixed range [0, 1023] for the generator's [-1, 1].
OUTPUT_MAX = 1023.0
SPACING_MM = 1.4  # the breast phantom's in-plane spacing, given to the written patches


# Data (§3): patches and their intensities.
def scale_case(images: dict[str, np.ndarray], channels: Sequence[str] = CHANNELS) -> np.ndarray:
    """Stack a case's ``channels`` scaled to [-1, 1]: T1 phases on one shared scale, every other channel alone.

    Args:
        images: channel -> array (all the same shape).
        channels: the channel order.

    Returns:
        ``(len(channels), *shape)`` float32.
    """
    t1 = [name for name in channels if name in T1_SERIES]
    t1_max = max(float(np.max(images[name])) for name in t1) if t1 else 0.0
    stacked = []
    for name in channels:
        image = np.clip(np.asarray(images[name], dtype=np.float32), 0.0, None)  # magnitudes: noise below 0 clips
        peak = t1_max if name in T1_SERIES else float(image.max())
        stacked.append(2.0 * image / peak - 1.0 if peak > 0 else np.full_like(image, -1.0))
    return np.stack(stacked).astype(np.float32)


def _crop(stack: np.ndarray, centre: Sequence[int], size: int) -> np.ndarray:
    """``size`` x ``size`` window of ``stack`` ``(C, X, Y)`` centred on ``centre``, padded with -1 (no signal)."""
    half = size // 2
    out = np.full((stack.shape[0], size, size), -1.0, dtype=np.float32)
    x0, y0 = int(centre[0]) - half, int(centre[1]) - half
    xs, ys = max(x0, 0), max(y0, 0)
    xe, ye = min(x0 + size, stack.shape[1]), min(y0 + size, stack.shape[2])
    out[:, xs - x0 : xe - x0, ys - y0 : ye - y0] = stack[:, xs:xe, ys:ye]
    return out


def _axial(array: np.ndarray, z: int | None) -> np.ndarray:
    """A 2D image as it is; a 3D volume's axial slice ``z`` (the last axis is the slice axis)."""
    if array.ndim == 2:
        return array
    if array.ndim == 3 and z is not None:
        return array[:, :, z]
    raise InputError(f"expected 2D images or 3D volumes, got an array of shape {array.shape}")


def extract_patches(
    datalist: Sequence[dict],
    size: int = 64,
    healthy_per_case: int = 2,
    neighbourhood: int = 32,
    channels: Sequence[str] = CHANNELS,
    seed: int = 0,
) -> list[dict]:
    """Patches of every lesion and ``healthy_per_case`` healthy patches of every case.

    Args:
        datalist: items with a path per channel, ``lesion`` (one label per lesion, 1..k), ``breast`` (mask) and
            ``lesion_classes`` (k names, "benign" or "malignant", for labels 1..k), as the breast phantom writes
            them. 2D images, or 3D volumes (then the axial slice through each lesion's centre of mass, and for
            healthy patches a random slice holding breast).
        size: patch side in pixels.
        healthy_per_case: healthy patches drawn per case (fewer when the breast has no room for them).
        neighbourhood: side of the square around a healthy centre that must hold no lesion pixel.
        channels: image keys, in channel order.
        seed: of the healthy centres.

    Returns:
        one ``{"image": (len(channels), size, size) float32 in [-1, 1], "label": class index into CLASSES,
        "case_id": str}`` per patch.

    Raises:
        InputError: an item lacks a key, or its lesion classes do not match its lesion labels.
    """
    rng = np.random.default_rng(seed)
    patches: list[dict] = []
    for index, item in enumerate(datalist):
        case_id = str(item.get("case_id", index))
        missing = [key for key in (*channels, "lesion", "breast", "lesion_classes") if key not in item]
        if missing:
            raise InputError(f"datalist item {case_id}: lacks {', '.join(missing)} (needed for patch extraction)")
        images = {name: read_image(item[name]).array for name in channels}
        lesion = np.rint(read_image(item["lesion"]).array).astype(np.int64)
        breast = read_image(item["breast"]).array > 0
        classes = list(item["lesion_classes"])
        labels = [value for value in np.unique(lesion) if value > 0]
        if labels != list(range(1, len(classes) + 1)):
            raise InputError(
                f"datalist item {case_id}: lesion labels {labels} do not match its {len(classes)} lesion_classes"
            )
        unknown = sorted(set(classes) - set(CLASSES[1:]))
        if unknown:
            raise InputError(f"datalist item {case_id}: unknown lesion class(es) {unknown}; use benign or malignant")
        for value, name in enumerate(classes, start=1):
            centre = np.rint(np.argwhere(lesion == value).mean(axis=0)).astype(int)
            z = int(centre[2]) if lesion.ndim == 3 else None
            stack = scale_case({key: _axial(image, z) for key, image in images.items()}, channels)
            patches.append({"image": _crop(stack, centre[:2], size), "label": CLASSES.index(name), "case_id": case_id})
        patches += _healthy(images, lesion, breast, size, healthy_per_case, neighbourhood, channels, rng, case_id)
    return patches


def _healthy(images, lesion, breast, size, count, neighbourhood, channels, rng, case_id) -> list[dict]:
    """Healthy patches: centres inside the breast, the whole patch inside the image, no lesion nearby."""
    from scipy.ndimage import maximum_filter

    found = []
    for _ in range(count):
        z = None
        if lesion.ndim == 3:
            slices = np.flatnonzero(breast.any(axis=(0, 1)))
            if not len(slices):
                break
            z = int(rng.choice(slices))
        near_lesion = maximum_filter(_axial(lesion, z) > 0, size=neighbourhood, mode="constant")
        allowed = _axial(breast, z) & ~near_lesion
        half = size // 2
        border = np.zeros_like(allowed)
        border[half : allowed.shape[0] - half + 1, half : allowed.shape[1] - half + 1] = True
        candidates = np.argwhere(allowed & border)
        if not len(candidates):
            break
        centre = candidates[rng.integers(len(candidates))]
        stack = scale_case({key: _axial(image, z) for key, image in images.items()}, channels)
        found.append({"image": _crop(stack, centre, size), "label": CLASSES.index("healthy"), "case_id": case_id})
    return found


def central_washout(
    patches: np.ndarray, radius: int = 2, early: int = 2, late: int = 5, drop: float = 0.1
) -> np.ndarray:
    """Whether the centre of each patch washes out from the early to the late post-contrast phase.

    The kinetic curve types of the BI-RADS MRI lexicon: the delayed phase "washes out" when its signal falls by
    more than 10 % below the early post-contrast signal (within +-10 %: plateau; above: persistent). Malignant
    lesions typically wash out, benign ones persist. The signal is the mean over the central
    ``(2 radius + 1)^2`` window, on the magnitude scale (the patches' [-1, 1] mapped to [0, 1], 0 = no signal).

    Args:
        patches: ``(N, C, H, W)`` patches in [-1, 1], in :data:`CHANNELS` order by default.
        radius: half side of the central window.
        early, late: channel indices of the first and the last post-contrast phase.
        drop: the relative decrease that counts as wash-out.

    Returns:
        ``(N,)`` bool.
    """
    patches = np.asarray(patches)
    h, w = patches.shape[-2] // 2, patches.shape[-1] // 2
    centre = (patches[:, :, h - radius : h + radius + 1, w - radius : w + radius + 1].mean(axis=(2, 3)) + 1) / 2
    return centre[:, late] < (1 - drop) * centre[:, early]


# Networks and training (§3). The two GANs of the paper, as their original authors set them: DCGAN (Radford et
# al., arXiv 1511.06434: Adam, lr 2e-4, beta1 0.5) and WGAN with weight clipping (Arjovsky et al., arXiv 1701.07875,
# Algorithm 1: RMSProp, lr 5e-5, clip 0.01, 5 critic steps per generator step).
GAN_SETTINGS = {
    "dcgan": {"loss": "vanilla", "n_critic": 1, "clip_value": None, "learning_rate": 2e-4},
    "wgan": {"loss": "wasserstein", "n_critic": 5, "clip_value": 0.01, "learning_rate": 5e-5},
}


def gan_settings(gan_type: str) -> dict:
    """Loss mode, critic steps, clip value and learning rate of ``gan_type`` ("dcgan" or "wgan")."""
    if gan_type not in GAN_SETTINGS:
        raise InputError(f"gan_type must be one of {', '.join(GAN_SETTINGS)}, got {gan_type!r}")
    return dict(GAN_SETTINGS[gan_type])


def gan_optimizer(parameters, gan_type: str, learning_rate: float | None = None) -> torch.optim.Optimizer:
    """Adam(0.5, 0.999) for DCGAN, RMSProp for WGAN, at ``learning_rate`` or the method's default."""
    lr = gan_settings(gan_type)["learning_rate"] if learning_rate is None else learning_rate
    if gan_type == "dcgan":
        return torch.optim.Adam(parameters, lr=lr, betas=(0.5, 0.999))
    return torch.optim.RMSprop(parameters, lr=lr)


# Evaluation (§4): sampling, FID and 1-NN per class, wash-out of the generated lesions.
@torch.no_grad()  # not inference_mode: callers may train on the patches (conditioning accuracy)
def sample_patches(
    generator: torch.nn.Module, n_per_class: int, classes: Sequence[int] | None = None, seed: int = 0,
    batch_size: int = 256, channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_per_class`` patches of every class from ``generator`` in eval mode, reproducibly from ``seed``
    (``batch_size`` patches per pass, channels-last with ``channels_last``: the same patches up to rounding).

    Returns:
        patches ``(n, C, H, W)`` on the CPU in [-1, 1] and their class indices ``(n,)``, class by class.
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise InputError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    net = unwrap(generator)
    classes = list(range(net.n_classes)) if classes is None else list(classes)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    noise = torch.Generator().manual_seed(seed)
    labels = torch.tensor(classes).repeat_interleave(n_per_class)
    z = torch.randn(len(labels), net.latent_dim, generator=noise)
    if channels_last:
        from synthmr.inference import AutocastNetwork

        net = AutocastNetwork(net, device.type, None, channels_last=True)
    try:
        out = [
            net(z[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(labels), batch_size)
        ]
    finally:
        net.train(was_training)
    return torch.cat(out), labels


DISTANCES = ("fid", "kid")


def evaluate_patches(
    real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor,
    extractor: torch.nn.Module | str = "domain", n_max: int = 1000, seed: int = 0, distance: str = "fid",
    n_bootstrap: int = 1000,
) -> dict:
    """Feature distance (per contrast and their mean) and 1-NN accuracy, per class, of generated against real patches.

    Each class uses ``n = min(n_max, real count, generated count)`` patches of each set (drawn at random from
    ``seed``), so that the 1-NN chance level is 0.5. Each of :data:`FID_CHANNELS` goes through ``extractor`` on its
    own (as a grey image); the class's value is the mean over the three.

    ``distance="fid"`` (epoch selection): the FID at any ``n``. FID is biased upward by an amount that depends on
    ``n`` when ``n`` is not several times the feature dimension, so these values rank epochs evaluated at one fixed
    ``n`` but are not comparable across sizes.

    ``distance="kid"`` (held-out evaluation): KID (:func:`synthmr.metrics.kid.kernel_distance`, unbiased at any
    ``n``) per channel with its 95 % percentile-bootstrap interval, and the mean over the three channels with the
    interval *of the mean*: every bootstrap resample draws the same real and generated patch indices for all three
    channels (the channels of a patch stay together), the mean over channels of the resample's KIDs is one draw of
    the mean, and its percentiles give the interval (averaging the per-channel bounds would not). The per-channel
    intervals come from :func:`~synthmr.metrics.kid.kernel_distance` with the same ``seed``, so they rest on the
    very same resamples. FID (per channel and mean) is added only where it is reliable, ``n`` at least twice the
    feature dimension (:func:`~synthmr.metrics.kid.fid_is_reliable`), and omitted otherwise.

    Args:
        real, real_labels, fake, fake_labels: patches ``(N, C, H, W)`` in [-1, 1] and their class indices.
        extractor: the feature extractor or its name.
        n_max: the cap of patches per class and set.
        seed: of the subsets and of the bootstrap.
        distance: "fid" or "kid", see above.
        n_bootstrap: resamples of the KID intervals.

    Returns:
        ``{"extractor": str, "distance": str, "absent": [classes without real patches, left out], "classes":
        {name: {"n": int, "nn_accuracy": float,
        "nn_accuracy_real": float, "nn_accuracy_fake": float, "feature_dim": int, "fid_reliable": bool,
        ["fid": float, "fid_channels": {t2, t1_pre, t1_post1}], ["kid": float, "kid_interval": [low, high],
        "kid_channels": {t2, t1_pre, t1_post1: {"kid", "interval"}}, "n_bootstrap": int]}}}``; with "fid" the FID
        entries are always there, with "kid" the KID entries are and the FID entries only where ``fid_reliable``.
    """
    if distance not in DISTANCES:
        raise InputError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
    if isinstance(extractor, str):
        extractor = get_extractor(extractor)
    rng = np.random.default_rng(seed)
    report: dict = {"extractor": describe_extractor(extractor), "distance": distance, "classes": {}, "absent": []}
    for index, name in enumerate(CLASSES):
        real_c, fake_c = real[real_labels == index], fake[fake_labels == index]
        if not len(real_c):  # a dataset without the class (Duke's boxes mark cancers only): nothing to judge
            report["absent"].append(name)
            continue
        n = min(n_max, len(real_c), len(fake_c))
        if n < 2:
            raise InputError(f"class {name}: {len(real_c)} real and {len(fake_c)} generated patches; need >= 2 of each")
        real_c = real_c[torch.as_tensor(rng.permutation(len(real_c))[:n])]
        fake_c = fake_c[torch.as_tensor(rng.permutation(len(fake_c))[:n])]
        # [-1, 1] -> [0, 1], the extractors' range; a patch's channel is one grey image.
        features = {
            key: tuple(
                extract_features(((x[:, c : c + 1] + 1) / 2).clamp(0, 1), extractor)
                for x in (real_c, fake_c)
            )
            for key, c in ((key, CHANNELS.index(key)) for key in FID_CHANNELS)
        }
        feature_dim = int(features[FID_CHANNELS[0]][0].shape[1])
        reliable = fid_is_reliable(n, n, feature_dim)
        nn = nn_accuracy(real_c, fake_c)
        entry: dict = {
            "n": n,
            "nn_accuracy": nn["accuracy"],
            "nn_accuracy_real": nn["accuracy_real"],
            "nn_accuracy_fake": nn["accuracy_fake"],
            "feature_dim": feature_dim,
            "fid_reliable": reliable,
        }
        if distance == "kid":
            entry.update(_kid_of_channels(features, n_bootstrap, seed))
        if distance == "fid" or reliable:
            channels = {key: frechet_distance(a, b) for key, (a, b) in features.items()}
            entry["fid"] = float(np.mean(list(channels.values())))
            entry["fid_channels"] = channels
        report["classes"][name] = entry
    if not report["classes"]:
        raise InputError("no real patches of any class to evaluate against")
    return report


def _kid_of_channels(features: dict, n_bootstrap: int, seed: int) -> dict:
    """KID per channel (interval included) and of the mean over channels, its interval bootstrapped from the same
    resample indices in every channel (see :func:`evaluate_patches`). Each channel's kernels are computed once and
    serve both."""
    kernels = {
        key: cubic_kernels(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
        for key, (a, b) in features.items()
    }
    # The same seed for every channel and for the mean: mmd_with_interval draws the same resamples each time.
    channels = {key: mmd_with_interval(*k, n_bootstrap=n_bootstrap, seed=seed) for key, k in kernels.items()}
    out = {
        "kid": float(np.mean([value for value, _ in channels.values()])),
        "kid_interval": None,
        "kid_channels": {key: {"kid": value, "interval": interval} for key, (value, interval) in channels.items()},
        "n_bootstrap": n_bootstrap,
    }
    if n_bootstrap:
        # KID is linear in the kernel matrices: the mean over channels of a resample's KIDs is the resample's KID
        # under the channels' mean kernels.
        mean_kernels = (np.mean([k[i] for k in kernels.values()], axis=0) for i in range(3))
        out["kid_interval"] = mmd_with_interval(*mean_kernels, n_bootstrap=n_bootstrap, seed=seed)[1]
    return out


def evaluate_generator(
    generator: torch.nn.Module, real_patches: Sequence[dict], n_max: int = 1000,
    extractor: torch.nn.Module | str = "domain", seed: int = 0, distance: str = "fid", n_bootstrap: int = 1000,
) -> dict:
    """:func:`evaluate_patches` of ``n_max`` generated patches per class against ``real_patches``
    (items of :func:`extract_patches`)."""
    if not real_patches:
        raise InputError("no real patches to evaluate against")
    real = torch.as_tensor(np.stack([item["image"] for item in real_patches]))
    labels = torch.as_tensor([int(item["label"]) for item in real_patches])
    fake, fake_labels = sample_patches(generator, n_max, seed=seed)
    return evaluate_patches(real, labels, fake, fake_labels, extractor, n_max, seed, distance, n_bootstrap)


def washout_fractions(generator: torch.nn.Module, n_per_class: int = 100, seed: int = 0,
                      classes: Sequence[int] | None = None) -> dict[str, float]:
    """Per class (of ``classes``, default all), the fraction of generated patches whose central signal washes out
    from T1 post1 to post4 (:func:`central_washout`): when the conditioning carries the kinetics it follows the
    phantom's curve types, most malignant lesions washing out and few benign ones (Kuhl et al., Radiology 1999:
    type III in 57 % and 6 %)."""
    patches, labels = sample_patches(generator, n_per_class, classes, seed=seed)
    return washout_by_class(patches.numpy(), labels.numpy())


def washout_by_class(patches: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per class present in ``labels``, the fraction of ``patches`` (``(N, C, H, W)``, class indices ``labels``)
    whose centre washes out (:func:`central_washout`); the same figure for real patches as
    :func:`washout_fractions` gives for generated ones."""
    washes, labels = central_washout(patches), np.asarray(labels)
    return {name: float(washes[labels == index].mean()) for index, name in enumerate(CLASSES)
            if (labels == index).any()}


# Does the class carry through? A classifier of real patches labels generated ones.
def train_patch_classifier(
    train_patches: Sequence[dict], val_patches: Sequence[dict], epochs: int = 20, batch_size: int = 64,
    learning_rate: float = 1e-3, channels: Sequence[int] = (8, 16, 32, 32), seed: int = 0,
) -> dict:
    """A small classifier of the class (healthy, benign, malignant) trained on real patches.

    It learns the classes ``train_patches`` hold (at least two; Duke's boxes, for one, mark cancers only); the
    network keeps an output per class of :data:`CLASSES`, and every score here and in :func:`conditioning_accuracy`
    chooses among the learnt classes only (the others' logits are masked).

    MONAI's :class:`monai.networks.nets.Classifier` (residual units, strides 2, instance norm) is trained with
    cross-entropy and Adam on ``train_patches``, mirrored left-right at random as in training the GAN. After every
    epoch it is scored on ``val_patches`` by the balanced accuracy (the mean over classes of the per-class
    accuracy), ties broken by the lower validation cross-entropy; the weights of the best epoch are kept.
    Deterministic for a given ``seed``: the initialisation and the shuffling draw from ``seed`` (the global random
    state is left as it was), and everything runs on the CPU. 20 epochs of 870 patches: about 2 minutes on one
    CPU thread.

    Args:
        train_patches, val_patches: items of :func:`extract_patches` (``image`` ``(C, H, W)``, ``label``).
        epochs: training epochs.
        batch_size, learning_rate: of Adam.
        channels: the classifier's widths, one stride-2 stage each.
        seed: of the initialisation and the order of the patches.

    Returns:
        ``{"network": the classifier in eval mode, "best_epoch": int, "epochs": int, "validation_accuracy":
        {class: float}, "validation_balanced_accuracy": float, "validation_loss": float, "history": [balanced
        accuracy per epoch], "classes": [the classes learnt], "n_train": int, "n_validation": int}``.

    Raises:
        InputError: no patches, patches of different shapes, fewer than two classes in ``train_patches``, or
        ``val_patches`` without a class that ``train_patches`` hold or with one they do not.
    """
    from monai.networks.nets import Classifier

    for value, what in ((epochs, "epochs"), (batch_size, "batch_size")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{what} must be a positive integer, got {value!r}")
    x_train, y_train = _patch_arrays(train_patches, "train_patches")
    x_val, y_val = _patch_arrays(val_patches, "val_patches")
    classes = _learnable_classes(y_train)
    _check_classes(y_val, classes, "val_patches", need_all=True)
    if x_train.shape[1:] != x_val.shape[1:]:
        raise InputError(
            f"train and validation patches differ in shape: {tuple(x_train.shape[1:])} vs {tuple(x_val.shape[1:])}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = Classifier(
            in_shape=tuple(x_train.shape[1:]), classes=len(CLASSES), channels=tuple(channels),
            strides=(2,) * len(channels), num_res_units=1,
        )
        optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
        loss_function = torch.nn.CrossEntropyLoss()
        order = torch.Generator().manual_seed(seed)
        best, best_state, history = (-1.0, -np.inf), None, []
        for _ in range(epochs):
            network.train()
            permutation = torch.randperm(len(x_train), generator=order)
            for start in range(0, len(permutation), batch_size):
                rows = permutation[start : start + batch_size]
                batch = x_train[rows]
                flip = torch.rand(len(rows), generator=order) < 0.5  # left-right, the first spatial axis
                batch = torch.where(flip[:, None, None, None], batch.flip(2), batch)
                optimizer.zero_grad()
                loss_function(network(batch), y_train[rows]).backward()
                optimizer.step()
            per_class, val_loss = _accuracy_by_class(network, x_val, y_val, classes, with_loss=True)
            history.append(float(np.mean(list(per_class.values()))))
            if (history[-1], -val_loss) > best:
                best, best_epoch, best_per_class = (history[-1], -val_loss), len(history), per_class
                best_state = {key: value.clone() for key, value in network.state_dict().items()}
    network.load_state_dict(best_state)
    network.eval()
    return {
        "network": network,
        "best_epoch": best_epoch,
        "epochs": epochs,
        "validation_accuracy": best_per_class,
        "validation_balanced_accuracy": best[0],
        "validation_loss": -best[1],
        "history": history,
        "classes": classes,
        "n_train": len(x_train),
        "n_validation": len(x_val),
    }


def _patch_labels(patches: Sequence[dict], what: str) -> torch.Tensor:
    """Class indices ``(N,)`` of :func:`extract_patches` items, refused when there are none."""
    if not patches:
        raise InputError(f"{what}: no patches")
    return torch.as_tensor([int(item["label"]) for item in patches])


def _patch_arrays(patches: Sequence[dict], what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, C, H, W)`` float32 and labels ``(N,)`` of :func:`extract_patches` items."""
    labels = _patch_labels(patches, what)
    shapes = {np.shape(item["image"]) for item in patches}
    if len(shapes) > 1:
        raise InputError(f"{what}: patches of different shapes {sorted(shapes)}")
    images = torch.as_tensor(np.stack([np.asarray(item["image"], dtype=np.float32) for item in patches]))
    return images, labels


def _classes_of(labels: torch.Tensor) -> list[str]:
    return [name for index, name in enumerate(CLASSES) if (labels == index).any()]


def _learnable_classes(train_labels: torch.Tensor) -> list[str]:
    """The classes of the training patches, refused when fewer than two."""
    classes = _classes_of(train_labels)
    if len(classes) < 2:
        raise InputError(f"train_patches: only class {', '.join(classes)}; the classifier needs at least two classes")
    return classes


def _check_classes(labels: torch.Tensor, classes: Sequence[str], what: str, need_all: bool) -> None:
    """Refuse patches of a class the classifier did not learn, and (``need_all``) a learnt class without patches."""
    held = _classes_of(labels)
    unknown = [name for name in held if name not in classes]
    if unknown:
        raise InputError(f"{what}: class {', '.join(unknown)} has no training patch, so the classifier cannot label it")
    missing = [name for name in classes if name not in held]
    if need_all and missing:
        raise InputError(f"{what}: no patch of class {', '.join(missing)}, which the training patches hold")


@torch.no_grad()
def _accuracy_by_class(network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                       classes: Sequence[str], with_loss: bool = False):
    """Per class of ``labels``, the share of ``images`` of that class that ``network`` (put in eval mode) assigns to
    it, choosing among ``classes`` only; with ``with_loss`` also the mean cross-entropy."""
    network.eval()
    logits = torch.cat([network(images[i : i + 256]) for i in range(0, len(images), 256)])
    unlearnt = torch.as_tensor([name not in classes for name in CLASSES])
    predicted = logits.masked_fill(unlearnt, -torch.inf).argmax(dim=1)
    accuracy = {
        name: float((predicted[labels == index] == index).double().mean())
        for index, name in enumerate(CLASSES)
        if (labels == index).any()
    }
    if with_loss:
        return accuracy, float(torch.nn.functional.cross_entropy(logits, labels))
    return accuracy


def conditioning_accuracy(
    generators: torch.nn.Module | dict[str, torch.nn.Module], train_patches: Sequence[dict],
    val_patches: Sequence[dict], test_patches: Sequence[dict], n_per_class: int = 1000, seed: int = 0,
    epochs: int = 20,
) -> dict:
    """Whether generated patches carry their class: a classifier of real patches labels them.

    :func:`train_patch_classifier` learns the class from real ``train_patches`` (epoch chosen on ``val_patches``
    only); it then labels the real held-out ``test_patches``, whose per-class accuracy is the ceiling a generator
    can reach in this test, and ``n_per_class`` patches per class of every generator (:func:`sample_patches`,
    ``seed``) of each class the classifier learnt. A generator whose patches carry their class as the real ones do
    scores near the ceiling; one that ignores the class scores about 1/k on average over the k classes learnt (each
    class's patches are labelled like any other's). Classes without real training patches (Duke's benign lesions)
    are not judged and are listed as absent.

    Args:
        generators: a generator, or ``{name: generator}``; a single one is reported as "model".
        train_patches, val_patches, test_patches: items of :func:`extract_patches`.
        n_per_class: generated patches per class.
        seed: of the classifier and of the sampling.
        epochs: of the classifier.

    Returns:
        ``{"classifier": {"network", "best_epoch", "epochs", "validation_accuracy", "validation_balanced_accuracy",
        "validation_loss", "history", "classes", "n_train", "n_validation", "n_test"}, "real": {class: accuracy},
        "generated": {name: {class: accuracy}}, "absent": [classes not judged]}``; "network" names the classifier
        (the module is not kept); "real" holds the classes the test patches hold.
    """
    if isinstance(generators, torch.nn.Module):
        generators = {"model": generators}
    x_test, y_test = _patch_arrays(test_patches, "test_patches")
    learnable = _learnable_classes(_patch_labels(train_patches, "train_patches"))
    _check_classes(y_test, learnable, "test_patches", need_all=False)  # before the classifier's minutes of training
    classifier = train_patch_classifier(train_patches, val_patches, epochs=epochs, seed=seed)
    network = classifier.pop("network")
    classes = classifier["classes"]
    generated = {}
    for name, generator in generators.items():
        patches, labels = sample_patches(generator, n_per_class, [CLASSES.index(c) for c in classes], seed=seed)
        generated[name] = _accuracy_by_class(network, patches, labels, classes)
    return {
        "classifier": {
            "network": f"monai.networks.nets.Classifier, {sum(p.numel() for p in network.parameters())} parameters",
            **classifier,
            "n_test": len(x_test),
        },
        "real": _accuracy_by_class(network, x_test, y_test, classes),
        "generated": generated,
        "absent": [name for name in CLASSES if name not in classes],
    }


# Epoch selection: the lowest FID.
class LowestFidSelection(CheckpointSelection):
    """Every ``interval`` epochs (and after the last) evaluate the generator and keep the lowest-FID weights.

    The score of an epoch is the mean over classes of the per-class FID (the paper chooses its best epoch by the
    lowest FID). ``best_path`` receives the generator's CPU ``state_dict``; ``work_dir/selection.json`` the
    ranking; ``work_dir/epoch_NNNN/report.json`` each evaluation (see :class:`~synthmr.engines.CheckpointSelection`).

    Args:
        generator: the generator being trained (DDP-wrapped or not).
        real_patches: validation patches (items of :func:`extract_patches`).
        best_path: where the best weights go.
        work_dir: where the reports go.
        interval: epochs between evaluations.
        n_max: generated patches per class (and the cap of real ones).
        extractor, extractor_weights: the FID feature extractor (see :func:`synthmr.metrics.extractors.get_extractor`).
    """

    score_name = "fid"

    def __init__(
        self, generator: torch.nn.Module, real_patches: Sequence[dict], best_path: str | os.PathLike,
        work_dir: str | os.PathLike, interval: int = 1, n_max: int = 1000, extractor: str = "domain",
        extractor_weights: str | None = None,
    ) -> None:
        super().__init__(generator, work_dir, best_path, interval)
        self.real_patches = real_patches
        self.n_max = n_max
        self.extractor_name = extractor
        self.extractor_weights = extractor_weights
        self.history: dict[str, float] = {}

    def evaluate(self, engine, generator: torch.nn.Module, folder: Path) -> dict[str, float]:
        extractor = get_extractor(self.extractor_name, self.extractor_weights)
        report = evaluate_generator(generator, self.real_patches, self.n_max, extractor, seed=engine.state.epoch)
        (folder / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        self.history[folder.name] = float(np.mean([entry["fid"] for entry in report["classes"].values()]))
        return {"mean per-class fid": self.history[folder.name]}

    def criterion(self) -> dict:
        return {"criterion": "mean over classes of the per-class FID"}

    def ranking(self) -> list[tuple[str, float]]:
        return sorted(self.history.items(), key=lambda item: item[1])


# Output: generated patches as images, and the evaluation table.
def write_patches(
    generator: torch.nn.Module, output_dir: str | os.PathLike, n_per_class: int = 8, seed: int = 0,
    overwrite: bool = False, grid_columns: int = 8, batch_size: int = 256, channels_last: bool = False,
    provenance: Mapping | None = None,
) -> list[dict]:
    """Generate ``n_per_class`` patches per class and write them with a datalist and a PNG grid; every channel is
    marked synthetic, with a sidecar recording ``provenance`` (:func:`synthmr.provenance.bundle_identity`) and seed.

    Writes ``output_dir/<class>_<i>/<channel>.nii.gz`` for every channel of :data:`CHANNELS` (intensities in the
    paper's range [0, 1023], in-plane spacing 1.4 mm), ``output_dir/datalist.json`` (``"testing"``: one item per
    patch with ``case_id``, ``class`` and a path per channel) and ``output_dir/grid.png`` (per patch T1 post1, the
    subtraction post1 - pre and T2, as in the paper's figure 1).

    Raises:
        InputError: an output exists and ``overwrite`` is false (nothing is written then).
    """
    from synthmr.io._atomic import check_destination
    from synthmr.provenance import record, sidecar_path

    output_dir, overwrite = Path(output_dir), config_bool(overwrite, "overwrite")
    patches, labels = sample_patches(generator, n_per_class, seed=seed, batch_size=batch_size,
                                     channels_last=channels_last)
    items = []
    for index, (patch, label) in enumerate(zip(patches.numpy(), labels.tolist())):
        case_id = f"{CLASSES[label]}_{index % n_per_class:04d}"
        items.append({"case_id": case_id, "class": CLASSES[label], "patch": patch})
    targets = [output_dir / "datalist.json", output_dir / "grid.png"]
    targets += [output_dir / item["case_id"] / f"{key}.nii.gz" for item in items for key in CHANNELS]
    targets += [sidecar_path(target) for target in targets[2:]]
    if not overwrite:
        for target in targets:
            check_destination(target, overwrite, what="file")
    datalist = []
    made = record(provenance or {}, seed=seed, precision="float32", n_per_class=n_per_class)
    for item in items:
        paths = write_patch(item["patch"], output_dir / item["case_id"], {**made, "class": item["class"]}, overwrite)
        datalist.append({"case_id": item["case_id"], "class": item["class"],
                         **{key: str(path.absolute()) for key, path in paths.items()}})
    # Paths inside output_dir are stored relative to the datalist (save_datalist), so the folder can move.
    save_datalist({"testing": datalist}, output_dir / "datalist.json", overwrite=overwrite)
    save_grid(patches, labels, output_dir / "grid.png", columns=grid_columns)
    return datalist


def write_patch(patch: np.ndarray, folder: Path, content: Mapping, overwrite: bool = False) -> dict[str, Path]:
    """One generated patch ``(6, H, W)`` in [-1, 1] as ``folder/<channel>.nii.gz`` per channel of :data:`CHANNELS`,
    in the paper's intensity range [0, 1023] at the phantom's in-plane spacing, marked synthetic with ``content``
    (:func:`synthmr.provenance.record`) in each channel's sidecar; channel -> path."""
    from synthmr.provenance import write_synthetic

    paths = {}
    for channel, key in enumerate(CHANNELS):
        image = ((patch[channel] + 1) / 2 * OUTPUT_MAX).astype(np.float32)
        volume = Volume(image, spacing=(SPACING_MM, SPACING_MM), origin=(0.0, 0.0), direction=np.eye(2))
        paths[key] = write_synthetic(volume, folder / f"{key}.nii.gz", {**content, "output": key}, overwrite=overwrite)
    return paths


def generate_patch_set(
    generator: torch.nn.Module, n: int, out_dir: str | os.PathLike, seed: int = 0, overwrite: bool = False,
    provenance: Mapping | None = None, block: int = 16, channels_last: bool = False, progress=None,
) -> list[dict]:
    """``synthmr generate``'s set: ``n`` patches, patch ``i`` of class ``i % n_classes`` (balanced classes) from
    noise drawn from ``(seed, i)`` alone, as ``out_dir/case_NNNNN/<channel>.nii.gz`` (as :func:`write_patches`)
    with ``datalist.json`` (``"training"``: ``case_id``, ``class``, a path per channel) and ``manifest.json``;
    ``block`` patches per forward pass (channels-last with ``channels_last``), shared out over torchrun ranks and
    resumable (:func:`synthmr.generation.write_case_set`)."""
    from synthmr.evaluation.synthesizers import weights_digest
    from synthmr.generation import case_id, case_seed, write_case_set
    from synthmr.inference import AutocastNetwork
    from synthmr.provenance import record

    net = unwrap(generator)
    device = next(net.parameters()).device
    net.eval()
    forward = AutocastNetwork(net, device.type, None, channels_last=channels_last)

    def make(indices: Sequence[int], folder: Path) -> list[dict]:
        z = torch.stack([torch.randn(net.latent_dim, generator=torch.Generator().manual_seed(case_seed(seed, i)))
                         for i in indices])
        labels = torch.tensor([i % net.n_classes for i in indices])
        with torch.inference_mode():
            patches = forward(z.to(device), labels.to(device)).float().cpu().numpy()
        items = []
        for i, patch, label in zip(indices, patches, labels.tolist()):
            write_patch(patch, folder / case_id(i), record(provenance or {}, seed=case_seed(seed, i),
                                                           precision="float32", **{"class": CLASSES[label]}))
            items.append({"case_id": case_id(i), "class": CLASSES[label],
                          **{key: f"{case_id(i)}/{key}.nii.gz" for key in CHANNELS}, "seed": case_seed(seed, i)})
        return items

    identity = {**(provenance or {}), "network": type(net).__name__, "weights_sha256": weights_digest(net)}
    return write_case_set(
        make, n, out_dir, seed, block=block, overwrite=overwrite, file_keys=CHANNELS, identity=identity,
        description=f"{n} synthetic breast DCE patches, classes in turn, generated by synthmr (breast_dce_patch_cgan)",
        progress=progress,
    )


def save_grid(patches: torch.Tensor, labels: torch.Tensor, path: str | os.PathLike, columns: int = 8) -> Path:
    """A PNG: one row of (T1 post1 | subtraction post1 - pre | T2) triplets per class and ``columns`` patches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [c for c in range(len(CLASSES)) if (labels == c).any()]
    columns = max(1, min(columns, max(int((labels == c).sum()) for c in present)))
    size = (1.2 * 3 * columns, 1.4 * len(present))
    figure, axes = plt.subplots(len(present), 3 * columns, figsize=size, squeeze=False)
    post1, pre, t2 = (CHANNELS.index(key) for key in ("t1_post1", "t1_pre", "t2"))
    for row, c in enumerate(present):
        chosen = patches[labels == c][:columns].numpy()
        for column in range(len(chosen)):
            views = (chosen[column, post1], chosen[column, post1] - chosen[column, pre], chosen[column, t2])
            # The subtraction is shown from 0 (no enhancement) up: enhancement is what it is for.
            for offset, (view, title, limits) in enumerate(
                zip(views, ("post1", "sub", "T2"), ((-1, 1), (0, 1.5), (-1, 1)))
            ):
                axis = axes[row, 3 * column + offset]
                axis.imshow(view.T, cmap="gray", vmin=limits[0], vmax=limits[1], origin="lower")
                axis.set_title(f"{CLASSES[c]} {title}" if column == 0 else title, fontsize=6)
        for axis in axes[row]:
            axis.axis("off")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def format_report(report: dict) -> str:
    """The evaluation as a table: per class and generator KID x 1e3 with its 95 % interval (mean over T2, T1 pre and
    T1 post1, then per channel), FID where reliable, 1-NN accuracies; the wash-out shares and the conditioning
    accuracy. A report of ``distance="fid"`` shows its FID in the KID columns' place."""
    model_entry = next(iter(report["model"]["classes"].values()))
    kid = "kid" in model_entry
    if kid:
        header = f"{'KID x1e3 [95% CI]':>28} {'KID t2/pre/post1':>24} {'FID':>7}"
    else:
        header = f"{'FID':>8} {'FID t2/pre/post1':>24}"
    lines = [f"{'class':<10} {'generator':<10} {'n':>5} {header} {'1-NN':>6} {'real':>6} {'fake':>6}"]
    for name in report["model"]["classes"]:  # the classes the real patches hold
        for model in ("model", "untrained"):
            if model not in report:
                continue
            entry = report[model]["classes"][name]
            if kid:
                low, high = entry["kid_interval"] or (float("nan"), float("nan"))
                value = f"{1e3 * entry['kid']:.2f} [{1e3 * low:.2f}, {1e3 * high:.2f}]"
                channels = "/".join(f"{1e3 * entry['kid_channels'][key]['kid']:.2f}" for key in FID_CHANNELS)
                fid = f"{entry['fid']:.2f}" if "fid" in entry else "-"
                cells = f"{value:>28} {channels:>24} {fid:>7}"
            else:
                channels = "/".join(f"{entry['fid_channels'][key]:.1f}" for key in FID_CHANNELS)
                cells = f"{entry['fid']:>8.2f} {channels:>24}"
            lines.append(
                f"{name:<10} {model:<10} {entry['n']:>5} {cells} "
                f"{entry['nn_accuracy']:>6.3f} {entry['nn_accuracy_real']:>6.3f} {entry['nn_accuracy_fake']:>6.3f}"
            )
    if kid:
        dim = model_entry["feature_dim"]
        lines.append(f"FID only where n >= {2 * dim} (twice the feature dimension {dim}); '-': not reliable, omitted")
    for key, whose in (("washout_real", "real"), ("washout", "generated")):
        if key in report:
            lines.append(f"central wash-out post1 -> post4 (fraction of {whose} patches): "
                         + ", ".join(f"{name} {value:.2f}" for name, value in report[key].items()))
    if "conditioning" in report:
        conditioning = report["conditioning"]
        classifier = conditioning["classifier"]
        lines.append(
            f"conditioning accuracy (classifier trained on {classifier['n_train']} real patches, epoch "
            f"{classifier['best_epoch']}/{classifier['epochs']} chosen on {classifier['n_validation']} validation "
            "patches; share of each class's patches labelled as that class):"
        )
        rows = [("real (ceiling)", conditioning["real"])] + list(conditioning["generated"].items())
        for who, values in rows:
            lines.append(f"  {who:<15} " + ", ".join(f"{name} {value:.3f}" for name, value in values.items()))
        if conditioning.get("absent"):
            lines.append(f"  not judged (no real training patch): {', '.join(conditioning['absent'])}")
    lines.append(f"extractor: {report['model']['extractor']}")
    return "\n".join(lines)


def save_report(report: dict, path: str | os.PathLike, overwrite: bool = True) -> str:
    """Write ``report`` as JSON to ``path`` (folders created) and return its :func:`format_report` table."""
    from synthmr.io._atomic import check_destination

    path = Path(path)
    check_destination(path, overwrite, what="file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return format_report(report)
