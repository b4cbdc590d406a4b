"""synthmr.io: images keep their grid through every format, bad input fails clearly, datalists round-trip."""

from __future__ import annotations

import datetime
import gzip
import json
import os
import re
import shutil
import tracemalloc
from pathlib import Path

import nibabel
import nilearn
import numpy as np
import pydicom
import pytest
import torch
from nibabel.testing import data_path as NIBABEL_DATA

import synthmr.io.image as image_module
from grids import oblique_volume
from synthmr.errors import InputError
from synthmr.io import (
    Volume,
    brats2023_datalist,
    load_datalist,
    load_weights,
    read_image,
    save_datalist,
    write_dicom_series,
    write_image,
)
from synthmr.io.image import image_size

MNI_T1 = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def assert_same_grid(actual: Volume, expected: Volume, atol: float) -> None:
    assert actual.array.shape == expected.array.shape
    np.testing.assert_allclose(actual.spacing, expected.spacing, atol=atol)
    np.testing.assert_allclose(actual.origin, expected.origin, atol=atol)
    np.testing.assert_allclose(actual.direction, expected.direction, atol=atol)


def test_oblique_volume_is_a_proper_rotation():
    direction = oblique_volume().direction
    assert np.linalg.det(direction) == pytest.approx(1.0)
    assert np.abs(direction - np.eye(3)).max() > 0.1


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("extension", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_file_round_trip_keeps_values_and_grid(tmp_path, extension):
    volume = oblique_volume()
    written = write_image(volume, tmp_path / "sub" / f"image{extension}")
    assert written == tmp_path / "sub" / f"image{extension}"
    back = read_image(written)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, volume.array)
    assert_same_grid(back, volume, atol=1e-5)


@pytest.mark.parametrize("extension", [".nii", ".nii.gz"])
def test_affine_matches_nibabel(tmp_path, extension):
    volume = oblique_volume()
    path = write_image(volume, tmp_path / f"image{extension}")
    loaded = nibabel.load(path)
    # nibabel is RAS and (x, y, z) ordered: this pins both the LPS->RAS flip and the array order.
    np.testing.assert_allclose(volume.affine, loaded.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), volume.array)


@pytest.mark.parametrize(
    ("dtype", "stored"),
    [(np.uint8, np.uint8), (np.int16, np.int16), (np.float32, np.float32), (bool, np.uint8), (np.float64, np.float32)],
)
def test_written_dtype_follows_the_array(tmp_path, dtype, stored):
    values = np.arange(24).reshape(2, 3, 4)
    volume = oblique_volume(values % 2 == 1 if dtype is bool else values.astype(dtype))
    back = read_image(write_image(volume, tmp_path / "image.nii.gz"))
    assert back.array.dtype == stored
    np.testing.assert_array_equal(back.array, volume.array.astype(stored))


def test_single_slice_stays_3d_and_2d_stays_2d(tmp_path):
    slab = Volume(np.ones((4, 5, 1), np.float32), (1.0, 1.0, 2.5), (0, 0, 0), np.eye(3))
    assert read_image(write_image(slab, tmp_path / "slab.nrrd")).array.shape == (4, 5, 1)
    flat = Volume(np.ones((4, 5), np.float32), (0.5, 0.7), (3.0, -2.0), np.eye(2))
    back = read_image(write_image(flat, tmp_path / "flat.nii.gz"))
    assert back.ndim == 2
    assert_same_grid(back, flat, atol=1e-5)


