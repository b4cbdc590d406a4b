"""Sampling, evaluation, checkpoint selection and output of the class-conditional breast DCE patch GAN.

Haarburger et al., "Multiparametric Magnetic Resonance Image Synthesis using Generative Adversarial Networks"
(VCBM 2019), §4: generated patches are judged per class by

- the FID with T2, T1 pre and T1 post1 as the three channels (1000 real and 1000 generated patches), and
- the leave-one-out 1-nearest-neighbour accuracy of real against generated patches (1000 vs 1000; 0.5 is ideal);

and the best epoch is the one with the lowest FID. The paper feeds the three contrasts to Inception-v3 as R, G and
B. The project's default extractor (``domain``) takes one grey channel (an RGB input is averaged to grey, which
would mix the contrasts into one image), so here the FID is computed per contrast, each of the three channels on
its own through the extractor, and the class's FID is the mean of the three (all three are reported). The 1-NN
test runs on the patches themselves (all channels, flattened), which needs no extractor.

The networks are in :mod:`synthmr.nets.conditional_dcgan`, the patches in :mod:`synthmr.transforms.patches`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from synthmr.errors import InputError
from synthmr.engines.base import unwrap
from synthmr.engines.selection import CheckpointSelection
from synthmr.io import Volume, save_datalist, write_image
from synthmr.metrics.extractors import describe_extractor, get_extractor
from synthmr.metrics.fid import fid as fid_metric
from synthmr.metrics.two_sample import nn_accuracy
from synthmr.transforms.patches import CHANNELS, CLASSES, central_washout

FID_CHANNELS = ("t2", "t1_pre", "t1_post1")
# Written intensities: the paper's fixed range [0, 1023] for the generator's [-1, 1].
OUTPUT_MAX = 1023.0
SPACING_MM = 1.4  # the breast phantom's in-plane spacing, given to the written patches


@torch.no_grad()
def sample_patches(
    generator: torch.nn.Module, n_per_class: int, classes: Sequence[int] | None = None, seed: int = 0,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_per_class`` patches of every class from ``generator`` in eval mode, reproducibly from ``seed``.

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
    try:
        out = [
            net(z[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(labels), batch_size)
        ]
    finally:
        net.train(was_training)
    return torch.cat(out), labels


def evaluate_patches(
    real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor,
    extractor: torch.nn.Module | str = "domain", n_max: int = 1000, seed: int = 0,
) -> dict:
    """FID (per contrast and their mean) and 1-NN accuracy, per class, of generated against real patches.

    Each class uses ``n = min(n_max, real count, generated count)`` patches of each set (drawn at random from
    ``seed``), so that the 1-NN chance level is 0.5.

    Returns:
        ``{"extractor": str, "classes": {name: {"n": int, "fid": float, "fid_channels": {t2, t1_pre, t1_post1},
        "nn_accuracy": float, "nn_accuracy_real": float, "nn_accuracy_fake": float}}}``.
    """
    if isinstance(extractor, str):
        extractor = get_extractor(extractor)
    rng = np.random.default_rng(seed)
    report: dict = {"extractor": describe_extractor(extractor), "classes": {}}
    for index, name in enumerate(CLASSES):
        real_c, fake_c = real[real_labels == index], fake[fake_labels == index]
        n = min(n_max, len(real_c), len(fake_c))
        if n < 2:
            raise InputError(f"class {name}: {len(real_c)} real and {len(fake_c)} generated patches; need >= 2 of each")
        real_c = real_c[torch.as_tensor(rng.permutation(len(real_c))[:n])]
        fake_c = fake_c[torch.as_tensor(rng.permutation(len(fake_c))[:n])]
        # [-1, 1] -> [0, 1], the extractors' range; a patch's channel is one grey image.
        to_unit = lambda x, c: ((x[:, c : c + 1] + 1) / 2).clamp(0, 1)  # noqa: E731
        channels = {
            key: fid_metric(to_unit(real_c, CHANNELS.index(key)), to_unit(fake_c, CHANNELS.index(key)), extractor)[
                "fid"
            ]
            for key in FID_CHANNELS
        }
        nn = nn_accuracy(real_c, fake_c)
        report["classes"][name] = {
            "n": n,
            "fid": float(np.mean(list(channels.values()))),
            "fid_channels": channels,
            "nn_accuracy": nn["accuracy"],
            "nn_accuracy_real": nn["accuracy_real"],
            "nn_accuracy_fake": nn["accuracy_fake"],
        }
    return report


def evaluate_generator(
    generator: torch.nn.Module, real_patches: Sequence[dict], n_max: int = 1000,
    extractor: torch.nn.Module | str = "domain", seed: int = 0,
) -> dict:
    """:func:`evaluate_patches` of ``n_max`` generated patches per class against ``real_patches``
    (items of :func:`~synthmr.transforms.patches.extract_patches`)."""
    if not real_patches:
        raise InputError("no real patches to evaluate against")
    real = torch.as_tensor(np.stack([item["image"] for item in real_patches]))
    labels = torch.as_tensor([int(item["label"]) for item in real_patches])
    fake, fake_labels = sample_patches(generator, n_max, seed=seed)
    return evaluate_patches(real, labels, fake, fake_labels, extractor, n_max, seed)


class LowestFidSelection(CheckpointSelection):
    """Every ``interval`` epochs (and after the last) evaluate the generator and keep the lowest-FID weights.

    The score of an epoch is the mean over classes of the per-class FID (the paper chooses its best epoch by the
    lowest FID). ``best_path`` receives the generator's CPU ``state_dict``; ``work_dir/selection.json`` the
    ranking; ``work_dir/epoch_NNNN/report.json`` each evaluation (see :class:`~synthmr.engines.CheckpointSelection`).

    Args:
        generator: the generator being trained (DDP-wrapped or not).
        real_patches: validation patches (items of :func:`~synthmr.transforms.patches.extract_patches`).
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


