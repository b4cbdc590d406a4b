"""synthmr.transforms.registration: affine + demons registration, warping, and the group-average template."""

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.io.volume import Volume
from synthmr.transforms.registration import group_average, register, warp

SIZE = 24


def head(shift=(0.0, 0.0, 0.0), scale: float = 1.0) -> np.ndarray:
    """A smooth ellipsoid with a bright and a dark inner structure, shifted (voxels) and scaled."""
    grid = np.stack(np.meshgrid(*[np.arange(SIZE)] * 3, indexing="ij"), -1).astype(float)
    p = (grid - SIZE / 2 - np.asarray(shift)) / scale

    def inside(centre, radii):
        return np.sqrt(sum(((p[..., i] - centre[i]) / radii[i]) ** 2 for i in range(3))) < 1

    image = np.where(inside((0, 0, 0), (9, 7.5, 7)), 100.0, 0.0)
    image[inside((3, 0, 0), (2.5, 2.5, 2.5))] = 200.0
    image[inside((-4, 2, 0), (2, 3, 2))] = 30.0
    # Smooth by averaging shifted copies (no scipy in the core install).
    smooth = sum(np.roll(image, s, axis=a) for a in range(3) for s in (-1, 0, 1)) / 9.0
    return smooth.astype(np.float32)


def volume(array: np.ndarray, spacing: float = 2.0) -> Volume:
    return Volume(array, (spacing,) * 3, (10.0, -5.0, 3.0), np.eye(3))


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def test_registration_aligns_a_shifted_and_scaled_image():
    fixed, moving = volume(head()), volume(head(shift=(2.5, -1.5, 1.0), scale=1.1))
    before = mae(moving.array, fixed.array)
    affine = warp(moving, fixed, register(fixed, moving, deformable=False))
    deformed = warp(moving, fixed, register(fixed, moving))
    assert mae(affine.array, fixed.array) < 0.2 * before
    assert mae(deformed.array, fixed.array) <= mae(affine.array, fixed.array) * 1.05
    assert deformed.same_grid(fixed)


def test_warp_lands_on_the_reference_grid_and_keeps_labels():
    fixed = volume(head())
    moving = Volume(head(shift=(1.0, 0.0, 0.0)), (2.0,) * 3, (0.0, 0.0, 0.0), np.eye(3))  # another grid
    transform = register(fixed, moving, deformable=False)
    labels = moving.with_array((moving.array > 150).astype(np.uint8) * 4)
    warped = warp(labels, fixed, transform, interpolation="nearest")
    assert warped.same_grid(fixed)
    assert warped.array.dtype == np.uint8
    assert set(np.unique(warped.array)) <= {0, 4}
    truth = fixed.array > 150
    found = warped.array == 4
    assert 2 * (truth & found).sum() / (truth.sum() + found.sum()) > 0.8


def test_registration_is_deterministic():
    fixed, moving = volume(head()), volume(head(shift=(1.5, 1.0, -1.0), scale=0.95))
    a = warp(moving, fixed, register(fixed, moving)).array
    b = warp(moving, fixed, register(fixed, moving)).array
    assert np.array_equal(a, b)


def test_group_average_is_sharper_than_the_plain_mean():
    truth = head()
    subjects = []
    for shift, scale in [((0, 0, 0), 1.0), ((2, 1, 0), 1.06), ((-2, 0, 1), 0.95), ((1, -2, -1), 1.0)]:
        image = head(shift=shift, scale=scale)
        subjects.append({"t1": volume(image), "bright": volume((image > 150).astype(np.float32))})
    template = group_average(subjects, "t1", iterations=1)
    plain = np.mean([s["t1"].array for s in subjects], axis=0)
    assert mae(template["t1"].array, truth) < 0.4 * mae(plain, truth)
    assert template["t1"].same_grid(subjects[0]["t1"])
    # The second image rides on the first one's transforms: the bright structure's average stays where t1 has it.
    bright = template["bright"].array
    assert 0.0 <= bright.min() and bright.max() <= 1.0
    assert bright[truth > 150].mean() > 0.8


def test_bad_inputs_are_named():
    a = volume(head())
    with pytest.raises(InputError, match="at least 2 subjects"):
        group_average([{"t1": a}], "t1")
    with pytest.raises(InputError, match="driving image 't2'"):
        group_average([{"t1": a}, {"t1": a}], "t2")
    with pytest.raises(InputError, match="subject 1 has images"):
        group_average([{"t1": a}, {"t1": a, "t2": a}], "t1")
    with pytest.raises(InputError, match="NaN"):
        register(a, a.with_array(np.full(a.array.shape, np.nan, dtype=np.float32)))
    with pytest.raises(InputError, match="interpolation"):
        warp(a, a, register(a, a, deformable=False), interpolation="cubic")


def test_group_average_can_leave_a_mask_out():
    """A 'lesion' in two of three subjects: excluded, the template shows the other subject's tissue there."""
    base = head()
    lesion = np.zeros_like(base)
    lesion[8:12, 8:12, 10:14] = 1.0
    subjects = []
    for index in range(3):
        image = base.copy()
        if index < 2:
            image[lesion > 0] = 400.0
        subjects.append({"t1": volume(image), "lesion": volume(lesion if index < 2 else np.zeros_like(lesion))})
    plain = group_average(subjects, "t1", iterations=0)
    clean = group_average(subjects, "t1", iterations=0, exclude="lesion")
    inside = lesion > 0
    assert set(clean) == {"t1"}
    assert plain["t1"].array[inside].mean() > 250
    assert abs(clean["t1"].array[inside].mean() - base[inside].mean()) < 20
    with pytest.raises(InputError, match="excluded mask 'edema'"):
        group_average(subjects, "t1", exclude="edema")
