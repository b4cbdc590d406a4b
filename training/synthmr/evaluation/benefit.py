"""Does synthetic data raise segmentation Dice? A paired, resumable experiment that knows no synthesis method.

Several papers report that adding GAN-synthesised images to a segmentation training set raises Dice. This module
measures such a claim the same way for every method: it trains a fixed segmentation recipe on real subsets with
and without synthetic items and compares the test Dice, case by case. It knows no method and no bundle; a method
takes part through one callable, ``synthesize(real_subset, n, out_dir, seed)``, that writes ``n`` new labelled
images under ``out_dir`` and returns their items ``{"case_id", "image", "label"}``.

What :func:`run_benefit` does, and why:

- **Arms.** An arm is ``(n_real, share)``: ``n_real`` real training items plus
  ``synthetic_count(n_real, share) = floor(share * n_real + 0.5)`` synthetic ones (half rounds up: share 0.5 of 3
  real items adds 2). The share is relative to the real count, so share 1 doubles the training set at every
  ``n_real``. Share 0 is the real-only baseline; it is always run (added when ``shares`` lacks it) and never calls
  ``synthesize``. A share whose count rounds to 0 trains on the real items only.
- **Pairing.** Each arm is trained once per seed. The real subset of a ``(n_real, seed)`` is drawn by
  :func:`real_subset`: the pool, sorted by ``case_id`` (so the order it was given in does not matter), permuted
  with that seed, first ``n_real`` items. Every share at that ``(n_real, seed)`` gets the same real subset and
  the same network initialisation and crop sequence seed, so an arm differs from its baseline only by the
  synthetic items; the subsets are nested (the 4 items of seed 0 are among its 8). Synthetic items come from
  ``synthesize(real_subset, n, work_dir/synthetic/<run>, seed)``, ``<run>`` being :func:`run_name`.
- **Training** (:func:`train_segmenter`): MONAI's DynUNet (2D or 3D; one input channel per image file of an
  item, several when its ``image`` is a list of sequences; one output channel per label plus background),
  DiceCELoss on the softmax against the one-hot label map, Adam, a fixed number of
  *iterations* rather than epochs, so that arms of every size get the same optimisation. Each iteration draws a
  batch of items (epoch by epoch in a seeded random order) and one random ``roi_size`` crop per item, centred on
  a foreground voxel with probability ``foreground_ratio`` (RandCropByPosNegLabeld), so that small structures are
  seen. Intensities are scaled per image (and channel) by its own robust percentiles to [0, 1]
  (ScaleIntensityRangePercentiles),
  so images from any scanner or synthesizer share one range. torch, numpy and MONAI are seeded with the run's
  seed (``monai.utils.set_determinism``): a run is reproducible on the same device and library versions.
- **Testing** (:func:`case_metrics`): sliding-window inference (Gaussian-weighted windows of ``roi_size``) on
  every item of every test domain; per case and label the Dice and the 95th percentile Hausdorff distance in mm
  (the image's voxel spacing). Edge cases: a label absent from both prediction and ground truth has Dice 1 (a
  correct "nothing here"); present in only one of them, Dice 0. HD95 needs a surface in both: when either is
  empty it is NaN (``null`` in JSON) and that case is left out of the HD95 mean, which is why the report counts
  the excluded cases: a model that misses a structure loses Dice but not HD95.
- **Statistics** (report): per test domain, arm and label, each case's Dice (and HD95) is first averaged over
  the seeds (HD95 over the seeds where it is defined; a case whose HD95 is undefined in every seed is excluded),
  then averaged over cases. Its 95 % confidence interval is a percentile bootstrap over test cases
  (:func:`bootstrap_interval`, ``n_bootstrap`` resamples, a fixed seed), so it reflects the test-set sampling;
  the seed-to-seed training variance is averaged out per case, not added. Each share > 0 is compared with
  share 0 at the same ``n_real``: the mean of the per-case (seed-averaged) Dice difference with its bootstrap
  interval, and the two-sided Wilcoxon signed-rank p-value of those differences (``scipy.stats.wilcoxon``, zero
  differences dropped; p = 1 when all differences are 0). ``significant_gain`` is true when the interval's lower
  bound is above 0 *and* p < 0.05, ``significant_loss`` when its upper bound is below 0 and p < 0.05. With fewer
  than 6 test cases no two-sided Wilcoxon p reaches 0.05, and an interval needs at least 2 cases (otherwise its
  bounds are ``null``). These count test-set sampling, not training noise; for that, each comparison also gives
  ``per_seed_difference`` (per seed, the mean Dice difference over test cases: the same seed trains both arms on
  the same real subset) and ``seeds_agreeing``, how many of those have the sign of the per-case mean difference.
- **Resuming.** Each finished run writes ``work_dir/runs/<run>.json`` (its recipe and per-case scores) atomically.
  A later call with the same ``work_dir`` reads finished runs instead of training again, after checking that the
  recorded recipe (settings, spatial dims, labels, the real subset's and the test cases' ids and image names, and
  for runs with synthetic items the synthesizer's description, :func:`describe_synthesizer`) equals the current one;
  a run made otherwise is refused with :class:`InputError` naming its file. Real-only runs record no synthesizer, so
  experiments that differ only in it can share them. An unfinished run's synthetic folder is removed and made again.
- **Outputs.** ``work_dir/report.json`` (also returned) and ``work_dir/benefit.png``: per test domain and label,
  mean Dice against ``n_real``, one line per share, the bootstrap interval as error bars. Both are rewritten on
  every call, from the run files.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.networks.nets import DynUNet
from monai.networks.utils import one_hot
from monai.transforms import Compose, RandCropByPosNegLabeld, ScaleIntensityRangePercentiles, SpatialPadd
from monai.utils import convert_to_numpy, convert_to_tensor, set_determinism
from scipy.stats import wilcoxon

from synthmr.errors import InputError
from synthmr.io import read_image
from synthmr.io._atomic import atomic_output, write_json

# What every training, test and synthetic item holds.
ITEM_KEYS = ("case_id", "image", "label")
# Level of the confidence intervals and of the Wilcoxon test behind significant_gain and significant_loss.
CONFIDENCE = 0.95
ALPHA = 0.05
# The rule of _paired, as reports and head-to-head comparisons state it.
SIGNIFICANCE = (f"interval excluding 0 (above: gain, or a better; below: loss, or b better) and two-sided Wilcoxon "
                f"signed-rank p < {ALPHA}")

Synthesize = Callable[[Sequence[dict], int, Path, int], list[dict]]
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class SegmentationSettings:
    """The segmentation recipe every arm is trained and tested with (the defaults suit a CPU and 2D images).

    Args:
        iterations: optimiser steps per run, the same for every arm whatever its size.
        batch_size: crops per step; also the windows per batch of the sliding-window inference.
        roi_size: crop and inference window size, one int for every axis or one per axis; each side must be a
            multiple of the network's total downsampling, ``2 ** (len(filters) - 1)``. Smaller images are padded.
        learning_rate: Adam's step size.
        filters: DynUNet feature channels per level, finest first; their number sets the depth (at least 3).
        foreground_ratio: probability that a crop is centred on a labelled voxel (the rest on background).
        percentiles: the lower and upper intensity percentiles each image is scaled from to [0, 1] (and clipped).
        overlap: overlap of neighbouring windows in the sliding-window inference.
    """

    iterations: int = 300
    batch_size: int = 8
    roi_size: int | tuple[int, ...] = 64
    learning_rate: float = 1e-3
    filters: tuple[int, ...] = (16, 32, 64, 128)
    foreground_ratio: float = 0.5
    percentiles: tuple[float, float] = (0.5, 99.5)
    overlap: float = 0.25

    def roi(self, spatial_dims: int) -> tuple[int, ...]:
        """The crop and window size per axis, ``roi_size`` broadcast to ``spatial_dims`` axes."""
        roi = self.roi_size
        return (int(roi),) * spatial_dims if isinstance(roi, (int, np.integer)) else tuple(int(side) for side in roi)

    def check(self, spatial_dims: int) -> None:
        """Raise :class:`InputError` naming the setting that cannot work."""
        def positive_int(value) -> bool:
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0

        for name in ("iterations", "batch_size"):
            if not positive_int(getattr(self, name)):
                raise InputError(f"settings.{name} must be a positive integer; got {getattr(self, name)!r}")
        if len(self.filters) < 3 or not all(positive_int(f) for f in self.filters):
            raise InputError(f"settings.filters must be at least 3 positive integers; got {self.filters!r}")
        roi = self.roi(spatial_dims)
        step = 2 ** (len(self.filters) - 1)
        if len(roi) != spatial_dims or not all(positive_int(side) and side % step == 0 for side in roi):
            raise InputError(
                f"settings.roi_size must give {spatial_dims} sides, each a positive multiple of {step} (the "
                f"downsampling of {len(self.filters)} levels); got {self.roi_size!r}"
            )
        if not self.learning_rate > 0:
            raise InputError(f"settings.learning_rate must be positive; got {self.learning_rate!r}")
        if not 0 <= self.foreground_ratio <= 1:
            raise InputError(f"settings.foreground_ratio must lie in [0, 1]; got {self.foreground_ratio!r}")
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise InputError(
                f"settings.percentiles must be (low, high) with 0 <= low < high <= 100; got {self.percentiles!r}"
            )
        if not 0 <= self.overlap < 1:
            raise InputError(f"settings.overlap must lie in [0, 1); got {self.overlap!r}")

    def as_dict(self, spatial_dims: int) -> dict:
        """The settings as JSON values, ``roi_size`` spelled out per axis: what run files record and compare."""
        settings = asdict(self)
        settings["roi_size"] = list(self.roi(spatial_dims))
        return json.loads(json.dumps(settings))


@dataclass
class _Case:
    """One item loaded for training or testing: the scaled image and the label map as class indices."""

    case_id: str
    image: np.ndarray  # (channels, *spatial) float32 in [0, 1]
    label: np.ndarray  # (1, *spatial) class index: 0 background, i the i-th label of `labels`
    spacing: tuple[float, ...]  # mm per array axis


def synthetic_count(n_real: int, share: float) -> int:
    """Synthetic items an arm adds: ``share * n_real`` rounded half up (share 0.5 of 3 -> 2)."""
    return math.floor(share * n_real + 0.5)


def run_name(n_real: int, share: float, seed: int) -> str:
    """The name of a run's files: ``<n_real>_<share>_<seed>``, e.g. ``8_0.5_1``."""
    return f"{n_real}_{share:g}_{seed}"


