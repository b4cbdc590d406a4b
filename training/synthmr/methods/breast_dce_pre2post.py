"""Pre- to post-contrast breast DCE-MRI synthesis: the method of bundle ``breast_dce_pre2post``.

Osuala et al., "Pre- to Post-Contrast Breast MRI Synthesis for Enhanced Tumour Segmentation" (SPIE Medical
Imaging 2024), arXiv 2311.10879: a Pix2PixHD generator (Wang et al., "High-Resolution Image Synthesis and
Semantic Manipulation with Conditional GANs", arXiv 1711.11585) turns the pre-contrast T1-weighted fat-saturated
image (``t1_pre``) into the first post-contrast phase (``t1_post1``), slice by slice.

What is specific to the method, and where it is:

1. **Data and networks** are shared parts put together by the bundle's configs: pre- and post-contrast slices
   scaled by the pre-contrast range (:class:`synthmr.transforms.RobustScaled`, headroom 3 so that enhancement up
   to 3x fits the generator's range), :class:`synthmr.nets.GlobalGenerator` and the two-scale
   :class:`synthmr.nets.MultiScaleDiscriminator`, trained by :class:`synthmr.engines.PairedGanTrainer` with LSGAN,
   feature matching and L1 (or, given local VGG19 weights, the VGG perceptual loss of the paper).
2. **Checkpoint selection** (:class:`SAMeCheckpointSelection`, below): every few epochs synthesise the validation
   cases, evaluate them against the real post-contrast images and keep the epoch with the best SAMe
   (:mod:`synthmr.metrics.same`) over SSIM, MSE, MAE and FID. SAMe is relative to the candidates, so the best
   epoch can change as later epochs join. FID is biased at the validation set's size (fewer slices than twice the
   extractor's features), but every epoch is measured on the same cases, so the bias is shared and the ranking
   stays fair; FID values are not reported from it (see :mod:`synthmr.metrics.kid`). Files per evaluated epoch:
   ``work_dir/epoch_NNNN/{synthetic/, real.json, synthetic.json, report.json, generator.pt}``.
3. **The evaluation table** (:func:`quality_report`, below): candidates (the model and baselines; the identity
   baseline is the pre-contrast input itself) against the real ``t1_post1``, globally
   (:func:`synthmr.metrics.evaluate.evaluate`: paired SSIM, PSNR, MSE, MAE; KID with its 95 % interval, ...),
   inside the lesions and the fibroglandular tissue (:func:`synthmr.metrics.regions.region_metrics`, mean and
   standard deviation over the cases where the region is present), and SAMe over the candidates, best first.

Per-image scaling is the paper's protocol, but it hides what matters in DCE-MRI: a post-contrast image's own
range is set by its brightest enhancing structure (the heart), so an unenhanced copy of the pre-contrast image
can look close to it. With ``shared_scale="t1_pre"`` the region metrics are computed a second time with every
image of a case on that case's ``t1_pre`` scale, the common receiver scale of the acquisitions on which
enhancement is measured (subtraction images, percentage enhancement). That second table is under
``"regions_shared_scale"`` and includes the whole image.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from synthmr.engines.selection import CheckpointSelection
from synthmr.errors import InputError
from synthmr.inference import Synthesizer
from synthmr.io import save_datalist
from synthmr.io._atomic import atomic_output, check_destination
from synthmr.metrics.evaluate import PAIRED_METRICS, evaluate, select_checkpoint
from synthmr.metrics.kid import FID_SAMPLES_PER_FEATURE
from synthmr.metrics.regions import region_metrics

if TYPE_CHECKING:
    from ignite.engine import Engine


class SAMeCheckpointSelection(CheckpointSelection):
    """Keep the SAMe-best generator: every ``interval`` epochs synthesise the validation datalist, evaluate it
    against the real images (:func:`synthmr.metrics.evaluate.evaluate`) and rank all evaluated epochs by SAMe
    (:func:`synthmr.metrics.evaluate.select_checkpoint`).

    Args:
        generator: the generator being trained (optionally DDP-wrapped).
        datalist: validation cases with the generator's ``inputs``, the real ``outputs`` and ``case_id``.
        inputs: input keys of the generator (see :class:`synthmr.inference.Synthesizer`).
        outputs: output keys; the real images under these keys are the reference of the metrics.
        work_dir: folder for the per-epoch synthetic images, reports and weights.
        best_path: where the best generator's ``state_dict`` goes (a bundle's ``models/model.pt``).
        interval: evaluate every this many epochs (and after the last epoch).
        metrics: metric names of :data:`synthmr.metrics.evaluate.METRICS` (the paper: SSIM, MSE, MAE and FID).
        extractor, extractor_weights: the FID feature extractor and its local weights file.
        weights, groups: SAMe weights and groups (:func:`synthmr.metrics.same.same_scores`).
        synthesizer_kwargs: further :class:`~synthmr.inference.Synthesizer` arguments (``roi_size``,
            ``headroom``, ``spatial_dims``).
    """

    score_name = "same"

    def __init__(
        self,
        generator: torch.nn.Module,
        datalist: Sequence[Mapping],
        inputs: Sequence[str],
        outputs: Sequence[str],
        work_dir: str | os.PathLike,
        best_path: str | os.PathLike,
        interval: int = 1,
        metrics: Sequence[str] = ("ssim", "mse", "mae", "fid"),
        extractor: str = "domain",
        extractor_weights: str | None = None,
        weights: Mapping[str, float] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        synthesizer_kwargs: Mapping | None = None,
    ) -> None:
        super().__init__(generator, work_dir, best_path, interval)
        missing = [key for item in datalist for key in (*inputs, *outputs, "case_id") if key not in item]
        if missing:
            raise InputError(f"validation datalist items lack {sorted(set(missing))}")
        self.datalist = [dict(item) for item in datalist]
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.metrics = list(metrics)
        self.extractor, self.extractor_weights = extractor, extractor_weights
        self.weights, self.groups = weights, groups
        self.synthesizer_kwargs = dict(synthesizer_kwargs or {})
        self.reports: dict[str, Path] = {}

    def evaluate(self, engine: Engine, generator: torch.nn.Module, folder: Path) -> Mapping[str, float]:
        written = Synthesizer(
            generator,
            self.datalist,
            self.inputs,
            self.outputs,
            folder / "synthetic",
            device=engine.state.device,
            overwrite=True,
            **self.synthesizer_kwargs,
        )()
        real = [{"case_id": item["case_id"], **{k: item[k] for k in self.outputs}} for item in self.datalist]
        fake = [
            {"case_id": item["case_id"], **{k: str(p) for k, p in paths.items()}}
            for item, paths in zip(self.datalist, written)
        ]
        save_datalist({"training": real}, folder / "real.json", overwrite=True)
        save_datalist({"training": fake}, folder / "synthetic.json", overwrite=True)
        report = evaluate(
            folder / "real.json",
            folder / "synthetic.json",
            metrics=self.metrics,
            extractor=self.extractor,
            extractor_weights=self.extractor_weights,
            keys=self.outputs,
            out=folder / "report.json",
            overwrite=True,
        )
        self.reports[folder.name] = folder / "report.json"
        return {k: v["mean"] if isinstance(v, dict) else v for k, v in report["metrics"].items()}

    def criterion(self) -> dict:
        return {"metrics": self.metrics}

    def ranking(self) -> list[tuple[str, float]]:
        return select_checkpoint(
            list(self.reports.values()), names=list(self.reports), weights=self.weights, groups=self.groups
        )


def quality_report(
    real: Sequence[Mapping],
    candidates: Mapping[str, Sequence[str | os.PathLike]],
    key: str,
    regions: Sequence[str] = (),
    metrics: Sequence[str] = ("ssim", "psnr", "mse", "mae", "kid"),
    extractor: str | torch.nn.Module = "domain",
    extractor_weights: str | os.PathLike | None = None,
    same_weights: Mapping[str, float] | None = None,
    shared_scale: str | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict:
    """The paper-style quality table: each candidate's images against the real ``key`` images, globally and
    inside ``regions``, and SAMe over the candidates (see the module docstring).

    Args:
        real: cases with ``case_id``, the real image under ``key`` and a label map under each region name
            (nonzero = inside).
        candidates: name -> one synthetic image path per real case, in the same order.
        key: the image key being judged (e.g. ``"t1_post1"``).
        regions: label-map keys of the real cases to compute region metrics in.
        metrics: global metrics (names of :data:`synthmr.metrics.evaluate.METRICS`); a reported table should use
            "kid" rather than "fid" unless there are at least twice as many cases as the extractor has features
            (:func:`synthmr.metrics.kid.fid_is_reliable`).
        extractor, extractor_weights: the feature extractor of KID and FID.
        same_weights: SAMe weights per metric (e.g. ``{"psnr": 0}``).
        shared_scale: key of the real cases' image whose range scales all images of the case for a second set of
            region metrics (see the module docstring and :mod:`synthmr.metrics.regions`), or None.
        out: JSON file to write the report to.
        overwrite: replace an existing ``out``.

    Returns:
        ``{"key", "n_cases", "regions", "candidates": {name: {"global": report, "regions": {region: {"n_cases",
        metric: {"mean", "std"}}}}}, "same": [[name, score], ...]}``; KID's 95 % interval and FID's reliability
        are in each global report's ``details`` (:func:`synthmr.metrics.evaluate.evaluate`).
    """
    if out is not None:
        check_destination(Path(out), overwrite)
    if not candidates:
        raise InputError("no candidate to evaluate")
    real = [dict(item) for item in real]
    for name, paths in candidates.items():
        if len(paths) != len(real):
            raise InputError(f"candidate {name!r} has {len(paths)} images for {len(real)} real cases")
    for index, item in enumerate(real):
        missing = [k for k in ("case_id", key, *regions, *([shared_scale] if shared_scale else [])) if k not in item]
        if missing:
            raise InputError(f"real case {index} lacks {missing}")

    report: dict = {"key": key, "n_cases": len(real), "regions": list(regions), "candidates": {}}
    with tempfile.TemporaryDirectory() as scratch:
        real_json = save_datalist(
            {"training": [{"case_id": item["case_id"], key: str(Path(item[key]).absolute())} for item in real]},
            Path(scratch) / "real.json",
        )
        for name, paths in candidates.items():
            fake_items = [{"case_id": item["case_id"], key: str(Path(p).absolute())} for item, p in zip(real, paths)]
            fake_json = save_datalist({"training": fake_items}, Path(scratch) / f"{name}.json")
            global_report = evaluate(
                real_json, fake_json, metrics=metrics, extractor=extractor, extractor_weights=extractor_weights, keys=[key]
            )
            global_report["real"], global_report["fake"] = "real", name
            report["candidates"][name] = {
                "global": global_report,
                "regions": region_metrics(real, paths, key, regions),
            }
            if shared_scale:
                report["candidates"][name]["regions_shared_scale"] = region_metrics(
                    real, paths, key, ["image", *regions], shared_scale
                )
    report["shared_scale"] = shared_scale
    ranking = select_checkpoint(
        [report["candidates"][name]["global"] for name in candidates], names=list(candidates), weights=same_weights
    )
    report["same"] = [[name, score] for name, score in ranking]
    if out is not None:
        with atomic_output(Path(out), suffix=".json", overwrite=overwrite) as temporary:
            temporary.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return report


def format_quality_table(report: Mapping) -> str:
    """The report as text: one row per candidate and region, the SAMe ranking last."""

    def cell(value) -> str:
        if isinstance(value, Mapping):
            value = value.get("mean")
        return "n/a" if value is None else f"{value:.4f}"

    metric_names = [m for m in PAIRED_METRICS]
    extra = [m for m in next(iter(report["candidates"].values()))["global"]["metrics"] if m not in metric_names]
    header = ["candidate", "region", "cases", *metric_names, *extra]
    rows = [header]
    for name, result in report["candidates"].items():
        global_metrics = result["global"]["metrics"]
        global_cells = [cell(global_metrics.get(m)) for m in metric_names]
        global_cells += [_distribution_cell(m, result["global"]) for m in extra]
        rows.append([name, "image", str(report["n_cases"]), *global_cells])
        for region, values in result["regions"].items():
            rows.append([name, region, str(values["n_cases"]), *(cell(values[m]) for m in metric_names), *[""] * len(extra)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows]
    if report.get("shared_scale"):
        lines.append(f"\nthe same regions with every image of a case on its {report['shared_scale']} scale:")
        shared = [header[:3] + metric_names]
        for name, result in report["candidates"].items():
            for region, values in result["regions_shared_scale"].items():
                shared.append([name, region, str(values["n_cases"]), *(cell(values[m]) for m in metric_names)])
        widths = [max(len(row[i]) for row in shared) for i in range(len(shared[0]))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in shared]
    lines.append("SAMe (0 = best of these candidates): " + ", ".join(f"{n} {s:.3f}" for n, s in report["same"]))
    return "\n".join(lines)


def _distribution_cell(metric: str, global_report: Mapping) -> str:
    """A global metric's value; KID with its 95 % interval, an FID from too few samples marked as biased."""
    value = global_report["metrics"].get(metric)
    if value is None:
        return "n/a"
    detail = global_report.get("details", {}).get(metric) or {}
    if metric == "kid" and detail.get("interval"):
        low, high = detail["interval"]
        return f"{value:.4f} [{low:.4f}, {high:.4f}]"
    if metric == "fid" and detail.get("reliable") is False:
        return f"{value:.4f} (biased: n < {FID_SAMPLES_PER_FEATURE} x {detail['feature_dim']})"
    return f"{value:.4f}"


