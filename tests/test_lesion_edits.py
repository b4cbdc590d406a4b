"""Lesion edits (synthmr.transforms.lesion) and `synthmr lesion`: exact voxel results on small cases."""

import numpy as np
import pytest

from synthmr.cli import main
from synthmr.errors import InputError
from synthmr.io import Volume, read_image, write_image
from synthmr.transforms import (
    ClipToMask,
    ComposeEdits,
    Mirror,
    Scale,
    Translate,
    Transplant,
    edit_lesion,
    left_right_axis,
)

SHAPE = (10, 8, 3)
SPACING = (0.5, 2.0, 4.0)
ORIGIN = (-12.0, 30.0, 7.5)
# Array axes 0 and 1 swapped in LPS, axis 2 reversed: axis 1 is the left-right one, steps of 2 mm.
DIRECTION = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def on_grid(array, direction=np.eye(3)):
    return Volume(np.asarray(array), SPACING, ORIGIN, direction)


def box(low, high, value=1, dtype=np.uint8):
    """A labelmap holding ``value`` in the index box [low, high) and 0 elsewhere."""
    array = np.zeros(SHAPE, dtype)
    array[tuple(slice(a, b) for a, b in zip(low, high))] = value
    return array


def voxels(volume):
    """The set of (index, value) of the non-zero voxels."""
    return {(tuple(int(i) for i in index), int(volume.array[tuple(index)])) for index in np.argwhere(volume.array)}


LESION = box((2, 3, 1), (4, 5, 2))  # x 2..3, y 3..4, z 1
LESION[3, 4, 1] = 2  # a second label, which must move with the first


def test_translate_in_voxels_moves_every_label_exactly():
    moved = Translate((3, -2, 1))(on_grid(LESION))
    assert voxels(moved) == {((x + 3, y - 2, z + 1), v) for (x, y, z), v in voxels(on_grid(LESION))}
    assert moved.same_grid(on_grid(LESION)) and moved.array.dtype == np.uint8


def test_translate_in_mm_follows_spacing_and_direction():
    # Axis 0 runs along LPS +y in 0.5 mm steps, axis 1 along -x in 2 mm steps, axis 2 along -z in 4 mm steps.
    lesion = on_grid(LESION, DIRECTION)
    moved = Translate((-4.0, 1.0, -4.0), unit="mm")(lesion)
    assert voxels(moved) == {((x + 2, y + 2, z + 1), v) for (x, y, z), v in voxels(lesion)}
    # Offsets are rounded half up to whole voxels: 0.24 mm is no step at 0.5 mm, 0.25 mm is one.
    assert voxels(Translate((0, 0.24, 0), unit="mm")(lesion)) == voxels(lesion)
    assert voxels(Translate((0, 0.25, 0), unit="mm")(lesion)) == {((x + 1, y, z), v) for (x, y, z), v in voxels(lesion)}


def test_translate_crops_what_leaves_the_image():
    moved = Translate((7, 0, 0))(on_grid(LESION))  # x 2..3 -> 9..10: only x = 9 is left
    assert {index[0] for index, _ in voxels(moved)} == {9}
    assert not Translate((-20, 0, 0))(on_grid(LESION)).array.any()


def test_scale_about_the_centroid_with_nearest_neighbour():
    lesion = on_grid(box((2, 2, 1), (4, 4, 2)))  # 2 x 2 x 1 voxels, centroid (2.5, 2.5, 1)
    # Every axis doubles; the one-voxel z extent becomes two voxels (round(0.5) = 1 reaches down, 1.5 does not).
    expected = {((x, y, z), 1) for x in range(1, 5) for y in range(1, 5) for z in (0, 1)}
    assert voxels(Scale(2)(lesion)) == expected
    big = on_grid(box((2, 2, 0), (6, 6, 3), value=3))  # 4 x 4 x 3, centroid (3.5, 3.5, 1)
    assert voxels(Scale(0.5)(big)) == {((x, y, 1), 3) for x in (3, 4) for y in (3, 4)}
    assert voxels(Scale(1)(on_grid(LESION))) == voxels(on_grid(LESION))


