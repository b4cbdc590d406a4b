"""The `synthmr` command (python-fire): one method per subcommand.

Bad input raises :class:`synthmr.errors.InputError`; :func:`main` prints its message as one line on stderr and
exits with status 2, without a traceback.

python-fire (0.7.1) keeps only the last value of a repeated flag; :func:`main` folds repeated ``--input`` (or
``-i``) flags into one list first, so ``synthmr run B --input a=X --input b=Y`` passes both.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fire

from synthmr.errors import InputError, missing_extra
from synthmr.io._atomic import check_output_location, remove_own_staging


class BundleCommands:
    """Work with a bundle as a whole: `synthmr bundle export NAME --out DIR`."""

    def export(self, name: str, out: str | None = None, overwrite: bool = False) -> None:
        """Write the bundle as a shareable zip in the MONAI Model Zoo's layout and print the zip's path.

        The zip OUT/<name>_v<version>.zip holds <name>/ with configs/ (YAML configs converted to the JSON that
        monai.bundle.load looks for), models/, docs/, LICENSE, sample/ if present, and large_files.yml (each weights
        file with its SHA-256 and size). See synthmr.bundle.export.

        Example: synthmr bundle export breast_dce_pre2post --out dist

        Args:
            name: bundle name (see `synthmr bundles`) or bundle folder.
            out: folder to write the zip to.
            overwrite: replace an existing zip of the same name.
        """
        from synthmr.bundle.export import export_bundle

        if out is None:
            raise InputError("--out is required: the folder to write the zip to")
        print(export_bundle(str(name), str(out), overwrite=_flag(overwrite, "--overwrite")))


class SynthMR:
    """SynthMR: lesion-controllable multiparametric MRI synthesis."""

    bundle = BundleCommands()

    def phantom(
        self,
        organ: str,
        *rest: str,
        n: int | None = None,
        out: str | None = None,
        seed: int | None = None,
        dims: int | None = None,
        preview: bool = False,
        overwrite: bool = False,
        format: str = "nifti",
        **options,
    ) -> None:
        """Simulate multiparametric MRI cases and write NIfTI files plus DIR/datalist.json (or, with --format, a
        public dataset's layout for `synthmr convert`: dicom for breast, Duke-Breast-Cancer-MRI style; brats for
        brain, BraTS 2023 style); or, as
        `synthmr phantom validate ORGAN [--n 20] [--seed 700000]`, measure what the phantom produces against the
        ranges of docs/phantom.md, print the table and exit 1 if a figure leaves its range.

        Args:
            organ: brain, breast or liver (or `validate`, followed by the organ).
            n: number of cases (default 1; 20 for validate).
            out: output folder (must be new or empty unless --overwrite).
            seed: seed of the first case; case i uses seed + i (default 0; 700000 for validate, a range no test
                or bundle uses).
            dims: 2 (axial slices) or 3 (volumes); default: the organ's own default.
            preview: also write DIR/preview.png, a montage with lesion outlines.
            overwrite: replace an existing non-empty output folder.
            format: nifti (default), dicom (breast) or brats (brain); see synthmr.phantom.export.
            options: further phantom options, e.g. --spacing 3 (see the phantom class docstrings).
        """
        if organ == "validate":
            return self._validate_phantom(rest, n, seed, out, dims, preview, overwrite, format, options)
        if rest:
            raise InputError(f"unexpected argument(s) after the organ: {' '.join(map(str, rest))}")
        from synthmr.phantom.dataset import write_phantom_dataset

        if out is None:
            raise InputError("--out is required: the folder to write the cases to")
        check_output_location(str(out))
        if dims is not None:
            options["dims"] = dims
        n = 1 if n is None else n
        path = write_phantom_dataset(organ, n, str(out), seed=0 if seed is None else seed, preview=preview,
                                     overwrite=overwrite, format=str(format), **options)
        print(f"wrote {n} {organ} case(s) to {path}")

    @staticmethod
    def _validate_phantom(rest, n, seed, out, dims, preview, overwrite, format, options) -> None:
        from synthmr.phantom.validate import DEFAULT_SEED, format_table, validate

        if len(rest) != 1:
            raise InputError("usage: synthmr phantom validate ORGAN [--n N] [--seed S]: name one organ")
        given = {"--out": out, "--dims": dims, "--preview": preview or None, "--overwrite": overwrite or None,
                 "--format": None if format == "nifti" else format}
        unknown = [flag for flag, value in given.items() if value is not None] + [f"--{k}" for k in options]
        if unknown:
            raise InputError(f"phantom validate takes only --n and --seed, got {', '.join(unknown)}")
        organ = str(rest[0])
        n, seed = 20 if n is None else n, DEFAULT_SEED if seed is None else seed
        figures = validate(organ, n, seed)
        print(f"{organ} phantom, {n} case(s) from seed {seed}")
        print(format_table(figures))
        failed = [f.name for f in figures if not f.passed]
        print(f"{len(figures) - len(failed)} of {len(figures)} figures in range")
        if failed:
            print(f"synthmr: out of range: {'; '.join(failed)}", file=sys.stderr)
            raise SystemExit(1)

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
            metrics: comma-separated names (ssim, psnr, mse, mae, fid, kid, nn_accuracy, ms_ssim_diversity);
                default: the paired metrics when cases pair by name, and every distribution metric, except fid when
                either set has fewer than 2 slices per extractor feature (then kid, with its interval, stands alone).
            extractor: features for fid, kid and nn_accuracy: domain (shipped), inception or radimagenet_resnet50.
            extractor_weights: local weights file of the extractor (inception and radimagenet_resnet50 need one).
            out: report JSON to write.
            overwrite: replace an existing report.
            keys: datalists only: comma-separated image keys to compare (e.g. t1_post1).
            max_slices: most 2D slices per set for the distribution metrics.
            seed: seed of the random subsampling.
        """
        from synthmr.metrics.evaluate import evaluate, format_table

        if out is not None:
            read = {"--real": real, "--fake": fake, "--extractor_weights": extractor_weights}
            check_output_location(str(out), {flag: str(path) for flag, path in read.items() if path is not None})
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

    def run(
        self,
        bundle: str,
        input: str | list[str] | None = None,  # noqa: A002 (the flag is --input)
        out: str | None = None,
        device: str = "cpu",
        overwrite: bool = False,
        trust_bundle: bool = False,
        strict: bool = False,
    ) -> None:
        """Run a bundle on one case and write its outputs as OUT/<output role>.nii.gz on the reference input's grid.

        Example: synthmr run breast_dce_pre2post --input t1_pre=case7_pre.nii.gz --out case7_synthetic

        Prints machine-readable SYNTHMR_PROGRESS lines and a final SYNTHMR_RESULT line on stdout (the protocol
        is described in synthmr.bundle.runner). Everything is checked before the bundle runs; on any failure
        nothing is written. The case is also scored against the bundle's summary of its training data: a case
        unlike it gets one SYNTHMR_WARNING line (score and threshold), recorded in every output's sidecar.

        Args:
            bundle: bundle name (see `synthmr bundles`) or bundle folder.
            input: ROLE=PATH for one input; repeat the flag for each input of the bundle
                (--input t1_pre=pre.nii.gz --input liver=liver.nrrd). Everything after the first "=" is the path.
            out: output folder (must be new or empty unless --overwrite).
            device: cpu or cuda.
            overwrite: replace an existing output folder (moved aside, and removed once the new outputs are in place).
            trust_bundle: run a bundle that is not shipped with synthmr (its configs run code): confirm once, and
                the confirmation is recorded for this version of the bundle's code (README, Safety).
            strict: refuse (exit status 2) a case unlike the training data, instead of warning.
        """
        from synthmr.bundle.runner import print_result, run_bundle

        if out is None:
            raise InputError("--out is required: the folder to write the outputs to")
        outputs = run_bundle(
            str(bundle),
            _role_paths(input),
            str(out),
            device=str(device),
            overwrite=_flag(overwrite, "--overwrite"),
            trust_bundle=_flag(trust_bundle, "--trust-bundle"),
            strict=_flag(strict, "--strict"),
        )
        print_result(outputs)

    def lesion(
        self,
        lesion: str | None = None,
        out: str | None = None,
        organ: str | None = None,
        translate: str | list | tuple | None = None,
        scale: float | None = None,
        mirror: bool = False,
        transplant: str | None = None,
        centre: str | list | tuple | None = None,
        unit: str = "voxel",
        overwrite: bool = False,
        organ_labels: str | list | tuple | int | None = None,
    ) -> None:
        """Edit a lesion labelmap and write it on the same grid, to pass to `synthmr run` as the bundle's lesion input.

        The edits run in this order: transplant, mirror, scale, translate; then the lesion is clipped to the organ
        mask. Labels keep their values (nearest neighbour) and shifts are whole voxels (synthmr.transforms.lesion).

        Example: synthmr lesion --lesion tumor.nii.gz --organ liver.nii.gz --translate=0,-12,0 --unit mm
        --out tumor_moved.nii.gz

        Args:
            lesion: the case's lesion labelmap; optional with --transplant (the donor gives the grid).
            out: the edited labelmap to write (.nii.gz, .nii, .nrrd or .mha).
            organ: organ mask on the same grid: the result is clipped to it, and --mirror mirrors about its
                mid-sagittal plane (without it, about the image's).
            translate: offset X,Y,Z (one value per image axis) in --unit; write --translate=-3,0,0 for a negative
                first value.
            scale: scale factor about the lesion's centroid (2 doubles its diameter).
            mirror: mirror the lesion left-right.
            transplant: another case's lesion labelmap, on the same grid, that replaces this case's lesion.
            centre: X,Y,Z in --unit where the transplanted lesion's centroid goes (default: where it is).
            unit: voxel (array index, = 3D Slicer's IJK) or mm (physical LPS position: x to the patient's left,
                y posterior, z superior).
            overwrite: replace an existing --out.
            organ_labels: for a map holding the organ and the lesion together (e.g. a SAMR lesion map: 1 normal
                brain, 2-4 lesion: --organ_labels 1), its normal-tissue labels: only the other labels move, they
                stay inside the map's non-zero voxels (or --organ), and the whole map is written.
        """
        import numpy as np

        from synthmr.io import read_image
        from synthmr.provenance import record, write_synthetic
        from synthmr.transforms.lesion import edit_lesion

        if out is None:
            raise InputError("--out is required: the edited lesion labelmap to write")
        if lesion is None and transplant is None:
            raise InputError("--lesion is required (or --transplant, which brings its own lesion)")
        given = {"--lesion": lesion, "--organ": organ, "--transplant": transplant}
        check_output_location(str(out), {flag: str(path) for flag, path in given.items() if path is not None})
        # Read everything first: a bad path fails before anything is computed.
        donor = None if transplant is None else read_image(str(transplant))
        case_lesion = donor.with_array(np.zeros_like(donor.array)) if lesion is None else read_image(str(lesion))
        organ_mask = None if organ is None else read_image(str(organ))
        names = {"lesion": str(lesion or "lesion"), "organ": str(organ), "donor": str(transplant)}
        labels = () if organ_labels is None else _integers(organ_labels, "--organ_labels")
        edited = edit_lesion(
            case_lesion,
            translate=_numbers(translate, "--translate"),
            scale=None if scale is None else _number(scale, "--scale"),
            mirror=_flag(mirror, "--mirror"),
            transplant=donor,
            centre=_numbers(centre, "--centre"),
            organ=organ_mask,
            unit=str(unit),
            names=names,
            organ_labels=labels,
        )
        edits = {"translate": _numbers(translate, "--translate"), "scale": None if scale is None else float(scale),
                 "mirror": _flag(mirror, "--mirror"), "transplant": None if transplant is None else str(transplant),
                 "centre": _numbers(centre, "--centre"), "unit": str(unit), "organ_labels": list(labels)}
        inputs = {role: str(path) for role, path in (("lesion", lesion), ("organ", organ), ("transplant", transplant))
                  if path is not None}
        content = record({"bundle": None, "version": None, "weights": None}, inputs,
                         lesion_edits=[{key: value for key, value in edits.items() if value not in (None, False, [])}])
        write_synthetic(edited, str(out), {**content, "synthetic": False, "output": "lesion"}, overwrite=overwrite)
        count = int(np.count_nonzero(edited.array) - np.isin(edited.array, labels).sum())
        print(f"wrote {out}: {count} lesion voxels")

    def demo(
        self,
        bundle: str = "breast_dce_pre2post",
        out: str | None = None,
        device: str = "cpu",
        overwrite: bool = False,
        trust_bundle: bool = False,
    ) -> None:
        """Run a bundle on a simulated phantom case and write a PNG: inputs, synthetic, real and their difference.

        Args:
            bundle: bundle name or folder (default: breast_dce_pre2post).
            out: output folder (default: demo/<bundle>); it gets inputs/, synthetic/ and demo.png.
            device: cpu or cuda.
            overwrite: replace an existing output folder.
            trust_bundle: run a bundle that is not shipped with synthmr (see `synthmr run --help`).
        """
        from synthmr.demo import run_demo

        png = run_demo(
            str(bundle),
            out or f"demo/{Path(str(bundle)).name}",
            device=str(device),
            overwrite=_flag(overwrite, "--overwrite"),
            trust_bundle=_flag(trust_bundle, "--trust-bundle"),
        )
        print(f"wrote {png}")

    def benefit(
        self,
        bundle: str,
        work_dir: str | None = None,
        device: str | None = None,
        trust_bundle: bool = False,
        **overrides,
    ) -> None:
        """Does this bundle's synthetic data raise segmentation Dice? Train a segmentation network on real subsets
        with and without the bundle's synthetic items, test it, and print and write the paired comparison.

        Runs the experiment the bundle declares in configs/benefit.yaml (synthmr.bundle.benefit, harness:
        synthmr.evaluation.benefit). Writes WORK_DIR/report.json and WORK_DIR/benefit.png; a run that stops can be
        resumed by running the same command again. CPU is enough for small settings; a GPU is used when present.

        Example: synthmr benefit breast_dce_pre2post --n_real "[4,8]" --seeds "[0]"

        Args:
            bundle: bundle name (see `synthmr bundles`) or bundle folder.
            work_dir: work folder (default: benefit/<bundle>_v<version>).
            device: cpu or cuda (default: cuda when available).
            trust_bundle: run a bundle that is not shipped with synthmr (see `synthmr run --help`).
            overrides: ids of the bundle's configs, as on `python -m monai.bundle run`: e.g. --n_real "[4,8]",
                --shares "[0,1]", --seeds "[0]", --n_test 10, --segmentation#iterations 50, --train_key t1_post1,
                or the negative control --synthesize "\\$synthmr.evaluation.synthesizers.NoiseControl()".
        """
        from synthmr.bundle.benefit import run_bundle_benefit

        run_bundle_benefit(
            str(bundle),
            work_dir=None if work_dir is None else str(work_dir),
            device=None if device is None else str(device),
            overrides={key: list(value) if isinstance(value, tuple) else value for key, value in overrides.items()},
            trust_bundle=_flag(trust_bundle, "--trust-bundle"),
        )

    def generate(
        self,
        bundle: str,
        n: int = 1000,
        from_: str | None = None,
        out: str | None = None,
        seed: int = 0,
        section: str = "training",
        device: str | None = None,
        overwrite: bool = False,
        trust_bundle: bool = False,
        **overrides,
    ) -> None:
        """Make a synthetic data set from real cases with a conditional bundle: N new cases, each with its images,
        masks (the lesion they show) and a datalist, reproducible from --seed.

        Runs the bundle's configs/generate.yaml (synthmr.bundle.generate). liver_mmhcc_mask2mri, for instance, moves,
        zooms, rotates and mirrors each real case's tumour inside its liver and generates the three sequences that
        show it (the paper's 1,000-case set). Case i depends on (seed, i) alone. The cases go to the hidden folder
        .OUT.partial beside OUT and the set moves into place, with its datalist.json and manifest.json (bundle,
        version, weights, every case's seed), once complete. A run that was killed continues where it stopped when
        started again with the same arguments. Under torchrun the processes share the cases out and write the same
        bytes as one process would (torchrun takes --n for an option of its own: write -n).

        Example: synthmr generate liver_mmhcc_mask2mri --n 1000 --from real/datalist.json --out synthetic --seed 0
                 torchrun --nproc_per_node 2 -m synthmr generate liver_mmhcc_mask2mri -n 1000 --out synthetic

        Args:
            bundle: bundle name (see `synthmr bundles`) or bundle folder.
            n: number of new cases.
            from_: datalist JSON of the real cases (--from), with the bundle's input roles as keys (default: the
                bundle's own phantom cases).
            out: the folder to write (new or empty, unless --overwrite).
            seed: the set's seed.
            section: the datalist's list to read (training, validation, ...).
            device: cpu or cuda (default: cuda when available).
            overwrite: replace an existing output folder once the new set is complete.
            trust_bundle: run a bundle that is not shipped with synthmr (see `synthmr run --help`).
            overrides: further ids of the bundle's configs, as on `python -m monai.bundle run`.
        """
        from synthmr.bundle.generate import describe_set, run_bundle_generate

        if out is None:
            raise InputError("--out is required: the folder to write the synthetic cases to")
        run_bundle_generate(
            str(bundle),
            _integer(n, "--n"),
            None if from_ is None else str(from_),
            str(out),
            seed=_integer(seed, "--seed"),
            section=str(section),
            device=None if device is None else str(device),
            overwrite=_flag(overwrite, "--overwrite"),
            trust_bundle=_flag(trust_bundle, "--trust-bundle"),
            overrides={key: list(value) if isinstance(value, tuple) else value for key, value in overrides.items()},
        )
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for the set, not one per process
            print(describe_set(out))

    def convert(self, kind: str, src: str, out: str | None = None, map: str | list[str] | None = None,
                splits: str | tuple = "0.7,0.15,0.15", seed: int = 0, overwrite: bool = False,
                skip_incomplete: bool = False, boxes: str | None = None) -> None:
        """Turn a public-data layout into OUT/datalist.json with patient-level training/validation/test splits.

        Layouts: brats (BraTS 2021-2024 folders; 2021's label 4 rewritten as 3 into OUT/labels/), duke
        (Duke-Breast-Cancer-MRI style DICOM studies: pre- and post-contrast phases found from the series
        descriptions and acquisition times, written as NIfTI on one grid into OUT/<patient>/), folders (one folder
        per case, files found by --map KEY=GLOB, repeatable). A case that lacks a file, or whose phases cannot be
        told apart, is named, never guessed; then nothing is written unless --skip_incomplete.

        Example: synthmr convert folders /data/liver --out converted --map 'arterial=*art*.nii.gz' --map 'tumor=*seg*'
                 synthmr convert brats /data/BraTS2023-GLI --out converted

        Args:
            kind: brats, duke or folders.
            src: the folder of case folders (duke: of DICOM files, in any layout).
            out: a new folder for datalist.json, conversion.json and any converted images.
            map: KEY=GLOB per datalist key (folders); KEY=PATH with {patient}, relative to SRC, for masks published
                beside a DICOM dataset (duke, e.g. --map 'breast=masks/{patient}_breast.nii.gz').
            splits: training,validation,test fractions of the patients.
            seed: the split's shuffle.
            overwrite: replace an existing OUT.
            skip_incomplete: leave incomplete cases out (listed) instead of refusing the conversion.
            boxes: duke: the Annotation_Boxes table saved as CSV; each patient's box becomes its lesion mask.
        """
        from synthmr.io.convert import convert

        if out is None:
            raise InputError("--out is required: the folder for datalist.json")
        mapping = {}
        for value in [] if map is None else [map] if isinstance(map, str) else list(map):
            key, equals, pattern = str(value).partition("=")
            if not (equals and key and pattern):
                raise InputError(f"--map {value}: expected KEY=GLOB, e.g. --map 't1=*t1*.nii.gz'")
            mapping[key] = pattern
        fractions = _numbers(splits, "--splits")
        datalist, skipped = convert(str(kind), str(src), str(out), mapping, fractions, _integer(seed, "--seed"),
                                    _flag(overwrite, "--overwrite"), _flag(skip_incomplete, "--skip_incomplete"),
                                    None if boxes is None else str(boxes))
        for problem in skipped:
            print(f"skipped {problem}")
        counts = ", ".join(f"{len(items)} {name}" for name, items in datalist.items())
        print(f"wrote {Path(str(out)) / 'datalist.json'}: {counts}")

    def check_data(self, datalist: str, bundle: str | None = None, section: str = "training",
                   inference: bool = False, setting: str | None = None) -> None:
        """Check a datalist against a bundle before training: every problem, one line each naming case and file.

        Each item needs the bundle's input roles (and, for training, its output roles: the targets) on one grid,
        readable, finite, with labels within the declared sets, no empty required mask, a non-constant image and a
        plausible voxel spacing. Exits with 1 when there is any problem, 0 when there is none.

        Example: synthmr check-data converted/datalist.json --bundle liver_mmhcc_mask2mri

        Args:
            datalist: the datalist JSON (relative paths are relative to its folder).
            bundle: bundle name or folder (see `synthmr bundles`).
            section: the list to check (training, validation, ...).
            inference: check the inputs only (a datalist to run the bundle on, not to train it).
            setting: for a bundle that trains on several datalists (brain_tumor_fabrication: healthy_datalist,
                annotated_datalist), the train.yaml setting this datalist is for.
        """
        from synthmr.bundle.check_data import check_datalist, format_problems

        if bundle is None:
            raise InputError("--bundle is required: the bundle whose roles the datalist must fill")
        problems, n_items = check_datalist(str(bundle), str(datalist), str(section),
                                           targets=not _flag(inference, "--inference"),
                                           setting=None if setting is None else str(setting))
        print(format_problems(problems, n_items))
        if problems:
            raise SystemExit(1)

    def inspect(self, *files: str) -> None:
        """Say whether each file was made by SynthMR, by which bundle, version and weights, from which inputs (with
        their SHA-256), with which seed, precision and lesion edits: from its sidecar (<name>.json beside it), or
        from its header's SYNTHETIC mark when the sidecar is lost.

        Example: synthmr inspect out/t1_post1.nii.gz

        Args:
            files: image files (.nii.gz, .nii, .nrrd, .mha).
        """
        from synthmr.provenance import describe

        if not files:
            raise InputError("name at least one file: synthmr inspect FILE [FILE ...]")
        for file in files:
            print(describe(str(file)))

    def bundles(self) -> None:
        """List the bundles `synthmr run` finds by name, with their inputs and outputs.

        Bundles are looked up in the repository's bundles/ folder (the shipped bundles), then in the folders of
        SYNTHMR_BUNDLE_PATH (os.pathsep-separated), whose bundles run only once trusted (README, Safety).
        """
        from synthmr.bundle.description import read_tool_description
        from synthmr.bundle.discovery import bundle_folders, list_bundles, shadowing_bundles, shipped_folders

        found = list_bundles()
        if not found:
            searched = ", ".join(str(folder) for folder in bundle_folders()) or "no bundle folder exists"
            print(f"no bundles found (searched: {searched})")
        for user, shipped in shadowing_bundles().items():
            print(f"{user.name}  {user}\n  refused: has the name of the shipped bundle {shipped}; rename its folder")
        for name, path in found.items():
            origin = "shipped" if any(path.is_relative_to(folder) for folder in shipped_folders()) else "user"
            print(f"{name}  {path}  ({origin})")
            try:
                description = read_tool_description(path)
            except InputError as error:
                print(f"  not usable: {error}")
                continue
            if description.is_generator:
                where = "generates from noise (no input; run it with python -m monai.bundle run)"
            else:
                where = f"outputs land on the grid of input {description.reference}"
            print(f"  {description.spatial_dims}D network; {where}")
            width = max(map(len, [*description.inputs, *description.outputs]))
            for direction, roles in (("input", description.inputs), ("output", description.outputs)):
                for role_name, role in roles.items():
                    optional = ", optional" if not getattr(role, "required", True) else ""
                    labels = ", ".join(f"{value}={label}" for value, label in (role.labels or {}).items())
                    print(
                        f"  {direction:<6}  {role_name:<{width}}  {role.kind}{optional}: {role.description}"
                        + (f" [{labels}]" if labels else "")
                    )
            if description.lesion_edits:
                print(f"  lesion edits on {description.lesion}: {', '.join(description.lesion_edits)}")


