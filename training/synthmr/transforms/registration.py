"""Image registration and group averages on SimpleITK: align one image to another, carry other images along, and
build a multi-sequence template (atlas) from several subjects.

Registration is two stages, both SimpleITK's: an affine transform (centred on the images' intensity moments,
normalised correlation, multi-resolution regular-step gradient descent) and then a dense deformation by
symmetric-forces demons (Thirion, "Image matching as a diffusion process: an analogy with Maxwell's demons",
Medical Image Analysis 1998; ITK's ``FastSymmetricForcesDemonsRegistrationFilter``) on the affinely aligned
images. The transform maps points of the fixed image to the moving one, so that :func:`warp` resamples any image on
the moving grid onto the fixed grid.

The template (:func:`group_average`) is the iterated average of the subjects aligned to the current template, the
scheme of group-average template construction (Guimond, Meunier and Thirion, "Average brain models: a convergence
study", Computer Vision and Image Understanding 2000): start from the average of the subjects affinely aligned to
the first, then ``iterations`` times register every subject to the average (affine, then demons when
``deformable``) and average again, every sequence of a subject carried by its own transform. What this leaves out
of such tools' refinements: the template's shape is not corrected by the mean inverse deformation, so it keeps a
bias towards the first subject's affine frame (position, size), though not its local shape. Everything is
deterministic: the affine metric samples every voxel and demons has no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from synthmr.errors import InputError
from synthmr.io.volume import Volume

INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}


def register(
    fixed: Volume,
    moving: Volume,
    deformable: bool = True,
    affine_iterations: int = 200,
    demons_iterations: int = 50,
    demons_smoothing_mm: float = 4.0,
) -> sitk.Transform:
    """The transform taking points of ``fixed`` to ``moving`` (resample ``moving`` with it to align it to ``fixed``).

    Both are scalar images of the same dimension (same content: e.g. two T1-weighted brains, or two smoothed brain
    masks); the grids may differ.

    Args:
        fixed, moving: the images.
        deformable: add the demons stage after the affine one.
        affine_iterations: most gradient-descent steps per resolution level (shrink 4, 2, 1).
        demons_iterations: demons iterations.
        demons_smoothing_mm: standard deviation of the Gaussian that smooths the displacement field after each
            demons iteration (its regularisation), mm.
    """
    fixed_image, moving_image = _scalar(fixed, "fixed"), _scalar(moving, "moving")
    if fixed.ndim != moving.ndim:
        raise InputError(f"cannot register a {moving.ndim}D image to a {fixed.ndim}D one")
    affine = _affine(fixed_image, moving_image, affine_iterations)
    if not deformable:
        return affine
    aligned = sitk.Resample(moving_image, fixed_image, affine, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    aligned = sitk.HistogramMatching(aligned, fixed_image, 256, 7, True)
    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetNumberOfIterations(int(demons_iterations))
    demons.SetSmoothDisplacementField(True)
    demons.SetStandardDeviations([demons_smoothing_mm / s for s in fixed.spacing])  # in voxels
    field = demons.Execute(fixed_image, aligned)
    # ITK applies a composite's transforms last-added first: fixed point -> displaced -> affine -> moving.
    return sitk.CompositeTransform([affine, sitk.DisplacementFieldTransform(field)])


def warp(image: Volume, reference: Volume, transform: sitk.Transform, interpolation: str = "linear", default: float = 0.0) -> Volume:
    """``image`` resampled onto ``reference``'s grid through ``transform`` (from :func:`register` with
    ``reference`` fixed and ``image``'s subject moving); "nearest" for label maps."""
    if interpolation not in INTERPOLATORS:
        raise InputError(f"interpolation must be one of {', '.join(INTERPOLATORS)}; got {interpolation!r}")
    result = sitk.Resample(
        _scalar(image, "image"),
        _scalar(reference, "reference"),
        transform,
        INTERPOLATORS[interpolation],
        float(default),
        sitk.sitkFloat32,
    )
    out = Volume.from_sitk(result)
    return out.with_array(out.array.astype(image.array.dtype) if interpolation == "nearest" else out.array)