def test_scale_keeps_labels_and_refuses_bad_factors():
    scaled = Scale(3)(on_grid(LESION))
    assert set(np.unique(scaled.array)) == {0, 1, 2}
    for factor in (0, -1, float("nan")):
        with pytest.raises(InputError, match="scale factor"):
            Scale(factor)
    with pytest.raises(InputError, match="empty"):
        Scale(2)(on_grid(np.zeros(SHAPE, np.uint8)))


def test_mirror_about_the_image_mid_plane():
    # Identity direction: axis 0 is left-right; 10 columns -> x becomes 9 - x.
    mirrored = Mirror()(on_grid(LESION))
    assert voxels(mirrored) == {((9 - x, y, z), v) for (x, y, z), v in voxels(on_grid(LESION))}


def test_mirror_about_the_organ_mid_plane():
    organ = on_grid(box((1, 0, 0), (8, 8, 3)))  # x 1..7: mid-plane x = 4, so x becomes 8 - x
    mirrored = Mirror(organ)(on_grid(LESION))
    assert voxels(mirrored) == {((8 - x, y, z), v) for (x, y, z), v in voxels(on_grid(LESION))}
    # An even-sized organ puts the plane between two voxels, still an exact flip: x 1..6 -> x becomes 7 - x.
    assert voxels(Mirror(on_grid(box((1, 0, 0), (7, 8, 3))))(on_grid(LESION))) == {
        ((7 - x, y, z), v) for (x, y, z), v in voxels(on_grid(LESION))
    }


def test_mirror_flips_the_axis_closest_to_left_right():
    lesion = on_grid(LESION, DIRECTION)  # axis 1 runs along LPS x
    assert left_right_axis(lesion) == 1
    assert voxels(Mirror()(lesion)) == {((x, 7 - y, z), v) for (x, y, z), v in voxels(lesion)}
    # A 2D slice: the in-plane axis nearest to left-right, here axis 0.
    axial = Volume(LESION[:, :, 1], (1.0, 1.0), (0.0, 0.0), np.array([[0.8, -0.6], [0.6, 0.8]]))
    assert left_right_axis(axial) == 0
    assert voxels(Mirror()(axial)) == {((9 - x, y), v) for (x, y), v in voxels(axial)}


def test_transplant_replaces_the_lesion_and_places_its_centroid():
    donor = on_grid(box((5, 5, 0), (7, 7, 1), value=4))  # centroid (5.5, 5.5, 0)
    own = on_grid(LESION)
    assert voxels(Transplant(donor)(own)) == voxels(donor)  # kept where it is, own lesion gone
    placed = Transplant(donor, centre=(2, 3, 2))(own)  # offset round((-3.5, -2.5, 2)) = (-3, -2, 2)
    assert voxels(placed) == {((x - 3, y - 2, z + 2), 4) for (x, y, z), _ in voxels(donor)}
    in_mm = Transplant(donor, centre=np.add(ORIGIN, (1.0, 6.0, 8.0)), unit="mm")(own)  # index (2, 3, 2)
    assert voxels(in_mm) == voxels(placed)


def test_transplant_needs_a_donor_on_the_same_grid():
    shifted = Volume(box((5, 5, 0), (7, 7, 1)), SPACING, (0.0, 0.0, 0.0), np.eye(3))
    with pytest.raises(InputError, match="donor.nii.gz: is not on the lesion's grid"):
        Transplant(shifted, name="donor.nii.gz")(on_grid(LESION))
    with pytest.raises(InputError, match="empty"):
        Transplant(on_grid(np.zeros(SHAPE, np.uint8)))(on_grid(LESION))


def test_clip_to_mask_and_compose():
    organ = on_grid(box((0, 0, 0), (3, 8, 3)))  # x 0..2
    assert voxels(ClipToMask(organ)(on_grid(LESION))) == {(i, v) for i, v in voxels(on_grid(LESION)) if i[0] <= 2}
    chain = ComposeEdits([Translate((1, 0, 0)), ClipToMask(organ)])  # x 3..4: all outside
    assert not chain(on_grid(LESION)).array.any()


