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