def _role_paths(values: str | list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """ROLE=PATH values of --input (one string, or the list main() folds repeated flags into) as role -> path."""
    if values is None:
        return {}
    if not isinstance(values, (list, tuple)):
        values = [values]  # one flag: a string, or whatever fire made of a value that looked like a number
    paths: dict[str, str] = {}
    for value in values:
        role, equals, path = str(value).partition("=")
        if not (equals and role and path):
            raise InputError(f"--input {value}: expected ROLE=PATH, e.g. --input t1_pre=case7_pre.nii.gz")
        if role in paths:
            raise InputError(f"--input {role}: given twice ({paths[role]} and {path})")
        paths[role] = path
    return paths


def _numbers(value: str | float | list | tuple | None, flag: str) -> tuple[float, ...] | None:
    """The X,Y,Z value of ``flag`` as floats: fire passes "1,2,3" as a tuple, "[1,2,3]" as a list and a lone
    number as a number; a string is what it could not parse."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    return tuple(_number(part, flag) for part in parts)


def _number(value: str | float, flag: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"{flag}: needs a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{flag} {value}: not a number") from None


def _integers(value: str | int | list | tuple, flag: str) -> tuple[int, ...]:
    """Whole numbers of ``flag`` ("1", "1,2", a number or a list, as fire passes them)."""
    numbers = _numbers(value, flag) or ()
    if not numbers or any(number != int(number) for number in numbers):
        raise InputError(f"{flag} {value}: needs whole numbers (labels), e.g. {flag} 1")
    return tuple(int(number) for number in numbers)


def _flag(value: bool | str, flag: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{flag} {value}: is a switch; give it without a value (or as {flag}=True/False)")
    return value


@contextmanager
def _end_on_signals() -> Iterator[None]:
    """Within this block, SIGTERM (how a caller, e.g. the 3D Slicer module, cancels a command) and Ctrl-C end the
    process at once with one line and 143 or 130, after removing every staging path it had open. Python's default
    would leave the staging. Raising an exception from the handler instead is not safe: it can arrive inside a
    Python callback of C++ code (pybind11), which then aborts (exit -6). Signal handlers can only be set from the
    main thread: elsewhere the defaults stay."""
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def end(signum, frame):
        for held in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the cleanup short
            signal.signal(held, signal.SIG_IGN)
        remove_own_staging()
        status = 128 + signum
        _fail(f"{'terminated' if signum == signal.SIGTERM else 'interrupted'}; no partial output is left", status,
              prefix="synthmr: ")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    previous = signal.signal(signal.SIGTERM, end)
    # Ctrl-C the same way, unless SIGINT is ignored (a background job, nohup): that choice stays.
    previous_interrupt = signal.getsignal(signal.SIGINT)
    if previous_interrupt is signal.default_int_handler:
        signal.signal(signal.SIGINT, end)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_interrupt)


def _gather_repeated(argv: list[str], flag: str, short: str) -> list[str]:
    """Fold every ``flag VALUE``, ``flag=VALUE`` (and the same with fire's one-letter ``short`` form) of ``argv``
    into one ``flag`` whose value is a list literal, which fire parses back into the list of strings: fire itself
    would keep the last value only.

    Arguments after a lone ``--`` are fire's own flags and stay as they are.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    values: list[str] = []
    rest: list[str] = []
    index = 0
    while index < end:
        arg = argv[index]
        name, equals, value = arg.partition("=")
        if name in (flag, short) and equals:
            values.append(value)
        elif arg in (flag, short) and index + 1 < end:
            values.append(argv[index + 1])
            index += 1
        else:
            rest.append(arg)
        index += 1
    if len(values) < 2:
        return list(argv)
    return [*rest, flag, repr(values), *argv[end:]]


# Flags that are Python keywords, as the parameters fire maps them to.
_FIRE_NAMES = {"--from": "--from_"}


def _fire_name(arg: str) -> str:
    """``arg`` with a keyword flag (``--from`` or ``--from=X``) renamed to its parameter's flag."""
    flag, equals, value = arg.partition("=")
    return _FIRE_NAMES.get(flag, flag) + equals + value


def _check_command(argv: list[str]) -> None:
    """An unknown command or option is one line, before anything runs: fire would run the command first and only
    then complain, in several lines, about what it could not consume (after the outputs were written)."""
    import inspect

    if not argv or argv[0].startswith("-"):
        return  # fire's own help and flags
    words = list(argv)
    commands = {name for name in dir(SynthMR) if not name.startswith("_")}
    name = words.pop(0).replace("-", "_")  # fire takes select-checkpoint for select_checkpoint
    if name not in commands:
        raise InputError(f"unknown command {name!r}; the commands are {', '.join(sorted(commands))}")
    target = getattr(SynthMR, name)
    if isinstance(target, BundleCommands):
        subcommands = {n for n in dir(BundleCommands) if not n.startswith("_")}
        if not words or words[0].startswith("-"):
            return  # fire lists the group's commands
        subcommand = words.pop(0).replace("-", "_")
        if subcommand not in subcommands:
            raise InputError(f"unknown command 'bundle {subcommand}'; the bundle commands are {', '.join(sorted(subcommands))}")
        name, target = f"bundle {subcommand}", getattr(BundleCommands, subcommand)
    parameters = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # the command passes further options on (config overrides)
    accepted = sorted(p for p in parameters if p != "self")
    end = words.index("--") if "--" in words else len(words)
    for word in words[:end]:
        if word.startswith("--") and len(word) > 2:
            flag = word[2:].partition("=")[0].replace("-", "_")
            if flag == "help" or (flag.startswith("no") and flag[2:] in parameters):
                continue  # fire's --help, and its --nomirror for a boolean
            if flag not in parameters or flag == "self":
                options = ", ".join(f"--{p}" for p in accepted) or "none"
                raise InputError(f"synthmr {name}: unknown option --{flag}; its options are {options}")


def _integer(value, flag: str) -> int:
    """A whole number given on the command line (fire reads 3.0 as a float, "3" as an int)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise InputError(f"{flag} must be a whole number; got {value!r}")
    return int(value)


def _names(value: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """A comma-separated string (or fire's list or tuple) as a list of names."""
    if value is None:
        return None
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part) for part in value]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `synthmr` console script: a user's mistake is one line on stderr and exit status 2; an
    interrupt (Ctrl-C, SIGTERM) one line and 130 or 143, after every command has removed its staging."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with _end_on_signals():
            folded = _gather_repeated(_gather_repeated(argv, "--input", "-i"), "--map", "--map")
            command = [_fire_name(arg) for arg in folded]
            _check_command(command)
            fire.Fire(SynthMR, command=command, name="synthmr")
    except InputError as err:
        return _fail(str(err), 2)
    except ModuleNotFoundError as err:  # a command of the "train" extra (phantom, evaluate, demo) without it
        if (error := missing_extra(err)) is None:
            raise
        return _fail(str(error), 2)
    except OSError as err:  # the machine refused: a full disk, no permission, a file vanishing under us
        if err.filename is None:
            raise
        return _fail(f"{err.filename}: {err.strerror or err}", 2)
    except KeyboardInterrupt:  # raised by Python itself where the handler above is not in place
        return _fail("interrupted; no partial output is left", 128 + 2, prefix="synthmr: ")
    return 0


def _fail(message: str, status: int, prefix: str = "synthmr: error: ") -> int:
    print(prefix + " ".join(message.split()), file=sys.stderr)  # one line, whatever the message held
    return status


if __name__ == "__main__":
    sys.exit(main())