def test_dicom_series_round_trip(tmp_path):
    volume = oblique_volume()
    folder = write_dicom_series(volume, tmp_path / "series", series_description="synthetic T1")
    files = sorted(folder.iterdir())
    assert len(files) == volume.array.shape[2]
    headers = [pydicom.dcmread(f) for f in files]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "RescaleSlope"):
        assert len({h.data_element(keyword).value for h in headers}) == 1, keyword
    assert len({h.SOPInstanceUID for h in headers}) == len(headers)
    first = headers[0]
    assert first.SOPClassUID == pydicom.uid.MRImageStorage and first.SeriesDescription == "synthetic T1"
    assert [float(s) for s in first.PixelSpacing] == [1.1, 0.8]  # (between rows = y, between columns = x)
    assert float(first.SliceThickness) == 3.0 and (first.Rows, first.Columns) == (5, 6)

    back = read_image(folder)
    assert_same_grid(back, volume, atol=1e-3)
    slope = float(first.RescaleSlope)
    assert 0 < slope < np.ptp(volume.array) / 60000
    np.testing.assert_allclose(back.array, volume.array, atol=slope / 2 + 1e-4)


def test_dicom_series_stores_integer_volumes_exactly(tmp_path):
    labels = oblique_volume(np.random.default_rng(1).integers(0, 5, (6, 5, 4)).astype(np.uint8))
    back = read_image(write_dicom_series(labels, tmp_path / "labels", modality="CT"))
    assert pydicom.dcmread(next((tmp_path / "labels").iterdir())).SOPClassUID == pydicom.uid.CTImageStorage
    np.testing.assert_array_equal(back.array, labels.array)


def test_dicom_series_of_left_handed_grid_keeps_voxel_positions(tmp_path):
    volume = oblique_volume()
    volume.direction[:, 2] *= -1
    folder = write_dicom_series(volume, tmp_path / "series")
    # Instance numbers must follow the slice order readers use: along row x column direction.
    headers = sorted((pydicom.dcmread(f) for f in folder.iterdir()), key=lambda h: int(h.InstanceNumber))
    normal = np.cross(*np.reshape([float(v) for v in headers[0].ImageOrientationPatient], (2, 3)))
    heights = [np.dot([float(v) for v in h.ImagePositionPatient], normal) for h in headers]
    assert np.all(np.diff(heights) > 0)
    back = read_image(folder)
    last = volume.array.shape[2] - 1
    np.testing.assert_allclose(back.array[:, :, ::-1], volume.array, atol=1e-2)
    for i, j, k in [(0, 0, 0), (5, 4, 3), (2, 1, 1)]:
        np.testing.assert_allclose(back.affine @ [i, j, last - k, 1], volume.affine @ [i, j, k, 1], atol=1e-3)


def test_dicom_folder_with_two_series_needs_a_series_uid(tmp_path):
    write_dicom_series(oblique_volume(), tmp_path / "a")
    write_dicom_series(oblique_volume().with_array(np.zeros((6, 5, 4), np.float32)), tmp_path / "b")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    uids = []
    for name in ("a", "b"):
        for file in (tmp_path / name).iterdir():
            shutil.copy(file, mixed / f"{name}{file.name}")
        uids.append(pydicom.dcmread(file).SeriesInstanceUID)
    with pytest.raises(InputError) as error:
        read_image(mixed)
    assert str(mixed) in str(error.value) and all(uid in str(error.value) for uid in uids)
    assert not read_image(mixed, series_uid=uids[1]).array.any()


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    volume = oblique_volume(np.zeros((6, 5, 5), np.float32))
    folder = write_dicom_series(volume, tmp_path / "series")
    sorted(folder.iterdir())[2].unlink()
    with pytest.raises(InputError, match="slice spacing varies"):
        read_image(folder)