def image_name(item: Mapping) -> str:
    """The last two parts of an item's image path (``case_0003/t1_pre.nii.gz``; channels joined by ``+``): what a
    recipe records of the images, enough to tell one image key from another without tying the runs to where the
    data lie."""
    return "+".join("/".join(Path(str(path)).parts[-2:]) for path in _image_paths(item))


def _image_paths(item: Mapping) -> list:
    """An item's image files, one per channel: ``image`` is one path or a list of them (several sequences)."""
    image = item["image"]
    return list(image) if isinstance(image, (list, tuple)) else [image]


def describe_synthesizer(synthesize: Synthesize | None) -> dict | None:
    """What run files record of the synthesizer: its ``describe()`` when it has one (the weights it runs, say), else
    its qualified name; a run made by another synthesizer is then refused on resuming."""
    if synthesize is None:
        return None
    describe = getattr(synthesize, "describe", None)
    if callable(describe):
        return json.loads(json.dumps(describe()))
    kind = synthesize if callable(synthesize) and hasattr(synthesize, "__qualname__") else type(synthesize)
    return {"callable": f"{getattr(kind, '__module__', '?')}.{kind.__qualname__}"}


def real_subset(pool: Sequence[Mapping], n_real: int, seed: int) -> list[dict]:
    """The ``n_real`` real items of seed ``seed``: the pool sorted by case id, permuted with ``seed``, the first
    ``n_real``. The same for every share (paired arms), nested across ``n_real``, whatever the pool's order."""
    ordered = sorted(pool, key=lambda item: str(item["case_id"]))
    order = np.random.default_rng(seed).permutation(len(ordered))
    return [dict(ordered[index]) for index in order[:n_real]]