def write_patches(
    generator: torch.nn.Module, output_dir: str | os.PathLike, n_per_class: int = 8, seed: int = 0,
    overwrite: bool = False, grid_columns: int = 8,
) -> list[dict]:
    """Generate ``n_per_class`` patches per class and write them with a datalist and a PNG grid.

    Writes ``output_dir/<class>_<i>/<channel>.nii.gz`` for every channel of :data:`CHANNELS` (intensities in the
    paper's range [0, 1023], in-plane spacing 1.4 mm), ``output_dir/datalist.json`` (``"testing"``: one item per
    patch with ``case_id``, ``class`` and a path per channel) and ``output_dir/grid.png`` (per patch T1 post1, the
    subtraction post1 - pre and T2, as in the paper's figure 1).

    Raises:
        InputError: an output exists and ``overwrite`` is false (nothing is written then).
    """
    from synthmr.io._atomic import check_destination

    output_dir = Path(output_dir)
    patches, labels = sample_patches(generator, n_per_class, seed=seed)
    items = []
    for index, (patch, label) in enumerate(zip(patches.numpy(), labels.tolist())):
        case_id = f"{CLASSES[label]}_{index % n_per_class:04d}"
        items.append({"case_id": case_id, "class": CLASSES[label], "patch": patch})
    targets = [output_dir / "datalist.json", output_dir / "grid.png"]
    targets += [output_dir / item["case_id"] / f"{key}.nii.gz" for item in items for key in CHANNELS]
    if not overwrite:
        for target in targets:
            check_destination(target, overwrite, what="file")
    datalist = []
    for item in items:
        entry = {"case_id": item["case_id"], "class": item["class"]}
        for channel, key in enumerate(CHANNELS):
            image = ((item["patch"][channel] + 1) / 2 * OUTPUT_MAX).astype(np.float32)
            volume = Volume(image, spacing=(SPACING_MM, SPACING_MM), origin=(0.0, 0.0), direction=np.eye(2))
            path = write_image(volume, output_dir / item["case_id"] / f"{key}.nii.gz", overwrite=overwrite)
            entry[key] = str(path.absolute())
        datalist.append(entry)
    # Paths inside output_dir are stored relative to the datalist (save_datalist), so the folder can move.
    save_datalist({"testing": datalist}, output_dir / "datalist.json", overwrite=overwrite)
    save_grid(patches, labels, output_dir / "grid.png", columns=grid_columns)
    return datalist


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


# The two GANs of the paper, as their original authors set them: DCGAN (Radford et al., arXiv 1511.06434: Adam,
# lr 2e-4, beta1 0.5) and WGAN with weight clipping (Arjovsky et al., arXiv 1701.07875, Algorithm 1: RMSProp,
# lr 5e-5, clip 0.01, 5 critic steps per generator step).
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


def washout_fractions(generator: torch.nn.Module, n_per_class: int = 100, seed: int = 0) -> dict[str, float]:
    """Per class, the fraction of generated patches whose central signal washes out from T1 post1 to post4
    (:func:`~synthmr.transforms.patches.central_washout`): high for malignant, low for benign when the
    conditioning carries the kinetics (malignant lesions wash out, benign ones persist)."""
    patches, labels = sample_patches(generator, n_per_class, seed=seed)
    washes = central_washout(patches.numpy())
    return {name: float(washes[labels.numpy() == index].mean()) for index, name in enumerate(CLASSES)}


def format_report(report: dict) -> str:
    """The evaluation as a table: per class and generator FID (mean and per channel) and 1-NN accuracies."""
    lines = [f"{'class':<10} {'generator':<10} {'n':>5} {'FID':>8} {'FID t2/pre/post1':>24} {'1-NN':>6} "
             f"{'real':>6} {'fake':>6}"]
    for name in CLASSES:
        for model in ("model", "untrained"):
            entry = report[model]["classes"][name]
            channels = "/".join(f"{entry['fid_channels'][key]:.1f}" for key in FID_CHANNELS)
            lines.append(
                f"{name:<10} {model:<10} {entry['n']:>5} {entry['fid']:>8.2f} {channels:>24} "
                f"{entry['nn_accuracy']:>6.3f} {entry['nn_accuracy_real']:>6.3f} {entry['nn_accuracy_fake']:>6.3f}"
            )
    if "washout" in report:
        lines.append("central wash-out post1 -> post4 (fraction of generated patches): "
                     + ", ".join(f"{name} {value:.2f}" for name, value in report["washout"].items()))
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