def test_dicom_series_refuses_what_it_cannot_store(tmp_path):
    flat = Volume(np.zeros((4, 5), np.float32), (1.0, 1.0), (0, 0), np.eye(2))
    with pytest.raises(InputError, match="3D scalar"):
        write_dicom_series(flat, tmp_path / "flat")
    nan = oblique_volume()
    nan.array[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_dicom_series(nan, tmp_path / "nan")
    with pytest.raises(InputError, match="modality"):
        write_dicom_series(oblique_volume(), tmp_path / "xa", modality="XA")
    assert not list(tmp_path.iterdir())


def test_dicom_series_overwrite_rules(tmp_path):
    folder = write_dicom_series(oblique_volume(), tmp_path / "series")
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    with pytest.raises(InputError, match="already exists") as error:
        write_dicom_series(oblique_volume(), folder)
    assert str(folder) in str(error.value)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before

    write_dicom_series(oblique_volume(np.ones((6, 5, 4), np.float32)), folder, overwrite=True)
    np.testing.assert_array_equal(read_image(folder).array, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]

    with raises_naming(tmp_path / "series" / "0001.dcm", "is not a folder"):
        write_dicom_series(oblique_volume(), tmp_path / "series" / "0001.dcm", overwrite=True)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not DICOM"):
        write_dicom_series(oblique_volume(), folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- files written by others


def test_reads_pydicom_mr_file(tmp_path):
    path = pydicom.data.get_testdata_file("MR_small.dcm")
    header = pydicom.dcmread(path)
    volume = read_image(path)
    assert volume.array.shape == (header.Columns, header.Rows, 1)
    np.testing.assert_allclose(volume.spacing[:2], [float(header.PixelSpacing[1]), float(header.PixelSpacing[0])])
    np.testing.assert_allclose(volume.origin, [float(v) for v in header.ImagePositionPatient], atol=1e-4)
    np.testing.assert_allclose(volume.direction[:, :2].T.ravel(), [float(v) for v in header.ImageOrientationPatient])
    np.testing.assert_array_equal(volume.array[:, :, 0].T, header.pixel_array)
    # The same file as a one-file series folder, named without extension the way scanners export it.
    (tmp_path / "series").mkdir()
    shutil.copy(path, tmp_path / "series" / "IM0001")
    np.testing.assert_array_equal(read_image(tmp_path / "series").array, volume.array)
    np.testing.assert_array_equal(read_image(tmp_path / "series" / "IM0001").array, volume.array)


@pytest.mark.parametrize("name", ["anatomical.nii", "standard.nii.gz"])
def test_reads_nibabel_nifti_files(name):
    path = Path(NIBABEL_DATA) / name
    assert path.is_file(), f"nibabel no longer ships {name}"
    reference = nibabel.load(path)
    volume = read_image(path)
    np.testing.assert_allclose(volume.spacing, reference.header.get_zooms()[:3], rtol=1e-6)
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-4)
    np.testing.assert_allclose(volume.array, reference.get_fdata(), rtol=1e-6)


def test_reads_nilearn_mni_template():
    assert MNI_T1.is_file(), "nilearn no longer ships the MNI152 2009 template"
    volume = read_image(MNI_T1)
    reference = nibabel.load(MNI_T1)
    assert volume.array.shape == reference.shape
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-4)


@pytest.mark.parametrize(("name", "problem"), [("example4d.nii.gz", "4D image"), ("example_nifti2.nii.gz", "NIfTI-2")])
def test_refuses_nibabel_files_it_cannot_represent(name, problem):
    path = Path(NIBABEL_DATA) / name
    assert path.is_file(), f"nibabel no longer ships {name}"
    with pytest.raises(InputError, match=problem) as error:
        read_image(path)
    assert str(path) in str(error.value)


# ---------------------------------------------------------------- bad input


def raises_naming(path: Path, match: str):
    """pytest.raises for an InputError whose message starts with ``path`` and contains ``match``."""
    return pytest.raises(InputError, match=f"^{re.escape(str(path))}: .*{match}")


def test_missing_file(tmp_path):
    with raises_naming(tmp_path / "nope.nii.gz", "no such file"):
        read_image(tmp_path / "nope.nii.gz")