def test_edit_lesion_order_and_clipping():
    organ = on_grid(box((1, 0, 0), (8, 8, 3)))
    # Mirror about x = 4 (x 2..3 -> 5..6), then move +2 (-> 7..8), then clip to x <= 7.
    edited = edit_lesion(on_grid(LESION), mirror=True, translate=(2, 0, 0), organ=organ)
    assert voxels(edited) == {((8 - x + 2, y, z), v) for (x, y, z), v in voxels(on_grid(LESION)) if 8 - x + 2 <= 7}
    with pytest.raises(InputError, match="tumor.nii.gz: after the edits no lesion voxel is left .*outside liver"):
        edit_lesion(on_grid(LESION), translate=(6, 0, 0), organ=organ,
                    names={"lesion": "tumor.nii.gz", "organ": "liver"})
    with pytest.raises(InputError, match="is empty"):
        edit_lesion(on_grid(np.zeros(SHAPE, np.uint8)), scale=2)
    with pytest.raises(InputError, match="centre: places a transplanted lesion"):
        edit_lesion(on_grid(LESION), centre=(1, 1, 1))
    with pytest.raises(InputError, match="translation .*needs 3 finite values"):
        edit_lesion(on_grid(LESION), translate=(1, 2))
    with pytest.raises(InputError, match="non-integer"):
        edit_lesion(on_grid(LESION * 0.5), scale=2)


def test_cli_lesion_writes_the_edited_labelmap(tmp_path, capsys):
    lesion = write_image(on_grid(LESION, DIRECTION), tmp_path / "tumor.nii.gz")
    organ = write_image(on_grid(box((0, 0, 0), (10, 8, 3)), DIRECTION), tmp_path / "body.nrrd")
    out = tmp_path / "edited.nrrd"
    status = main(["lesion", "--lesion", str(lesion), "--organ", str(organ), "--translate=-1,2,0", "--scale", "1",
                   "--out", str(out)])
    assert status == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}: 4 lesion voxels"
    edited = read_image(out)
    assert edited.same_grid(read_image(lesion)) and edited.array.dtype == np.uint8
    assert voxels(edited) == {((x - 1, y + 2, z), v) for (x, y, z), v in voxels(on_grid(LESION))}


def test_cli_lesion_transplant_without_own_lesion(tmp_path):
    donor = write_image(on_grid(box((5, 5, 0), (7, 7, 1), value=4)), tmp_path / "donor.nii.gz")
    out = tmp_path / "placed.nii.gz"
    assert main(["lesion", "--transplant", str(donor), "--centre", "2,3,2", "--out", str(out)]) == 0
    assert voxels(read_image(out)) == {((x, y, 2), 4) for x in (2, 3) for y in (3, 4)}