def bootstrap_interval(
    values, n_resamples: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (resampling them with replacement), or None for
    fewer than 2 values.

    Written out rather than taken from ``scipy.stats.bootstrap``: the percentile interval of a mean is three lines,
    and scipy's way of seeding changed in 1.15 while the project supports older versions. The fixed seed makes
    every interval reproducible, and gives samples of one size the same resamples.
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None
    resamples = np.random.default_rng(seed).integers(0, len(values), size=(n_resamples, len(values)))
    means = values[resamples].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def build_network(spatial_dims: int, n_classes: int, settings: SegmentationSettings, in_channels: int = 1) -> DynUNet:
    """A DynUNet with ``len(settings.filters)`` levels, 3-voxel kernels, stride-2 downsampling below the first."""
    depth = len(settings.filters)
    strides = [1] + [2] * (depth - 1)
    return DynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=n_classes,
        kernel_size=[3] * depth,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=list(settings.filters),
        norm_name="instance",
    )


def train_segmenter(
    cases: Sequence[_Case], n_classes: int, spatial_dims: int, settings: SegmentationSettings, seed: int,
    device: torch.device,
) -> tuple[torch.nn.Module, float]:
    """Train a network on ``cases`` for ``settings.iterations`` steps (module docstring, *Training*).

    Returns:
        the trained network (on ``device``) and the mean loss of the last tenth of the steps.
    """
    roi = settings.roi(spatial_dims)
    keys = ("image", "label")
    crops = Compose([
        SpatialPadd(keys=keys, spatial_size=roi),
        RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=roi, pos=settings.foreground_ratio,
            neg=1 - settings.foreground_ratio, num_samples=1,
        ),
    ])
    data = [{"image": case.image, "label": case.label} for case in cases]
    set_determinism(seed)
    try:
        network = build_network(spatial_dims, n_classes, settings, in_channels=cases[0].image.shape[0]).to(device)
        # Epoch after epoch in a seeded order until iterations * batch_size crops are drawn: every item is seen
        # equally often, however few there are.
        sampler = torch.utils.data.RandomSampler(
            data, num_samples=settings.iterations * settings.batch_size,
            generator=torch.Generator().manual_seed(seed),
        )
        loader = DataLoader(Dataset(data, crops), batch_size=settings.batch_size, sampler=sampler, num_workers=0)
        loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
        optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
        network.train()
        losses = []
        with warnings.catch_warnings():
            # An item without foreground gets background crops only; MONAI warns about that on every draw.
            warnings.filterwarnings("ignore", message=".*unable to generate class balanced samples.*")
            for batch in loader:
                images = convert_to_tensor(batch["image"], device=device, track_meta=False)
                labels = convert_to_tensor(batch["label"], device=device, track_meta=False)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_function(network(images), labels)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    finally:
        set_determinism(None)  # restores the cuDNN flags it changed
    return network, float(np.mean(losses[-max(1, len(losses) // 10):]))


@torch.no_grad()
def segment(
    network: torch.nn.Module, image: np.ndarray, settings: SegmentationSettings, device: torch.device
) -> np.ndarray:
    """The class-index map that ``network`` predicts for a scaled ``(channels, *spatial)`` image (sliding windows)."""
    network.eval()
    inputs = torch.as_tensor(image[None], device=device)
    logits = sliding_window_inference(
        inputs, settings.roi(image.ndim - 1), settings.batch_size, network, overlap=settings.overlap,
        mode="gaussian",
    )
    return convert_to_numpy(logits.argmax(dim=1))  # (1, *spatial), like _Case.label


def case_metrics(
    predicted: np.ndarray,
    truth: np.ndarray,
    label_names: Sequence[str],
    spacing: Sequence[float],
    regions: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Dice and HD95 (mm) per label of one case, from ``(1, *spatial)`` class-index maps (module docstring,
    *Testing*, for empty labels): ``{name: {"dice", "hd95"}}``, HD95 NaN where either map lacks the label. With
    ``regions`` (name -> label names), per region instead: the union of its labels' classes in each map (BraTS's
    whole tumour, tumour core and enhancing tumour over the classes necrosis, edema, enhancing)."""
    index_of = {name: index for index, name in enumerate(label_names, start=1)}
    scored = regions if regions else {name: [name] for name in label_names}
    predicted, truth = torch.as_tensor(predicted), torch.as_tensor(truth)
    scores = {}
    for name, members in scored.items():
        classes = torch.tensor([index_of[member] for member in members])
        masks = [torch.isin(array, classes)[None].long() for array in (predicted, truth)]  # (1, 1, *spatial)
        region_predicted, region_truth = (one_hot(mask, 2) for mask in masks)
        dice = compute_dice(region_predicted, region_truth, include_background=False, ignore_empty=False)[0, 0]
        hd95 = math.nan
        if masks[0].any() and masks[1].any():
            with warnings.catch_warnings():  # MONAI 1.5+ warns about an argument its own code passes
                warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
                hd95 = compute_hausdorff_distance(
                    region_predicted[:, 1:], region_truth[:, 1:], include_background=True, percentile=95,
                    spacing=list(spacing),
                )[0, 0].item()
        scores[name] = {"dice": dice.item(), "hd95": hd95}
    return scores


def run_benefit(
    real: Sequence[Mapping],
    test: Mapping[str, Sequence[Mapping]],
    synthesize: Synthesize | None,
    labels: Mapping[str, int | Sequence[int]],
    work_dir: str | Path,
    n_real: Sequence[int] = (4, 8, 16),
    shares: Sequence[float] = (0.0, 0.5, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    spatial_dims: int = 2,
    settings: SegmentationSettings | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    n_bootstrap: int = 2000,
    bootstrap_seed: int = 0,
    regions: Mapping[str, Sequence[str]] | None = None,
    background: Sequence[int] = (),
) -> dict:
    """Train and test every arm with every seed, resuming finished runs, and report the benefit of synthetic data.

    Args:
        real: the pool of real training items ``{"case_id", "image", "label"}`` (image and label map paths; an
            image of several channels, several sequences say, is a list of paths on the label map's grid).
        test: test domains, name -> items of the same form; each domain is reported on its own.
        synthesize: ``synthesize(real_subset, n, out_dir, seed) -> n items`` written under ``out_dir``; may be
            None when every share is 0.
        labels: label name -> its value in the label maps, or the list of values it covers (a map numbering its
            lesions 1..k: ``{"lesion": [1, 2, 3]}``); 0 is the background and needs no name. Every other value
            found in a label map is an error (unless listed in ``background``).
        work_dir: where runs, synthetic items, ``report.json`` and ``benefit.png`` go; reusing it resumes.
        n_real: real training set sizes.
        shares: synthetic items added per real item (0 is added when missing).
        seeds: one run per arm and seed; each seed draws its own real subsets.
        spatial_dims: 2 or 3; a 3D file with one slice counts as 2D.
        settings: the segmentation recipe (:class:`SegmentationSettings` defaults when None).
        device: where to train; CUDA when available, else the CPU.
        progress: called as ``progress(done, total, description)`` after each run.
        n_bootstrap: bootstrap resamples of each confidence interval.
        bootstrap_seed: their seed.
        regions: optional region name -> the label names it unites; the network still learns ``labels`` as
            classes, and Dice and HD95 are scored per region instead of per label (BraTS: whole tumour =
            necrosis + edema + enhancing, tumour core = necrosis + enhancing, enhancing tumour).
        background: label-map values that count as background besides 0: a lesion map's normal-brain label when
            only the lesions are to be segmented. Crops are then centred on lesion voxels, not anywhere in the
            brain (``settings.foreground_ratio``), as a lesion segmentation needs.

    Returns:
        The report (module docstring), also written to ``work_dir/report.json``.

    Raises:
        InputError: bad input, named (module docstring); a finished run in ``work_dir`` made with another recipe.
    """
    settings = SegmentationSettings() if settings is None else settings
    if spatial_dims not in (2, 3):
        raise InputError(f"spatial_dims must be 2 or 3; got {spatial_dims!r}")
    settings.check(spatial_dims)
    real = _check_items(real, "real")
    if not real:
        raise InputError("real: the pool of real training items is empty")
    n_real = _check_sizes(n_real, len(real))
    shares = _check_shares(shares)
    seeds = _check_seeds(seeds)
    if synthesize is None and any(share > 0 for share in shares):
        raise InputError(
            f"synthesize: none given, but shares {[s for s in shares if s > 0]} ask for synthetic items; pass a "
            "synthesize callable or use shares (0,)"
        )
    if not isinstance(test, Mapping) or not test:
        raise InputError("test: no test domain given; pass {domain name: [items]}")
    test = {str(domain): _check_items(items, f"test[{domain!r}]") for domain, items in test.items()}
    for domain, items in test.items():
        if not items:
            raise InputError(f"test[{domain!r}]: the test domain has no items")
    labels = _check_labels(labels)
    regions = _check_regions(regions, labels)
    background = _check_background(background, labels)
    if not (isinstance(n_bootstrap, int) and n_bootstrap > 0):
        raise InputError(f"n_bootstrap must be a positive integer; got {n_bootstrap!r}")
    work_dir = Path(work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise InputError(f"{work_dir}: work_dir exists and is not a folder")
    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")

    # Read every image the runs will use before training any: bad input fails in seconds, not hours later.
    subsets = {(n, seed): real_subset(real, n, seed) for n in n_real for seed in seeds}
    used = {str(item["case_id"]): item for subset in subsets.values() for item in subset}
    for item in used.values():
        _load_case(item, labels, spatial_dims, settings, "real", background)
    test_cases = {
        domain: [_load_case(item, labels, spatial_dims, settings, f"test[{domain!r}]", background) for item in items]
        for domain, items in test.items()
    }

    recipe_common = {
        "settings": settings.as_dict(spatial_dims),
        "spatial_dims": spatial_dims,
        "labels": labels,
        "test_case_ids": {domain: [case.case_id for case in cases] for domain, cases in test_cases.items()},
        "test_images": {domain: [image_name(item) for item in items] for domain, items in test.items()},
        **({"regions": regions} if regions else {}),  # absent without regions: earlier run files still match
        **({"background": background} if background else {}),  # likewise
    }
    synthesizer = describe_synthesizer(synthesize)
    runs: dict[tuple[int, float, int], dict] = {}
    total, done = len(n_real) * len(shares) * len(seeds), 0
    for n in n_real:
        for seed in seeds:
            subset = subsets[n, seed]
            for share in shares:
                name = run_name(n, share, seed)
                recipe = {
                    **recipe_common, "n_real": n, "share": share, "seed": seed,
                    "n_synthetic": synthetic_count(n, share), "real_case_ids": [str(i["case_id"]) for i in subset],
                    "real_images": [image_name(item) for item in subset],
                    # Only runs with synthetic items depend on the synthesizer: real-only runs are shared by all.
                    "synthesizer": synthesizer if synthetic_count(n, share) else None,
                }
                path = work_dir / "runs" / f"{name}.json"
                if path.exists():
                    runs[n, share, seed] = _finished_run(path, recipe)
                    description = f"run {name} finished earlier"
                else:
                    runs[n, share, seed] = _run(
                        name, recipe, subset, synthesize, work_dir / "synthetic" / name, test_cases, labels,
                        spatial_dims, settings, device,
                    )
                    write_json(path, runs[n, share, seed], overwrite=False)
                    description = f"run {name} trained in {runs[n, share, seed]['seconds']:.0f} s"
                done += 1
                if progress is not None:
                    progress(done, total, description)

    report = _report(runs, recipe_common, n_real, shares, seeds, device, n_bootstrap, bootstrap_seed)
    report["settings"]["synthesizer"] = synthesizer
    write_json(work_dir / "report.json", report, overwrite=True)
    plot_benefit(report, work_dir / "benefit.png")
    return report


def _check_items(items, what: str) -> list[dict]:
    """The items as dicts, each with the keys of :data:`ITEM_KEYS` and a case id of its own."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise InputError(
            f"{what}: expected a list of items {{'case_id', 'image', 'label'}}; got {type(items).__name__}"
        )
    checked = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InputError(
                f"{what}[{index}]: is a {type(item).__name__}, not an item {{'case_id', 'image', 'label'}}"
            )
        missing = [key for key in ITEM_KEYS if key not in item]
        if missing:
            raise InputError(f"{what}[{index}]: lacks {', '.join(map(repr, missing))}")
        checked.append(dict(item))
    seen = set()
    for item in checked:
        case_id = str(item["case_id"])
        if case_id in seen:
            raise InputError(f"{what}: case_id {case_id!r} appears more than once")
        seen.add(case_id)
    return checked


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_sizes(n_real: Sequence[int], pool: int) -> list[int]:
    if not n_real:
        raise InputError("n_real: no training set size given")
    for n in n_real:
        if not _is_int(n) or n < 1:
            raise InputError(f"n_real: {n!r} is not a positive integer")
    sizes = sorted(set(n_real))
    for n in sizes:
        if n > pool:
            raise InputError(f"n_real: {n} is larger than the pool of real items ({pool})")
    return [int(n) for n in sizes]


def _check_shares(shares: Sequence[float]) -> list[float]:
    for share in shares:
        if isinstance(share, bool) or not isinstance(share, (int, float, np.number)) or not math.isfinite(share):
            raise InputError(f"shares: {share!r} is not a finite number")
        if share < 0:
            raise InputError(f"shares: {share} is negative; a share is the synthetic items added per real item")
    return sorted({0.0, *(float(share) for share in shares)})


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    if not seeds:
        raise InputError("seeds: no seed given")
    for seed in seeds:
        if not _is_int(seed) or seed < 0:
            raise InputError(f"seeds: {seed!r} is not a non-negative integer")
    return sorted({int(seed) for seed in seeds})


def _scored(recipe: Mapping) -> list[str]:
    """The names scores are kept under: the regions when the experiment has them, else the labels."""
    return list(recipe.get("regions") or recipe["labels"])


def _check_regions(regions, labels: dict[str, list[int]]) -> dict[str, list[str]] | None:
    if regions is None or (isinstance(regions, Mapping) and not regions):
        return None
    if not isinstance(regions, Mapping):
        raise InputError(f"regions: expected {{region name: [label names]}}; got {regions!r}")
    checked = {}
    for name, members in regions.items():
        members = [members] if isinstance(members, str) else members
        if not isinstance(members, Sequence) or not members or any(m not in labels for m in members):
            raise InputError(f"regions: {name!r} unites {regions[name]!r}; each region is a list of the label names "
                             f"{list(labels)}")
        checked[str(name)] = [str(m) for m in members]
    return checked


def _check_labels(labels: Mapping[str, int | Sequence[int]]) -> dict[str, list[int]]:
    """Each label name with the list of label-map values it covers (one value, or several: e.g. a map that numbers
    its lesions 1..k, all of them "lesion")."""
    if not isinstance(labels, Mapping) or not labels:
        raise InputError("labels: no label given; pass {name: value (or list of values) in the label maps}")
    checked = {}
    for name, values in labels.items():
        values = [values] if _is_int(values) else values
        if (
            isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence) or not values
            or not all(_is_int(value) and value > 0 for value in values)
        ):
            raise InputError(
                f"labels: {name!r} has value {labels[name]!r}; label values are positive integers or lists of them "
                "(0 is background)"
            )
        checked[str(name)] = sorted({int(value) for value in values})
    every = [value for values in checked.values() for value in values]
    if len(set(every)) != len(every):
        raise InputError(f"labels: two names share one value ({dict(labels)})")
    return checked


def _check_background(background, labels: dict[str, list[int]]) -> list[int]:
    """The extra background values, sorted; none of them may be a label's value."""
    if isinstance(background, (str, bytes, Mapping)) or not isinstance(background, Sequence) or not all(
        _is_int(value) and value > 0 for value in background
    ):
        raise InputError(f"background: {background!r}; pass a list of positive label-map values (0 needs no naming)")
    named = sorted({int(v) for v in background} & {v for values in labels.values() for v in values})
    if named:
        raise InputError(f"background: value(s) {named} are also label values ({labels}); a value is one or the other")
    return sorted({int(value) for value in background})


def _spatial(volume, spatial_dims: int, path, role: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """The array and spacing of ``volume`` with ``spatial_dims`` axes (a one-slice 3D file counts as 2D)."""
    array, spacing = volume.array, volume.spacing
    if array.ndim > volume.ndim:
        raise InputError(f"{path}: the {role} has {array.shape[-1]} channels; the benefit harness takes one")
    if spatial_dims == 2 and array.ndim == 3 and array.shape[2] == 1:
        array, spacing = array[:, :, 0], spacing[:2]
    if array.ndim != spatial_dims:
        raise InputError(f"{path}: the {role} is {array.ndim}D, shape {array.shape}; spatial_dims is {spatial_dims}")
    return array, spacing


def _load_case(item: Mapping, labels: dict[str, list[int]], spatial_dims: int, settings: SegmentationSettings,
               what: str, background: Sequence[int] = ()) -> _Case:
    """Read an item, scale its image, turn its label values into class indices; refuse what does not fit."""
    paths = _image_paths(item)
    if not paths:
        raise InputError(f"case {item['case_id']!r}: its image is an empty list of channels ({what})")
    channels = [_spatial(read_image(path), spatial_dims, path, "image") for path in paths]
    label, spacing = _spatial(read_image(item["label"]), spatial_dims, item["label"], "label map")
    for path, (image, _) in zip(paths, channels):
        if image.shape != label.shape:
            raise InputError(
                f"{path}: image shape {image.shape} differs from its label map's {label.shape} "
                f"({item['label']}, {what})"
            )
    known = {0, *background, *(v for values in labels.values() for v in values)}
    unknown = sorted(set(np.unique(label).tolist()) - known)
    if unknown:
        raise InputError(
            f"{item['label']}: label map holds value(s) {unknown[:10]} that labels ({labels}) does not name ({what})"
        )
    classes = np.zeros(label.shape, np.int16)
    for index, values in enumerate(labels.values(), start=1):
        classes[np.isin(label, values)] = index
    low, high = settings.percentiles
    scale = ScaleIntensityRangePercentiles(lower=low, upper=high, b_min=0.0, b_max=1.0, clip=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Divide by zero")  # a constant image: all zeros, fine
        scaled = np.concatenate([  # each channel by its own percentiles
            convert_to_numpy(scale(image[None].astype(np.float32)), dtype=np.float32) for image, _ in channels
        ])
    return _Case(str(item["case_id"]), scaled, classes[None], tuple(spacing))


def _synthesize(synthesize: Synthesize, subset: list[dict], count: int, folder: Path, seed: int,
                name: str) -> list[dict]:
    """Call ``synthesize`` into a fresh ``folder`` and check what it returns."""
    if folder.is_symlink():
        raise InputError(f"{folder}: is a symbolic link; remove it (synthetic items of run {name} go there)")
    if folder.exists():  # left by an interrupted run of this arm: its run file was never written
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    items = synthesize([dict(item) for item in subset], count, folder, seed)
    what = f"synthesize (run {name})"
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise InputError(f"{what}: returned a {type(items).__name__}; expected a list of {count} items")
    if len(items) != count:
        raise InputError(f"{what}: returned {len(items)} items; asked for {count}")
    return _check_items(items, what)


def _run(name: str, recipe: dict, subset: list[dict], synthesize: Synthesize | None, folder: Path,
         test_cases: dict[str, list[_Case]], labels: dict[str, list[int]], spatial_dims: int,
         settings: SegmentationSettings, device: torch.device) -> dict:
    """Synthesize, train and test one run; its record, as the run file holds it."""
    start = time.perf_counter()
    count = recipe["n_synthetic"]
    synthetic = _synthesize(synthesize, subset, count, folder, recipe["seed"], name) if count else []
    background = recipe.get("background", [])
    cases = [_load_case(item, labels, spatial_dims, settings, "real", background) for item in subset]
    cases += [
        _load_case(item, labels, spatial_dims, settings, f"synthesize (run {name})", background) for item in synthetic
    ]
    _check_channels({**{f"{name} training": cases}, **test_cases})
    network, loss = train_segmenter(cases, len(labels) + 1, spatial_dims, settings, recipe["seed"], device)
    scores = {
        domain: {
            case.case_id: case_metrics(segment(network, case.image, settings, device), case.label, list(labels),
                                       case.spacing, recipe.get("regions"))
            for case in domain_cases
        }
        for domain, domain_cases in test_cases.items()
    }
    return {
        "recipe": recipe,
        "synthetic_case_ids": [str(item["case_id"]) for item in synthetic],
        "device": str(device),
        "final_loss": loss,
        "seconds": time.perf_counter() - start,
        "cases": scores,
    }


def _check_channels(groups: Mapping[str, Sequence[_Case]]) -> None:
    """Every case's image has the channels of the first training case: one network sees them all."""
    expected = next(iter(groups.values()))[0].image.shape[0]
    for group, cases in groups.items():
        for case in cases:
            if case.image.shape[0] != expected:
                raise InputError(
                    f"case {case.case_id!r} ({group}): its image has {case.image.shape[0]} channel(s); the first "
                    f"training case has {expected}"
                )


def _finished_run(path: Path, recipe: dict | None) -> dict:
    """The record of a finished run, refused when its recipe differs from ``recipe`` (None: any recipe)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        found = record["recipe"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not a run file of this harness ({error}); remove it to rerun that run") from None
    if recipe is None:
        return record
    wanted = json.loads(json.dumps(recipe))
    if found != wanted:
        raise InputError(
            f"{path}: this finished run was made with another recipe ({'; '.join(_differences(found, wanted))}); "
            "use another work_dir, or remove the file to rerun it"
        )
    return record


def _differences(found, wanted, prefix: str = "") -> list[str]:
    """What differs between two recipes, as ``key: then -> now`` lines (nested keys joined with dots)."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        lines = []
        for key in sorted(set(found) | set(wanted)):
            lines += _differences(found.get(key), wanted.get(key), f"{prefix}{key}.")
        return lines
    if found == wanted:
        return []
    return [f"{prefix.rstrip('.')}: {json.dumps(found)[:80]} then, {json.dumps(wanted)[:80]} now"]


def _per_case(runs: dict, n: int, share: float, seeds: list[int], domain: str, case_ids: list[str], label: str,
              metric: str) -> np.ndarray:
    """Each test case's ``metric`` averaged over the seeds where it is defined (NaN where it never is)."""
    values = np.array([
        [_float(runs[n, share, seed]["cases"][domain][case_id][label][metric]) for seed in seeds]
        for case_id in case_ids
    ])
    defined = np.isfinite(values)
    sums = np.where(defined, values, 0.0).sum(axis=1)
    counts = defined.sum(axis=1)
    return np.divide(sums, counts, out=np.full(len(case_ids), math.nan), where=counts > 0)


def _per_seed(runs_a: dict, arm_a: tuple, runs_b: dict, arm_b: tuple, seeds: list[int], domain: str,
              case_ids: list[str], label: str, mean: float) -> dict:
    """Per seed, the mean over test cases of Dice under ``arm_a`` minus under ``arm_b`` (``(n_real, share)`` of
    ``runs_a`` and ``runs_b``; the same seed trains both on the same real subset), and how many seeds have the sign
    of ``mean``, the per-case mean difference (a seed of difference 0 agrees only with a mean of 0): the training
    noise that the per-case test, which averages the seeds per case, does not count. Dice is defined for every
    case (see Testing), so the mean of the per-seed differences is ``mean``."""
    differences = [
        float(np.mean([runs_a[(*arm_a, seed)]["cases"][domain][case_id][label]["dice"]
                       - runs_b[(*arm_b, seed)]["cases"][domain][case_id][label]["dice"] for case_id in case_ids]))
        for seed in seeds
    ]
    return {"per_seed_difference": differences,
            "seeds_agreeing": int(sum(np.sign(d) == np.sign(mean) for d in differences))}


def _summary(values: np.ndarray, n_bootstrap: int, seed: int) -> dict:
    """Mean of the defined values with its bootstrap interval and how many cases were in and out."""
    defined = values[np.isfinite(values)]
    interval = bootstrap_interval(defined, n_bootstrap, seed)
    return {
        "mean": float(defined.mean()) if len(defined) else None,
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
        "n_cases": int(len(defined)),
        "n_excluded": int(len(values) - len(defined)),
    }


def _wilcoxon_p(differences: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences; 1 when all are 0, None for fewer than 2."""
    if len(differences) < 2:
        return None
    if not np.any(differences != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small samples: scipy warns that the normal approximation is rough
        return float(wilcoxon(differences).pvalue)


def _paired(differences: np.ndarray, n_bootstrap: int, seed: int) -> tuple[dict, float | None, int]:
    """Paired differences' :func:`_summary`, Wilcoxon p and direction: 1 (or -1) where the interval lies above (or
    below) 0 and p < ALPHA, else 0. Undefined differences are left out."""
    differences = differences[np.isfinite(differences)]
    summary = _summary(differences, n_bootstrap, seed)
    p_value = _wilcoxon_p(differences)
    if summary["low"] is None or p_value is None or p_value >= ALPHA:
        return summary, p_value, 0
    return summary, p_value, 1 if summary["low"] > 0 else -1 if summary["high"] < 0 else 0


def _report(runs: dict, recipe: dict, n_real: list[int], shares: list[float], seeds: list[int],
            device: torch.device, n_bootstrap: int, bootstrap_seed: int) -> dict:
    """Per domain: each arm's mean Dice and HD95 with intervals, each share's paired comparison with share 0."""
    domains = {}
    for domain, case_ids in recipe["test_case_ids"].items():
        arms, comparisons = [], []
        for n in n_real:
            dice = {}
            for share in shares:
                per_label = {}
                for label in _scored(recipe):
                    dice[share, label] = _per_case(runs, n, share, seeds, domain, case_ids, label, "dice")
                    hd95 = _per_case(runs, n, share, seeds, domain, case_ids, label, "hd95")
                    per_label[label] = {
                        "dice": _summary(dice[share, label], n_bootstrap, bootstrap_seed),
                        "hd95_mm": _summary(hd95, n_bootstrap, bootstrap_seed),
                    }
                arms.append({"n_real": n, "share": share, "n_synthetic": synthetic_count(n, share),
                             "labels": per_label})
            for share in shares[1:]:
                per_label = {}
                for label in _scored(recipe):
                    summary, p_value, direction = _paired(
                        dice[share, label] - dice[0.0, label], n_bootstrap, bootstrap_seed
                    )
                    per_label[label] = {
                        "dice_difference": summary, "p_value": p_value,
                        "significant_gain": direction > 0, "significant_loss": direction < 0,
                        **_per_seed(runs, (n, share), runs, (n, 0.0), seeds, domain, case_ids, label,
                                    summary["mean"]),
                    }
                comparisons.append({"n_real": n, "share": share, "n_synthetic": synthetic_count(n, share),
                                    "labels": per_label})
        domains[domain] = {"n_cases": len(case_ids), "arms": arms, "comparisons": comparisons}
    return {
        "settings": {
            "segmentation": recipe["settings"],
            "spatial_dims": recipe["spatial_dims"],
            "labels": recipe["labels"],
            **({"regions": recipe["regions"]} if recipe.get("regions") else {}),
            "n_real": n_real,
            "shares": shares,
            "seeds": seeds,
            "device": str(device),
            "bootstrap": {"resamples": n_bootstrap, "seed": bootstrap_seed, "confidence": CONFIDENCE},
            "significance": SIGNIFICANCE,
        },
        "domains": domains,
    }


def compare_synthesizers(
    work_a: str | Path,
    work_b: str | Path,
    n_real: Sequence[int],
    shares: Sequence[float],
    seeds: Sequence[int],
    n_bootstrap: int = 2000,
    bootstrap_seed: int = 0,
) -> dict:
    """Two synthesizers head to head, from the finished runs of two :func:`run_benefit` work folders.

    The report compares each synthesizer with real data alone; this compares them with each other, with the same
    pairing: at each ``(n_real, share > 0)`` both arms trained on the same real subsets with the same seeds, so each
    test case's Dice (averaged over the seeds) under A minus under B is a paired difference. Per domain, arm and
    scored label: the mean difference with its bootstrap interval, the Wilcoxon p-value, ``better``: ``"a"`` or
    ``"b"`` where the interval excludes 0 on that side and p < 0.05, else None, and, as in the report,
    ``per_seed_difference`` (per seed, the mean difference over test cases) and ``seeds_agreeing`` (how many of
    those have the sign of the mean difference).

    Raises:
        InputError: a run file missing or unreadable in either folder, or two runs that are not paired (their
            recipes differ in more than the synthesizer).
    """
    work_a, work_b = Path(work_a), Path(work_b)
    shares = [float(share) for share in shares if share]
    runs: dict[str, dict] = {"a": {}, "b": {}}
    recipe = None
    for n, share, seed in ((n, share, seed) for n in n_real for share in shares for seed in seeds):
        paths = {side: folder / "runs" / f"{run_name(n, share, seed)}.json"
                 for side, folder in (("a", work_a), ("b", work_b))}
        for side, path in paths.items():
            if not path.is_file():
                raise InputError(f"{path}: no finished run {run_name(n, share, seed)} to compare")
            runs[side][n, share, seed] = _finished_run(path, None)
        recipes = [{**runs[side][n, share, seed]["recipe"], "synthesizer": None} for side in ("a", "b")]
        if recipes[0] != recipes[1]:
            raise InputError(
                f"{paths['a']} and {paths['b']} are not paired runs: "
                + "; ".join(_differences(recipes[0], recipes[1]))
            )
        recipe = recipes[0]
    if recipe is None:
        raise InputError("compare_synthesizers: no run to compare (n_real, shares > 0 and seeds must be non-empty)")
    domains = {}
    for domain, case_ids in recipe["test_case_ids"].items():
        arms = []
        for n in n_real:
            for share in shares:
                per_label = {}
                for label in _scored(recipe):
                    a, b = (_per_case(runs[side], n, share, list(seeds), domain, case_ids, label, "dice")
                            for side in ("a", "b"))
                    summary, p_value, direction = _paired(a - b, n_bootstrap, bootstrap_seed)
                    per_label[label] = {
                        "dice_difference": summary, "p_value": p_value,
                        "better": {1: "a", -1: "b", 0: None}[direction],
                        **_per_seed(runs["a"], (n, share), runs["b"], (n, share), list(seeds), domain, case_ids,
                                    label, summary["mean"]),
                    }
                arms.append({"n_real": n, "share": share, "n_synthetic": synthetic_count(n, share),
                             "labels": per_label})
        domains[domain] = {"n_cases": len(case_ids), "arms": arms}
    return {
        "a": str(work_a), "b": str(work_b), "seeds": list(seeds),
        "synthesizers": {side: runs[side][next(iter(runs[side]))]["recipe"]["synthesizer"] for side in ("a", "b")},
        "significance": SIGNIFICANCE,
        "domains": domains,
    }


def print_progress(done: int, total: int, description: str) -> None:
    """The default ``progress`` of the command line and the bundles' benefit configs: a bar and the run's line."""
    width = 20
    filled = round(width * done / total) if total else width
    print(f"benefit [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {description}", flush=True)


def format_report(report: Mapping) -> str:
    """The report as text: per test domain and label, each arm's Dice and HD95 with intervals, then each share's
    paired difference from the real-only arm."""

    def interval(score: Mapping, digits: int = 3) -> str:
        if score["mean"] is None:
            return "n/a"
        bounds = "" if score["low"] is None else f" [{score['low']:.{digits}f}, {score['high']:.{digits}f}]"
        return f"{score['mean']:.{digits}f}{bounds}"

    settings = report["settings"]
    lines = [
        f"segmentation: {settings['spatial_dims']}D DynUNet, {settings['segmentation']['iterations']} iterations; "
        f"seeds {settings['seeds']}; 95 % bootstrap intervals over test cases; significant = "
        f"{settings['significance']}",
        f"synthesizer: {json.dumps(settings.get('synthesizer'))}",
    ]
    for domain, result in report["domains"].items():
        for label in _scored(settings):
            lines.append(f"\n{label} on {domain} ({result['n_cases']} test cases)")
            rows = [("real", "synthetic", "Dice", "HD95 mm (cases)")]
            for arm in result["arms"]:
                scores = arm["labels"][label]
                hd95 = scores["hd95_mm"]
                rows.append((str(arm["n_real"]), str(arm["n_synthetic"]), interval(scores["dice"]),
                             f"{interval(hd95, 1)} ({hd95['n_cases']})"))
            for comparison in result["comparisons"]:
                score = comparison["labels"][label]
                p_value = "n/a" if score["p_value"] is None else f"{score['p_value']:.3g}"
                verdict = ("significant gain" if score["significant_gain"] else
                           "significant loss" if score["significant_loss"] else "no significant difference")
                agreeing = f"{score['seeds_agreeing']}/{len(score['per_seed_difference'])} seeds agree"
                rows.append((str(comparison["n_real"]), f"+{comparison['n_synthetic']} vs 0",
                             f"{interval(score['dice_difference'])}", f"p {p_value}, {verdict}; {agreeing}"))
            widths = [max(len(row[i]) for row in rows) for i in range(4)]
            lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _float(value) -> float:
    return math.nan if value is None else float(value)


def plot_benefit(report: dict, path: str | Path) -> Path:
    """Draw mean Dice against ``n_real`` per test domain (rows) and label (columns), one line per share with its
    bootstrap interval as error bars, and write it as a PNG to ``path``."""
    from matplotlib.figure import Figure  # no pyplot: no backend or global figure state involved

    domains = report["domains"]
    label_names = list(_scored(report["settings"]))
    shares = report["settings"]["shares"]
    n_real = report["settings"]["n_real"]
    figure = Figure(figsize=(4.5 * len(label_names), 3.5 * len(domains)), layout="constrained")
    axes = figure.subplots(len(domains), len(label_names), squeeze=False)
    for row, (domain, result) in enumerate(domains.items()):
        for column, label in enumerate(label_names):
            axis = axes[row][column]
            for index, share in enumerate(shares):
                arms = [arm for arm in result["arms"] if arm["share"] == share]
                dodge = 2 ** (0.04 * (index - (len(shares) - 1) / 2))  # side by side, not on top of each other
                scores = [arm["labels"][label]["dice"] for arm in arms]
                means = np.array([_float(score["mean"]) for score in scores])
                below = [0.0 if score["low"] is None else score["mean"] - score["low"] for score in scores]
                above = [0.0 if score["high"] is None else score["high"] - score["mean"] for score in scores]
                name = "real only" if share == 0 else f"+ synthetic, share {share:g}"
                axis.errorbar([arm["n_real"] * dodge for arm in arms], means, yerr=[below, above], marker="o",
                              capsize=3, label=name)
            axis.set_xscale("log", base=2)
            axis.set_xticks(n_real, [str(n) for n in n_real])
            axis.minorticks_off()
            axis.set_xlabel("real training items")
            axis.set_ylabel("mean Dice (95 % CI)")
            axis.set_title(f"{label} Dice on {domain}")
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    path = Path(path)
    with atomic_output(path, suffix=".png", overwrite=True) as temporary:
        figure.savefig(temporary, dpi=100)
    return path