def test_unsupported_extension_lists_supported_ones(tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(b"\x89PNG not really")
    with raises_naming(path, "unsupported image format.*\\.nii\\.gz.*\\.nrrd"):
        read_image(path)
    with raises_naming(tmp_path / "out.nhdr", "use one of .nii, .nii.gz, .nrrd, .mha"):
        write_image(oblique_volume(), tmp_path / "out.nhdr")


def test_garbage_file_is_one_short_line(tmp_path):
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(np.random.default_rng(0).bytes(600))
    with raises_naming(path, "cannot be read as NIfTI") as error:
        read_image(path)
    message = str(error.value)
    assert "\n" not in message and message.count(str(path)) == 1 and len(message) < len(str(path)) + 100


@pytest.mark.parametrize("extension", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_truncated_file_is_refused(tmp_path, extension):
    path = write_image(oblique_volume(), tmp_path / f"image{extension}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 60])
    with raises_naming(path, "(truncated|cannot be read)"):
        read_image(path)


def test_complete_gzip_of_a_short_nifti_is_refused(tmp_path):
    path = write_image(oblique_volume(), tmp_path / "image.nii")
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(path.read_bytes()[:-60]))
    with raises_naming(short, "truncated"):
        read_image(short)


def test_nonfinite_values(tmp_path):
    volume = oblique_volume()
    volume.array[0, 1, 2] = np.nan
    volume.array[1, 1, 2] = np.inf
    path = write_image(volume, tmp_path / "nan.nrrd")
    with raises_naming(path, "2 of 120 voxels are NaN or infinite"):
        read_image(path)
    assert np.isnan(read_image(path, allow_nonfinite=True).array[0, 1, 2])


@pytest.mark.parametrize("extension", [".nii", ".nii.gz"])
def test_nonfinite_nifti_voxels_are_not_zeroed(tmp_path, extension):
    # ITK's NIfTI reader turns NaN and infinity into 0; nibabel writes the file so ITK's writer is not involved.
    array = np.ones((6, 5, 4), np.float32)
    array[0, 1, 2], array[5, 4, 3] = np.nan, -np.inf
    affine = oblique_volume().affine
    path = tmp_path / f"nan{extension}"
    nibabel.save(nibabel.Nifti1Image(array, affine), path)
    with raises_naming(path, "2 of 120 voxels are NaN or infinite"):
        read_image(path)
    volume = read_image(path, allow_nonfinite=True)
    assert np.isnan(volume.array[0, 1, 2]) and volume.array[5, 4, 3] == -np.inf
    np.testing.assert_array_equal(np.isfinite(volume.array), np.isfinite(array))
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)


NRRD_2GIB = "NRRD0004\ntype: float\ndimension: 3\nsizes: 1024 1024 512\nendian: little\nencoding: {}\n{}\n"
META_2GIB = "ObjectType = Image\nNDims = 3\nDimSize = 1024 1024 512\nElementType = MET_FLOAT\n{}ElementDataFile = {}\n"


def _nifti_2gib() -> bytes:
    header = nibabel.Nifti1Header()
    header.set_data_shape((1024, 1024, 512))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    return header.binaryblock + bytes(4)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("big.nii.gz", lambda: gzip.compress(_nifti_2gib())),
        ("big.nii", _nifti_2gib),
        ("big.nrrd", lambda: NRRD_2GIB.format("raw", "").encode() + bytes(16)),
        ("big_gzip.nrrd", lambda: NRRD_2GIB.format("gzip", "").encode() + gzip.compress(bytes(1000))),
        ("big.nhdr", lambda: NRRD_2GIB.format("raw", "data file: big.raw\n").encode()),
        ("big.mha", lambda: META_2GIB.format("CompressedData = True\n", "LOCAL").encode() + bytes(16)),
        ("big.mhd", lambda: META_2GIB.format("", "big.raw").encode()),
    ],
)
def test_declared_size_is_checked_before_reading(tmp_path, name, content):
    (tmp_path / "big.raw").write_bytes(bytes(100))  # the detached data file of .nhdr and .mhd
    path = tmp_path / name
    path.write_bytes(content())
    tracemalloc.start()
    try:
        pattern = r"header declares 1024x1024x512 float32 voxels, which need at least \d+ bytes \(2\.0 [GM]iB\), but"
        with raises_naming(path, pattern + " .* holds only"):
            read_image(path)
        assert tracemalloc.get_traced_memory()[1] < 10_000_000  # the 2 GiB were never allocated
    finally:
        tracemalloc.stop()


