"""The `synthmr` command (python-fire): one method per subcommand.

Bad input raises :class:`synthmr.errors.InputError`; :func:`main` prints its message as one line on stderr and
exits with status 2, without a traceback.
"""

from __future__ import annotations

import sys

import fire

from synthmr.errors import InputError


class SynthMR:
    """SynthMR: lesion-controllable multiparametric MRI synthesis."""

    def phantom(
        self,
        organ: str,
        n: int = 1,
        out: str | None = None,
        seed: int = 0,
        dims: int | None = None,
        preview: bool = False,
        overwrite: bool = False,
        **options,
    ) -> None:
        """Simulate multiparametric MRI cases and write NIfTI files plus DIR/datalist.json.

        Args:
            organ: brain, breast or liver.
            n: number of cases.
            out: output folder (must be new or empty unless --overwrite).
            seed: seed of the first case; case i uses seed + i.
            dims: 2 (axial slices) or 3 (volumes); default: the organ's own default.
            preview: also write DIR/preview.png, a montage with lesion outlines.
            overwrite: replace an existing non-empty output folder.
            options: further phantom options, e.g. --spacing 3 (see the phantom class docstrings).
        """
        from synthmr.phantom.dataset import write_phantom_dataset

        if out is None:
            raise InputError("--out is required: the folder to write the cases to")
        if dims is not None:
            options["dims"] = dims
        path = write_phantom_dataset(organ, n, str(out), seed=seed, preview=preview, overwrite=overwrite, **options)
        print(f"wrote {n} {organ} case(s) to {path}")

    def evaluate(
        self,
        real: str,
        fake: str,
        metrics: str | list[str] | None = None,
        extractor: str = "domain",
        extractor_weights: str | None = None,
        out: str | None = None,
        overwrite: bool = False,
        keys: str | list[str] | None = None,
        max_slices: int = 2048,
        seed: int = 0,
    ) -> None:
        """Compare synthetic images with real ones, print a table and (with --out) write the report as JSON.

        Args:
            real: folder of real images, or a datalist JSON.
            fake: folder of synthetic images, or a datalist JSON.
            metrics: comma-separated names (ssim, psnr, mse, mae, fid, nn_accuracy, ms_ssim_diversity); default:
                the paired metrics when cases pair by name, and every distribution metric.
            extractor: features for fid and nn_accuracy: domain (shipped), inception or radimagenet_resnet50.
            extractor_weights: local weights file of the extractor (inception and radimagenet_resnet50 need one).
            out: report JSON to write.
            overwrite: replace an existing report.
            keys: datalists only: comma-separated image keys to compare (e.g. t1_post1).
            max_slices: most 2D slices per set for the distribution metrics.
            seed: seed of the random subsampling.
        """
        from synthmr.metrics.evaluate import evaluate, format_table

        report = evaluate(
            real,
            fake,
            metrics=_names(metrics),
            extractor=extractor,
            extractor_weights=extractor_weights,
            out=out,
            overwrite=overwrite,
            keys=_names(keys),
            max_slices=max_slices,
            seed=seed,
        )
        print(format_table(report))
        if out is not None:
            print(f"wrote {out}")

    def select_checkpoint(self, *reports: str, weights: dict | None = None, groups: dict | None = None) -> None:
        """Rank checkpoints by SAMe from their evaluation reports (one `synthmr evaluate --out` JSON each), best first.

        Args:
            reports: report JSON files, one per checkpoint.
            weights: metric -> weight, e.g. --weights '{"fid": 2}'.
            groups: group name -> metrics averaged into one term first, e.g. --groups '{"pixels": ["mse", "mae"]}'.
        """
        from synthmr.metrics.evaluate import select_checkpoint

        ranking = select_checkpoint(list(reports), weights=weights, groups=groups)
        width = max(len(name) for name, _ in ranking)
        print(f"{'rank':<4}  {'report':<{width}}  SAMe (0 best)")
        for rank, (name, score) in enumerate(ranking, start=1):
            print(f"{rank:<4}  {name:<{width}}  {score:.4f}")


def _names(value: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """A comma-separated string (or fire's list or tuple) as a list of names."""
    if value is None:
        return None
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part) for part in value]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `synthmr` console script."""
    try:
        fire.Fire(SynthMR, command=argv, name="synthmr")
    except InputError as err:
        print(f"synthmr: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