class PostContrastCases:
    """``synthmr generate``'s set: case ``i`` is source ``i``'s pre-contrast image with its synthetic first
    post-contrast phase (and the source's masks, ``copy_keys``, where it has them), all on the source's grid.

    The generator is deterministic, so a source gives one case: ``n`` may not exceed the number of sources (more
    would be copies). Cases are shared out over torchrun ranks and resumable (:func:`synthmr.generation.write_case_set`).

    Args:
        network: the generator (weights loaded).
        device, inferer, headroom, precision, channels_last: as the inference config's :class:`Synthesizer`.
        copy_keys: source keys copied into each case when present (the lesion and breast masks, for segmentation).
        progress: optional ``progress(done, total)``.
    """

    def __init__(self, network: torch.nn.Module, device: str | torch.device = "cpu", inferer=None,
                 headroom: float = 3.0, precision: str = "fp32", channels_last: bool = False,
                 copy_keys: Sequence[str] = ("lesion", "breast"), progress=None) -> None:
        self.network, self.device, self.inferer, self.headroom = network, device, inferer, headroom
        self.precision, self.channels_last, self.copy_keys, self.progress = precision, channels_last, copy_keys, progress

    def generate(self, sources: Sequence[Mapping], n: int, out_dir: str | os.PathLike, seed: int = 0,
                 overwrite: bool = False, provenance: Mapping | None = None) -> list[dict]:
        """Write ``n`` cases from the first ``n`` sources (items with ``t1_pre``) and their datalist and manifest."""
        from synthmr.evaluation.synthesizers import weights_digest
        from synthmr.generation import case_id, check_set_size_and_seed, digest, write_case_set
        from synthmr.io import read_image, write_image

        check_set_size_and_seed(n, seed)
        sources = [dict(item) for item in sources]
        if n > len(sources):
            raise InputError(f"--n {n} is more than the {len(sources)} source cases: the generator is deterministic, "
                             "so each pre-contrast image gives one synthetic case")
        missing = [str(item.get("case_id", i)) for i, item in enumerate(sources[:n]) if "t1_pre" not in item]
        if missing:
            raise InputError(f"source case(s) {missing[:5]} lack 't1_pre'")

        def make(indices: Sequence[int], folder: Path) -> list[dict]:
            items = []
            for i in indices:
                source, case = sources[i], case_id(i)
                item = {"case_id": case}
                for key in ["t1_pre", *(k for k in self.copy_keys if k in source)]:
                    write_image(read_image(source[key]), folder / case / f"{key}.nii.gz")
                    item[key] = f"{case}/{key}.nii.gz"
                items.append({**item, "t1_post1": f"{case}/t1_post1.nii.gz",
                              "source_case": str(source.get("case_id", i))})
            Synthesizer(self.network, [{"case_id": it["case_id"], "t1_pre": str(folder / it["t1_pre"])} for it in items],
                        ["t1_pre"], ["t1_post1"], folder, device=self.device, spatial_dims=2, inferer=self.inferer,
                        headroom=self.headroom, precision=self.precision, channels_last=self.channels_last,
                        provenance=provenance)()
            return items

        identity = {**(provenance or {}), "network": type(self.network).__name__,
                    "weights_sha256": weights_digest(self.network), "precision": self.precision,
                    "sources_sha256": digest(sources[:n])}
        return write_case_set(
            make, n, out_dir, seed, overwrite=overwrite, identity=identity, progress=self.progress,
            file_keys=["t1_pre", "t1_post1", *self.copy_keys],
            description=f"{n} synthetic first post-contrast phases, generated by synthmr (breast_dce_pre2post)",
        )