def _patched_nifti(path: Path, **fields) -> Path:
    """A valid 6x5x4 float32 NIfTI written by nibabel, then its header fields replaced (``dim1=0`` sets dim[1])."""
    nibabel.save(nibabel.Nifti1Image(np.ones((6, 5, 4), np.float32), np.eye(4)), tmp := path.parent / "valid.nii")
    data = tmp.read_bytes()
    tmp.unlink()
    header = nibabel.Nifti1Header(data[:348], check=False)
    for name, value in fields.items():
        if name.startswith("dim"):
            dim = header["dim"]
            dim[int(name[3:])] = value
            name, value = "dim", dim
        header[name] = value
    data = header.binaryblock + data[348:]
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize(
    ("name", "fields", "problem"),
    [
        ("type.nii", {"datatype": 9999}, "unknown datatype 9999"),
        ("type.nii.gz", {"datatype": 9999}, "unknown datatype 9999"),
        ("nan_offset.nii", {"vox_offset": np.nan}, "vox_offset is nan"),
        ("negative_offset.nii", {"vox_offset": -352}, "vox_offset is -352"),
        ("empty.nii", {"dim1": 0}, r"dim\[1\] is 0"),
        ("negative.nii.gz", {"dim3": -4}, r"dim\[3\] is -4"),
    ],
)
def test_damaged_nifti_header_is_one_line_and_silent(tmp_path, capfd, name, fields, problem):
    path = _patched_nifti(tmp_path / name, **fields)
    with raises_naming(path, f"cannot be read as NIfTI \\(damaged header: {problem}"):
        read_image(path)
    assert capfd.readouterr().err == ""  # nothing from ITK's NIfTI library


def test_uncompressed_nifti_named_nii_gz_is_read(tmp_path):
    # ITK reads it as it is; nibabel, going by the name, would try to decompress it.
    array = np.arange(120, dtype=np.float32).reshape(6, 5, 4)
    array[1, 2, 3] = np.nan
    path = tmp_path / "plain.nii.gz"
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), tmp_path / "plain.nii")
    (tmp_path / "plain.nii").rename(path)
    assert path.read_bytes()[:2] != b"\x1f\x8b"
    with raises_naming(path, "1 of 120 voxels are NaN"):
        read_image(path)
    np.testing.assert_array_equal(read_image(path, allow_nonfinite=True).array, array)


def test_size_message_quotes_the_bytes_needed_with_the_offset(tmp_path):
    path = _patched_nifti(tmp_path / "offset.nii", vox_offset=1024)  # 832-byte file: 352 header + 480 voxels
    with raises_naming(path, r"6x5x4 float32 voxels, which need at least 1504 bytes \(1\.5 KiB\), but the file "
                             "holds only 832 bytes; truncated"):
        read_image(path)


def _dicom_slice(tmp_path: Path) -> Path:
    return next(write_dicom_series(oblique_volume(), tmp_path / "series").iterdir())


def test_dicom_declaring_more_pixels_than_it_holds_is_refused(tmp_path, capfd):
    path = _dicom_slice(tmp_path)
    header = pydicom.dcmread(path)
    header.Rows = header.Columns = 30000
    header.save_as(big := tmp_path / "big.dcm")
    tracemalloc.start()
    try:
        with raises_naming(big, r"30000x30000x1 16-bit voxels, which need at least \d+ bytes \(1\.7 GiB\), but "
                                r"the file holds only \d+ bytes"):
            read_image(big)
        assert tracemalloc.get_traced_memory()[1] < 10_000_000
    finally:
        tracemalloc.stop()
    header = pydicom.dcmread(path)
    header.Rows = 100  # 100x6 int16 = 1200 bytes, more than the file's 60 bytes of pixels and tags after them
    header.save_as(path)
    folder = path.parent
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: header declares 6x100x1 16-bit voxels"):
        read_image(folder)
    assert capfd.readouterr().err == ""