def group_average(
    subjects: Sequence[Mapping[str, Volume]],
    drive: str,
    iterations: int = 2,
    deformable: bool = True,
    exclude: str | None = None,
    **registration: float,
) -> dict[str, Volume]:
    """Multi-sequence template of ``subjects`` on the first subject's grid (module docstring).

    Args:
        subjects: per subject, its images by name (every subject the same names, each subject's images on one
            grid); float images are averaged, the registration is driven by ``drive``.
        drive: the image that is registered (e.g. a T1-weighted image, or a smoothed brain mask).
        iterations: register-and-average rounds after the affine start.
        deformable: use the demons stage in those rounds (the affine start never does).
        exclude: the name of a mask among the subjects' images (e.g. their lesions) whose voxels stay out of the
            average: each voxel of the template averages the subjects that are outside the mask there (weighted
            by ``1 - mask`` after warping), or all of them where every subject is inside. The mask itself is not
            in the template.
        registration: further arguments of :func:`register`.
    """
    subjects = [dict(subject) for subject in subjects]
    if len(subjects) < 2:
        raise InputError(f"a group average needs at least 2 subjects; got {len(subjects)}")
    names = set(subjects[0])
    if drive not in names:
        raise InputError(f"the driving image {drive!r} is not among the subjects' images {sorted(names)}")
    for index, subject in enumerate(subjects):
        if set(subject) != names:
            raise InputError(f"subject {index} has images {sorted(subject)}; subject 0 has {sorted(names)}")
        grid = subject[drive]
        for name, image in subject.items():
            _scalar(image, f"subject {index} {name!r}")
            if not image.same_grid(grid):
                raise InputError(f"subject {index}: {name!r} is not on the grid of {drive!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise InputError(f"iterations must be a non-negative integer; got {iterations!r}")
    if exclude is not None and (exclude not in names or exclude == drive):
        raise InputError(f"the excluded mask {exclude!r} must be one of the subjects' images other than {drive!r}")

    template = _average(subjects, subjects[0][drive], drive, False, exclude, **registration)
    for _ in range(iterations):
        template = _average(subjects, template[drive], drive, deformable, exclude, **registration)
    return template


def _average(
    subjects: Sequence[Mapping[str, Volume]],
    reference: Volume,
    drive: str,
    deformable: bool,
    exclude: str | None,
    **registration: float,
) -> dict[str, Volume]:
    """Every subject registered to ``reference`` (through ``drive``) and each image averaged on its grid."""
    sums: dict[str, np.ndarray] = {}
    weighted: dict[str, np.ndarray] = {}
    weights = np.zeros(reference.array.shape)
    for subject in subjects:
        transform = register(reference, subject[drive], deformable=deformable, **registration)
        weight = 1.0
        if exclude is not None:
            weight = 1.0 - np.clip(warp(subject[exclude], reference, transform).array, 0.0, 1.0)
        weights = weights + weight
        for name, image in subject.items():
            if name == exclude:
                continue
            array = warp(image, reference, transform).array.astype(np.float64)
            sums[name] = sums.get(name, 0.0) + array
            weighted[name] = weighted.get(name, 0.0) + weight * array
    covered = weights > 1e-3
    average = {}
    for name, total in sums.items():
        mean = np.where(covered, weighted[name] / np.where(covered, weights, 1.0), total / len(subjects))
        average[name] = reference.with_array(mean.astype(np.float32))
    return average


def _affine(fixed: sitk.Image, moving: sitk.Image, iterations: int) -> sitk.Transform:
    dimension = fixed.GetDimension()
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.AffineTransform(dimension), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsCorrelation()
    # Every voxel: ITK's random sampling differs from run to run even with a seed and one thread (measured), and
    # on these sizes it saved little time.
    method.SetMetricSamplingStrategy(method.NONE)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=int(iterations), gradientMagnitudeTolerance=1e-8
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed, moving)


def _scalar(volume: Volume, what: str) -> sitk.Image:
    if not isinstance(volume, Volume):
        raise InputError(f"{what} must be a synthmr.io.Volume; got {type(volume).__name__}")
    if volume.array.ndim != volume.ndim:
        raise InputError(f"{what} must be a scalar image; got array shape {volume.array.shape} on a {volume.ndim}D grid")
    if not np.all(np.isfinite(volume.array)):
        raise InputError(f"{what} holds NaN or infinite values")
    return sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