@pytest.mark.parametrize(
    "args, words",
    [
        (["--translate", "1,2,3"], ["--out is required"]),
        (["--out", "x.nii.gz"], ["--lesion is required"]),
        (["--lesion", "missing.nii.gz", "--out", "x.nii.gz", "--mirror"], ["missing.nii.gz: no such file"]),
        (["--lesion", "{lesion}", "--out", "{out}", "--scale", "big"], ["--scale big: not a number"]),
        (["--lesion", "{lesion}", "--out", "{out}", "--translate", "1,2"], ["translation (1, 2)", "3 finite values"]),
        (["--lesion", "{lesion}", "--out", "{out}", "--mirror", "--unit", "inch"], ["unit 'inch'"]),
    ],
)
def test_cli_lesion_bad_input_is_one_line(tmp_path, capfd, args, words):
    lesion = write_image(on_grid(LESION), tmp_path / "tumor.nii.gz")
    out = tmp_path / "out.nii.gz"
    args = [arg.format(lesion=lesion, out=out) for arg in args]
    assert main(["lesion", *args]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("synthmr: error: ") and all(word in err[0] for word in words), err
    assert not out.exists()


# A combined organ-and-lesion map, as SAMR's: 1 normal brain, 2 edema, 4 tumour (x 1..8, y 1..6, z 0..2 brain).
BRAIN = box((1, 1, 0), (9, 7, 3), value=1)
COMBINED = BRAIN.copy()
COMBINED[2:4, 2:4, 1] = 2
COMBINED[2, 2, 1] = 4


def test_combined_map_moves_only_the_lesion_and_fills_its_old_place_with_tissue():
    edited = edit_lesion(on_grid(COMBINED), translate=(3, 2, 0), organ_labels=(1,))
    expected = BRAIN.copy()
    expected[5:7, 4:6, 1] = 2
    expected[5, 4, 1] = 4
    assert np.array_equal(edited.array, expected)
    assert edited.array.dtype == COMBINED.dtype


def test_combined_map_keeps_the_lesion_inside_the_organ():
    # Moved 6 voxels along x, the lesion's x 2..3 lands on 8..9: x 9 is outside the brain (x 1..8) and is cut.
    edited = edit_lesion(on_grid(COMBINED), translate=(6, 0, 0), organ_labels=1)
    assert np.array_equal(edited.array != 0, BRAIN != 0)
    assert {item for item in voxels(edited) if item[1] != 1} == {((8, 2, 1), 4), ((8, 3, 1), 2)}


def test_combined_map_transplant_takes_only_the_donors_lesion():
    donor = BRAIN.copy()
    donor[6, 4:6, 2] = 4  # the donor's normal tissue covers the whole brain box too; only its tumour moves
    edited = edit_lesion(on_grid(COMBINED), transplant=on_grid(donor), organ_labels=(1,))
    expected = BRAIN.copy()
    expected[6, 4:6, 2] = 4
    assert np.array_equal(edited.array, expected)


def test_combined_map_mirrors_about_the_organs_plane_and_names_bad_maps():
    mirrored = edit_lesion(on_grid(COMBINED), mirror=True, organ_labels=(1,))
    # Brain x 1..8: plane at 4.5, so x 2..3 -> 6..7 (axis 0 is left-right on the identity grid).
    assert {tuple(i) for i in np.argwhere(mirrored.array == 4)} == {(7, 2, 1)}
    with pytest.raises(InputError, match="no lesion voxels"):
        edit_lesion(on_grid(BRAIN), mirror=True, organ_labels=(1,))
    with pytest.raises(InputError, match="organ labels must be positive"):
        edit_lesion(on_grid(COMBINED), mirror=True, organ_labels=(0,))


def test_cli_lesion_edits_a_combined_map(tmp_path, capsys):
    lesion = write_image(on_grid(COMBINED), tmp_path / "lesion_map.nii.gz")
    out = tmp_path / "scaled.nii.gz"
    assert main(["lesion", "--lesion", str(lesion), "--organ_labels", "1", "--scale", "1", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}: 4 lesion voxels"
    assert np.array_equal(read_image(out).array, COMBINED)
    assert main(["lesion", "--lesion", str(lesion), "--organ_labels", "one", "--mirror", "--out", str(tmp_path / "x.nii.gz")]) == 2


def test_combined_map_keeps_its_other_tissue_labels_and_the_background_inside_an_organ_mask():
    """Only the voxels the lesion leaves become tissue: a second tissue label stays, and background inside a
    given organ mask stays background."""
    combined = COMBINED.copy()
    combined[7, 5, 0] = 5  # another tissue label
    organ = box((0, 0, 0), (10, 8, 3))  # the whole image: wider than the map's tissue
    edited = edit_lesion(on_grid(combined), translate=(3, 2, 0), organ=on_grid(organ), organ_labels=(1, 5))
    assert edited.array[7, 5, 0] == 5
    assert edited.array[0, 0, 0] == 0  # background inside the organ mask is not made tissue
    assert np.all(edited.array[2:4, 2:4, 1] == 1)  # the old place is tissue
    assert {item for item in voxels(edited) if item[1] not in (1, 5)} == {((5, 4, 1), 4), ((5, 5, 1), 2), ((6, 4, 1), 2), ((6, 5, 1), 2)}