def test_dicom_beyond_max_voxels_is_refused(tmp_path, monkeypatch):
    path = _dicom_slice(tmp_path)
    monkeypatch.setattr(image_module, "MAX_VOXELS", 6 * 5 * 4 - 1)
    with raises_naming(path.parent, "header declares 6x5x4 16-bit voxels, more than 119 voxels"):
        read_image(path.parent)
    monkeypatch.setattr(image_module, "MAX_VOXELS", 29)
    with raises_naming(path, "header declares 6x5x1 16-bit voxels, more than 29 voxels"):
        read_image(path)
    monkeypatch.setattr(image_module, "MAX_VOXELS", 30)
    assert read_image(path).array.shape == (6, 5, 1)


def test_absurd_voxel_count_and_missing_data_file_are_refused(tmp_path):
    path = tmp_path / "huge.nrrd"
    path.write_bytes(b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4096 4096 4096\nencoding: gzip\n\n" + bytes(10**5))
    with raises_naming(path, "4096x4096x4096 uint8 voxels, more than 2147483648 voxels"):
        read_image(path)
    path = tmp_path / "image.mhd"
    path.write_text(META_2GIB.format("", "gone.raw"))
    with raises_naming(path, "data file gone.raw is missing"):
        read_image(path)


@pytest.mark.parametrize("extension", [".nii.gz", ".nrrd"])
def test_highly_compressed_images_are_read(tmp_path, extension):
    # Zeros compress about 1028:1, just within deflate's limit of 1032:1 that the size check relies on.
    volume = Volume(np.zeros((128, 128, 64), np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    assert not read_image(write_image(volume, tmp_path / f"zeros{extension}")).array.any()


def test_folders_are_one_line_and_silent(tmp_path, capfd):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not an image")
    for folder in (tmp_path / "empty", tmp_path / "text"):
        with raises_naming(folder, "no DICOM series"):
            read_image(folder)
    series = write_dicom_series(oblique_volume(), tmp_path / "series")
    assert image_size(series) == (6, 5, 4) and image_size(series / "0001.dcm") == (6, 5, 1)
    assert image_size(write_image(oblique_volume(), tmp_path / "image.nrrd")) == (6, 5, 4)
    assert capfd.readouterr().err == ""  # no GDCM warnings, no HDF5-DIAG from probing a folder


def test_series_uid_needs_a_folder(tmp_path):
    path = write_image(oblique_volume(), tmp_path / "image.mha")
    with raises_naming(path, "single file"):
        read_image(path, series_uid="1.2.3")


def test_existing_file_is_kept_without_overwrite(tmp_path):
    path = write_image(oblique_volume(), tmp_path / "image.nii.gz")
    before = path.read_bytes()
    with raises_naming(path, "already exists"):
        write_image(oblique_volume(np.zeros((6, 5, 4), np.float32)), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["image.nii.gz"]
    write_image(oblique_volume(np.zeros((6, 5, 4), np.float32)), path, overwrite=True)
    assert not read_image(path).array.any()
    (tmp_path / "folder.nii").mkdir()
    with raises_naming(tmp_path / "folder.nii", "is not a file"):
        write_image(oblique_volume(), tmp_path / "folder.nii", overwrite=True)
    assert (tmp_path / "folder.nii").is_dir()


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_image(oblique_volume(), tmp_path / "image.nii.gz")
    before = path.read_bytes()

    def write_half_then_fail(image, file_name, useCompression):
        Path(file_name).write_bytes(b"half an image")
        raise RuntimeError("Exception thrown in WriteImage: x.cxx:1:\nITK ERROR: NiftiImageIO(0x1f): disk full")

    monkeypatch.setattr(image_module.sitk, "WriteImage", write_half_then_fail)
    with raises_naming(path, "cannot be written \\(disk full\\)"):
        write_image(oblique_volume(), path, overwrite=True)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["image.nii.gz"]


# ---------------------------------------------------------------- datalists


def test_datalist_round_trip(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "dicom" / "case0").mkdir(parents=True)
    (data / "scans").mkdir()
    (data / "healthy").mkdir()  # a folder named like a class must not turn the class into a path
    (data / "images" / "a.nii.gz").write_bytes(b"")
    outside = tmp_path / "elsewhere" / "b.nrrd"
    outside.parent.mkdir()
    outside.write_bytes(b"")
    items = {
        "training": [
            {"image": str(data / "images" / "a.nii.gz"), "series": str(data / "dicom" / "case0"), "class": "healthy"},
            {"image": str(outside), "scans": str(data / "scans"), "class": "malignant", "grade": 2,
             "phases": [str(data / "images" / "a.nii.gz"), str(outside)]},
        ],
        "validation": [{"image": str(data / "images" / "a.nii.gz"), "class": "benign"}],
    }
    path = save_datalist(items, data / "datalist.json", extra={"name": "toy"})
    raw = json.loads(path.read_text())
    assert raw["name"] == "toy"
    assert raw["training"][0] == {"image": "images/a.nii.gz", "series": "dicom/case0", "class": "healthy"}
    assert raw["training"][1]["image"] == str(outside)
    assert raw["training"][1]["scans"] == "./scans"
    assert raw["training"][1]["phases"] == ["images/a.nii.gz", str(outside)]
    assert load_datalist(path) == items["training"]
    assert load_datalist(path, key="validation") == items["validation"]


def test_datalist_plain_string_items_become_images(tmp_path):
    (tmp_path / "x.nii").write_bytes(b"")
    (tmp_path / "list.json").write_text(json.dumps({"test": ["x.nii"]}))
    assert load_datalist(tmp_path / "list.json", key="test") == [{"image": str(tmp_path / "x.nii")}]


def test_datalist_errors(tmp_path):
    path = tmp_path / "list.json"
    with raises_naming(path, "not found"):
        load_datalist(path)
    path.write_text('{"training": [')
    with raises_naming(path, "not valid JSON"):
        load_datalist(path)
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz"}], "validation": []}))
    with raises_naming(path, "no key 'test'; keys present: 'training', 'validation'"):
        load_datalist(path, key="test")
    with raises_naming(path, f"training\\[0\\].image names {tmp_path / 'a.nii.gz'}, which does not exist"):
        load_datalist(path)
    before = path.read_text()
    with raises_naming(path, "already exists"):
        save_datalist({"training": []}, path)
    with raises_naming(path, "reuse datalist keys"):
        save_datalist({"training": []}, path, overwrite=True, extra={"training": 1})
    with raises_naming(path, "cannot be written as JSON"):
        save_datalist({"training": [{"weight": object()}]}, path, overwrite=True)
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["list.json"]


# ---------------------------------------------------------------- BraTS 2023 layout


def make_brats_case(root: Path, case_id: str, files: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f", "seg")) -> None:
    tiny = Volume(np.zeros((4, 4, 4), np.float32), (1.0, 1.0, 1.0), (0, 0, 0), np.eye(3))
    for suffix in files:
        write_image(tiny, root / case_id / f"{case_id}-{suffix}.nii.gz")


def test_brats_datalist(tmp_path):
    root = tmp_path / "BraTS2023"
    for case_id in ("BraTS-MEN-00004-000", "BraTS-GLI-00002-001", "BraTS-GLI-00000-000"):
        make_brats_case(root, case_id)
    (root / "notes").mkdir()
    (root / "README.txt").write_text("not a case")
    out = tmp_path / "lists" / "brats.json"
    datalist = brats2023_datalist(root, out=out)
    items = datalist["training"]
    assert [item["case_id"] for item in items] == ["BraTS-GLI-00000-000", "BraTS-GLI-00002-001", "BraTS-MEN-00004-000"]
    first = items[0]
    assert set(first) == {"t1n", "t1c", "t2w", "t2f", "label", "case_id"}
    assert first["label"] == str(root / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-seg.nii.gz")
    assert all(Path(item[key]).is_file() for item in items for key in ("t1n", "t1c", "t2w", "t2f", "label"))
    assert json.loads(out.read_text())["training"][0]["t2f"] == first["t2f"]  # root is not under lists/
    assert load_datalist(out) == items


def test_brats_datalist_in_root_keeps_case_ids(tmp_path):
    make_brats_case(tmp_path, "BraTS-PED-00001-000", files=("t1n", "t1c", "t2w", "t2f"))
    datalist = brats2023_datalist(tmp_path, out=tmp_path / "datalist.json")
    assert "label" not in datalist["training"][0]  # validation releases have no seg
    raw = json.loads((tmp_path / "datalist.json").read_text())["training"][0]
    assert raw["t1n"] == "BraTS-PED-00001-000/BraTS-PED-00001-000-t1n.nii.gz"
    assert load_datalist(tmp_path / "datalist.json")[0]["case_id"] == "BraTS-PED-00001-000"


def test_brats_incomplete_cases_are_errors(tmp_path):
    make_brats_case(tmp_path, "BraTS-GLI-00000-000")
    make_brats_case(tmp_path, "BraTS-GLI-00001-000", files=("t1n", "t1c", "t2w", "seg"))
    with raises_naming(tmp_path, "BraTS-GLI-00001-000 lacks t2f"):
        brats2023_datalist(tmp_path)
    (tmp_path / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-seg.nii.gz").rename(
        tmp_path / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t2f.nii.gz"
    )
    with raises_naming(tmp_path, "BraTS-GLI-00001-000 lacks seg while other cases have it"):
        brats2023_datalist(tmp_path)


def test_brats_root_without_cases(tmp_path):
    (tmp_path / "BraTS-GLI-0001").mkdir()  # wrong id pattern
    with raises_naming(tmp_path, "no BraTS 2023 case folders"):
        brats2023_datalist(tmp_path)
    with raises_naming(tmp_path / "absent", "not found"):
        brats2023_datalist(tmp_path / "absent")


# ---------------------------------------------------------------- network weights


def test_load_weights_accepts_wrapped_and_data_parallel_state_dicts(tmp_path):
    torch.manual_seed(0)
    trained = torch.nn.Linear(3, 2)
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}, "epoch": 7}, path)
    network = torch.nn.Linear(3, 2)
    assert load_weights(network, path) is network
    assert torch.equal(network.weight, trained.weight) and torch.equal(network.bias, trained.bias)


def test_load_weights_refusals_are_one_line_naming_the_file(tmp_path):
    good = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), good)
    bad = {
        "pickled.pt": lambda path: torch.save({"weight": torch.zeros(2, 3), "made": datetime.date(2024, 1, 1)}, path),
        "truncated.pt": lambda path: path.write_bytes(good.read_bytes()[:100]),
        "numbers.pt": lambda path: torch.save({"learning_rate": 0.1}, path),
    }
    for name, write in bad.items():
        write(tmp_path / name)
        with raises_naming(tmp_path / name, "not a weights file this bundle can load .*pickled Python objects"):
            load_weights(torch.nn.Linear(3, 2), tmp_path / name)
    with raises_naming(tmp_path / "absent.pt", "no such file"):
        load_weights(torch.nn.Linear(3, 2), tmp_path / "absent.pt")
    with raises_naming(good, "does not fit the network \\(2 missing key\\(s\\) e.g. 0.bias, 0.weight; 2 unexpected"):
        load_weights(torch.nn.Sequential(torch.nn.Linear(3, 2)), good)
    with raises_naming(good, "2 wrong shape key\\(s\\) e.g. bias, weight\\)$"):
        load_weights(torch.nn.Linear(3, 4), good)


def test_remove_own_staging_clears_open_outputs_and_the_folders_made_for_them(tmp_path):
    # What a signal handler that ends the process at once relies on: the open block's staging and the parents it
    # created go; a folder that held something before stays.
    from synthmr.io._atomic import atomic_output, remove_own_staging

    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "other.txt").write_text("x")
    expected = ["kept", "kept/other.txt"]
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "kept" / "new" / "deeper" / "out") as staging:
        staging.mkdir()
        (staging / "half.nii.gz").write_bytes(b"partial")
        remove_own_staging()
        assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == expected
        raise KeyboardInterrupt  # the block's own cleanup then finds nothing left to remove
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == expected
