"""Read and write medical images without losing their grid (spacing, origin, direction).

Every format goes through SimpleITK, which keeps the physical grid of NIfTI, NRRD, MetaImage and DICOM
alike; pydicom writes DICOM series because that needs control over each slice's tags. Everything the user
can get wrong raises :class:`~synthmr.errors.InputError` with a one-line message that starts with the path.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import nibabel
import numpy as np
import pydicom
import SimpleITK as sitk
from nibabel.arrayproxy import ArrayProxy
from nibabel.openers import ImageOpener
from nibabel.spatialimages import HeaderDataError
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.misc import is_dicom
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from synthmr.errors import InputError
from synthmr.io._atomic import atomic_output, check_destination
from synthmr.io.volume import Volume

# Extension -> the ITK reader for it. Naming the reader (instead of letting ITK probe every format) makes a
# damaged file fail with that format's own complaint rather than "no reader found".
READ_FORMATS = {
    ".nii": "NiftiImageIO",
    ".nii.gz": "NiftiImageIO",
    ".nrrd": "NrrdImageIO",
    ".nhdr": "NrrdImageIO",
    ".mha": "MetaImageIO",
    ".mhd": "MetaImageIO",
    ".dcm": "GDCMImageIO",
}
IMAGE_EXTENSIONS = tuple(READ_FORMATS)
# Only single-file formats: a detached header (.nhdr, .mhd) plus its data file cannot be renamed atomically.
WRITE_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".mha")
_COMPRESSED_EXTENSIONS = (".nii.gz", ".nrrd")
_FORMAT_NAMES = {"NiftiImageIO": "NIfTI", "NrrdImageIO": "NRRD", "MetaImageIO": "MetaImage", "GDCMImageIO": "DICOM"}
# Types the formats cannot hold (bool, float16) or that only waste space (float64) -> what is written instead.
_STORED_DTYPES = {np.dtype(bool): np.uint8, np.dtype(np.float16): np.float32, np.dtype(np.float64): np.float32}

# Storage classes whose image-plane tags (position, orientation, spacing) GDCM and ITK honour on reading;
# Secondary Capture would lose the grid. Each needs its own type-1/type-2 module attributes (DICOM PS3.3
# C.8.3.1 MR Image Module, C.8.2.1 CT Image Module); "RM" = research mode, the honest label for synthesis.
_SOP_CLASSES = {"MR": MRImageStorage, "CT": CTImageStorage}
_MODALITY_ATTRIBUTES = {
    "MR": {"ScanningSequence": "RM", "SequenceVariant": "NONE", "ScanOptions": "", "MRAcquisitionType": "",
           "EchoTime": "", "EchoTrainLength": ""},
    "CT": {"KVP": ""},
}
_INT16 = np.iinfo(np.int16)
# Largest image read. 2**31 voxels (8 GiB as float32) is twice a 1024^3 volume, beyond any MR acquisition; a header
# declaring more is damaged or hostile, and ITK would try to allocate all of it before reading a byte.
MAX_VOXELS = 2**31
# Deflate cannot compress better than about 1032:1 (RFC 1951: the longest match, 258 bytes, costs at least two bits
# of code, which bounds the ratio near 1032:1), so a compressed file shorter than 1/1032 of its declared data cannot
# hold it.
_DEFLATE_MAX_RATIO = 1032
# Bytes of file at least needed per declared byte of voxels, by NRRD encoding (teem's NRRD format). bzip2 is left
# out: its ratio has no useful bound. ascii: at least one character per value of at most 8 bytes.
_NRRD_MIN_BYTES_PER_BYTE = {
    "raw": 1.0, "gzip": 1 / _DEFLATE_MAX_RATIO, "gz": 1 / _DEFLATE_MAX_RATIO, "hex": 2.0,
    "ascii": 1 / 8, "text": 1 / 8, "txt": 1 / 8,
}
_TEXT_HEADER_BYTES = 1 << 16  # NRRD and MetaImage headers are a few hundred bytes; read no further looking for them
# Slices whose spacing varies by more than this fraction are not one regular grid (missing or extra slices).
_SLICE_GAP_TOLERANCE = 0.01
_SAME_POSITION_MM = 1e-4  # slices this close are one position repeated (echoes, b-values, phases)


def image_extension(path: str | os.PathLike) -> str | None:
    """The known image extension ``path`` ends with (case-insensitive, longest match), or None."""
    name = Path(path).name.lower()
    matches = [ext for ext in READ_FORMATS if name.endswith(ext)]
    return max(matches, key=len) if matches else None


def read_image(
    path: str | os.PathLike, allow_nonfinite: bool = False, series_uid: str | None = None
) -> Volume:
    """Read an image file or a DICOM series folder into a :class:`Volume`, keeping its grid.

    Args:
        path: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``, a single DICOM file (``.dcm``
            or any file with the DICOM preamble), or a folder holding a DICOM series (its subfolders are
            not searched).
        allow_nonfinite: keep NaN/inf voxels instead of refusing the image.
        series_uid: SeriesInstanceUID to read when the folder holds several series.

    Returns:
        The volume in ITK index order ``(x, y[, z])``. Axes are never dropped: a single DICOM slice or a
        3D file with one slice reads as a 3D volume whose last dimension is 1 (its slice spacing is what
        GDCM reports: SpacingBetweenSlices, else 1 mm, not SliceThickness). Images with more than three
        dimensions (e.g. 4D fMRI/DCE NIfTI) are refused; split them into 3D volumes first. A DICOM series
        whose slices are not evenly spaced (a missing slice, repeated positions) is refused too.

    Raises:
        InputError: the path is missing, has an unsupported format, cannot be decoded (corrupt or
            truncated), declares more voxels than its file can hold or than :data:`MAX_VOXELS` (checked
            before any voxel is read), holds several DICOM series and no ``series_uid``, has more than three
            dimensions, or has non-finite voxels while ``allow_nonfinite`` is false.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        image = _read_dicom_series(path, series_uid)
    elif series_uid is not None:
        raise InputError(f"{path}: series_uid selects a series inside a DICOM folder; this is a single file")
    else:
        image = _read_file(path)
    if image.GetDimension() > 3:
        raise InputError(
            f"{path}: {image.GetDimension()}D image of size {image.GetSize()}; only 2D and 3D images are "
            "read, split it into 3D volumes first"
        )
    volume = Volume.from_sitk(image)
    if not path.is_dir() and READ_FORMATS.get(image_extension(path)) == "NiftiImageIO":
        _restore_nifti_nonfinite(path, volume.array)
    bad = 0 if allow_nonfinite else _count_nonfinite(volume.array)
    if bad:
        raise InputError(
            f"{path}: {bad} of {volume.array.size} voxels are NaN or infinite; pass allow_nonfinite=True to keep them"
        )
    return volume


def _read_file(path: Path) -> sitk.Image:
    reader = _reader_for(path)
    try:
        _check_declared_size(path, reader)
        image = sitk.ReadImage(str(path), imageIO=reader)
    except RuntimeError as error:
        if reader == "NiftiImageIO" and _is_nifti2(path):
            reason = "NIfTI-2 is not supported by SimpleITK, save it as NIfTI-1"
        else:
            reason = _itk_reason(error, path)
        raise InputError(f"{path}: cannot be read as {_FORMAT_NAMES[reader]} ({reason})") from None
    return image


def _reader_for(path: Path) -> str:
    """The ImageIO for the file ``path``, always named: left to probe, ITK tries every format, and its HDF5
    probe prints dozens of HDF5-DIAG lines on stderr for a path it cannot open (a folder)."""
    extension = image_extension(path)
    if extension is not None:
        return READ_FORMATS[extension]
    if is_dicom(path):
        return "GDCMImageIO"
    raise InputError(
        f"{path}: unsupported image format; supported: {', '.join(IMAGE_EXTENSIONS)}, a DICOM file, "
        "or a folder holding a DICOM series"
    )


def image_size(path: str | os.PathLike) -> tuple[int, ...]:
    """The size ``(x, y[, z])`` of the image file or DICOM series folder at ``path``, read from headers only.

    Raises:
        InputError: the path is missing or not an image :func:`read_image` reads.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            files = _series_files(path, None)
            return (*_header(Path(files[0]), "GDCMImageIO").GetSize()[:2], len(files))
        return _header(path, _reader_for(path)).GetSize()
    except RuntimeError as error:
        raise InputError(f"{path}: cannot be read ({_itk_reason(error, path)})") from None


def _header(path: Path, reader: str) -> sitk.ImageFileReader:
    """A reader that has read the header of ``path`` and no voxels."""
    header = sitk.ImageFileReader()
    header.SetImageIO(reader)
    header.SetFileName(str(path))
    header.ReadImageInformation()
    return header


class _Declared(NamedTuple):
    """What a header declares about its voxels."""

    size: tuple[int, ...]  # per axis, then components when there are several
    kind: str  # the voxel type, for messages: "float32", or "16-bit" for DICOM
    data_file: Path | None  # the file holding the voxels; None when the header names several
    least_bytes: int  # the shortest data_file that can hold them


def _check_declared_size(path: Path, reader: str) -> None:
    """Refuse, before any voxel is read, a header that declares more than :data:`MAX_VOXELS` or more data than
    its file can hold: ITK allocates the declared size first, so a 60-byte file could cost gigabytes before it
    fails."""
    if reader == "NiftiImageIO":
        declared = _nifti_declared(path)
    elif reader in ("NrrdImageIO", "MetaImageIO"):
        declared = _itk_declared(path, reader)
    else:
        declared = _dicom_declared(path)
    if declared is None:  # no header we can parse: ITK's own error says what is wrong
        return
    _check_voxel_count(path, declared)
    if declared.data_file is None:
        return
    if not declared.data_file.is_file():
        raise InputError(f"{path}: its data file {declared.data_file.name} is missing")
    held = declared.data_file.stat().st_size
    if held < declared.least_bytes:
        holder = "the file" if declared.data_file == path else f"its data file {declared.data_file.name}"
        # least_bytes, not the voxel bytes alone: with the header's offset or a compression bound, those could be
        # fewer than the file holds and the message would contradict itself.
        needed = f"{declared.least_bytes} bytes" + (
            f" ({_in_units(declared.least_bytes)})" if declared.least_bytes >= 1024 else ""
        )
        raise InputError(
            f"{path}: header declares {_described(declared)}, which need at least {needed}, but {holder} holds "
            f"only {held} bytes; truncated or damaged"
        )
    # A gzip stream cut short still holds far more than 1/1032 of its data: decompressing it is the only check.
    if reader == "NiftiImageIO" and _is_gzip(path) and not _gzip_complete(path):
        raise InputError(f"{path}: truncated or damaged NIfTI file (less voxel data than its header declares)")


def _check_voxel_count(path: Path, declared: _Declared) -> None:
    if math.prod(declared.size) > MAX_VOXELS:
        raise InputError(
            f"{path}: header declares {_described(declared)}, more than {MAX_VOXELS} voxels; damaged header?"
        )


def _described(declared: _Declared) -> str:
    return f"{'x'.join(map(str, declared.size))} {declared.kind} voxels"


def _nifti_declared(path: Path) -> _Declared:
    """Refuses what ITK's NIfTI library would complain about straight to stderr, or what would make nibabel raise
    (unknown datatype, unusable vox_offset) while the voxels are checked for NaN."""
    header = _nifti_header(path)
    if header is None:
        raise InputError(f"{path}: cannot be read as NIfTI (no NIfTI-1 or NIfTI-2 header at its start)")
    dim, offset = [int(d) for d in header["dim"]], float(header["vox_offset"])
    empty = [axis for axis in range(1, dim[0] + 1) if dim[axis] < 1] if 1 <= dim[0] <= 7 else []
    try:
        dtype = header.get_data_dtype()
    except KeyError:
        dtype = None
    problem = (
        f"dim[0] is {dim[0]}, not 1 to 7" if not 1 <= dim[0] <= 7
        else f"dim[{empty[0]}] is {dim[empty[0]]}, not a positive size" if empty
        else f"unknown datatype {int(header['datatype'])}" if dtype is None
        else f"vox_offset is {offset}" if not (math.isfinite(offset) and offset >= 0)
        else None
    )
    if problem:
        raise InputError(f"{path}: cannot be read as NIfTI (damaged header: {problem})")
    end = _nifti_end(header)  # the header and the voxels are both inside a gzip stream
    return _Declared(header.get_data_shape(), dtype.name, path, end // _DEFLATE_MAX_RATIO if _is_gzip(path) else end)


def _is_gzip(path: Path) -> bool:
    """Whether the .nii.gz at ``path`` really is gzip: ITK's NIfTI library (zlib) reads an uncompressed file by
    that name as it is, while nibabel goes by the name and fails."""
    if not path.name.lower().endswith(".gz"):
        return False
    with open(path, "rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def _dicom_declared(path: Path) -> _Declared | None:
    """The pixels a DICOM file declares, from pydicom's reading of the elements before them; None when pydicom
    cannot read those (GDCM's error then says what is wrong). GDCM allocates Rows x Columns x frames before it
    reads the pixel data element, whatever that element's length."""
    try:
        with open(path, "rb") as stream, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's complaints about odd values; GDCM judges those
            header = pydicom.dcmread(stream, stop_before_pixels=True, force=True)
            pixels_at = stream.tell()  # pydicom stops at the start of the pixel data element
        bits, samples = int(header.BitsAllocated), int(header.get("SamplesPerPixel") or 1)
        size = (int(header.Columns), int(header.Rows), int(header.get("NumberOfFrames") or 1))
        syntax = header.file_meta.get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian)
        raw = not (syntax.is_compressed or syntax.is_deflated)  # deflated: the stream position is not the file's
    except Exception:  # noqa: BLE001 (pydicom raises many types for a damaged file; GDCM reports it)
        return None
    size = (*size, samples) if samples > 1 else size
    least = pixels_at + math.ceil(math.prod(size) * bits / 8)
    return _Declared(size, f"{bits}-bit", path if raw else None, least)


def _nifti_header(path: Path) -> nibabel.Nifti1Header | None:
    """The NIfTI-1 or NIfTI-2 header of ``path`` (nibabel reads it without the voxels; unchecked, since ITK
    reads headers that nibabel's checks refuse), or None when the file starts with neither."""
    try:
        with ImageOpener(path, "rb") if _is_gzip(path) else open(path, "rb") as stream:
            block = stream.read(nibabel.Nifti2Header.template_dtype.itemsize)
    except (OSError, EOFError):  # includes a damaged gzip stream
        return None
    for kind in (nibabel.Nifti1Header, nibabel.Nifti2Header):
        block_size = kind.template_dtype.itemsize
        if len(block) >= block_size and kind.may_contain_header(block[:block_size]):
            return kind(block[:block_size], check=False)
    return None


def _nifti_end(header: nibabel.Nifti1Header) -> int:
    """Offset just past the last voxel byte of a single-file NIfTI (of its uncompressed stream)."""
    return int(header.get_data_offset()) + math.prod(header.get_data_shape()) * header.get_data_dtype().itemsize


def _itk_declared(path: Path, reader: str) -> _Declared:
    """Size and type of a NRRD or MetaImage from ITK's reading of its header; data file and encoding from the
    header text, which ITK does not report."""
    header = _header(path, reader)
    components = header.GetNumberOfComponents()
    dtype = sitk.GetArrayViewFromImage(sitk.Image([1, 1], header.GetPixelID(), components)).dtype
    size = (*header.GetSize(), components) if components > 1 else header.GetSize()
    fields, header_bytes = _text_header(path, reader)
    if reader == "NrrdImageIO":
        name = fields.get("data file", fields.get("datafile"))
        per_byte = _NRRD_MIN_BYTES_PER_BYTE.get(fields.get("encoding", "raw").lower(), 0.0)
    else:
        name = fields.get("elementdatafile")
        name = None if name and name.upper() == "LOCAL" else name
        per_byte = 1 / _DEFLATE_MAX_RATIO if fields.get("compresseddata", "").lower() == "true" else 1.0
    least = math.floor(math.prod(size) * dtype.itemsize * per_byte)
    if name is None:  # attached: the data follows the header
        return _Declared(size, dtype.name, path, header_bytes + least)
    if len(name.split()) > 1 or name.upper() == "LIST" or "%" in name:  # a list or pattern of data files
        return _Declared(size, dtype.name, None, 0)
    return _Declared(size, dtype.name, path.parent / name, least)


def _text_header(path: Path, reader: str) -> tuple[dict[str, str], int]:
    """The fields of a NRRD ("key: value") or MetaImage ("Key = Value") header, keys lower-case, and its length
    in bytes. A NRRD header ends at a blank line, a MetaImage header with its ElementDataFile line."""
    with open(path, "rb") as stream:
        head = stream.read(_TEXT_HEADER_BYTES)
    separator = ":" if reader == "NrrdImageIO" else "="
    fields, length = {}, 0
    for line in head.split(b"\n"):
        length += len(line) + 1
        text = line.decode("latin-1").strip()
        if reader == "NrrdImageIO" and not text:
            break
        key, _, value = text.partition(separator)
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break
    return fields, min(length, len(head))


def _in_units(size: int) -> str:
    """A byte count for people: 2147483648 -> "2.0 GiB"."""
    power = min(3, (size.bit_length() - 1) // 10) if size else 0
    return f"{size} bytes" if power == 0 else f"{size / 1024**power:.1f} {('KiB', 'MiB', 'GiB')[power - 1]}"


def _itk_reason(error: RuntimeError, path: Path) -> str:
    """The informative line of a SimpleITK exception, without source locations, object addresses and the
    path (our message starts with it already)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1:] or lines or ["unknown error"]  # line 0 names SimpleITK's source file
    message = detail[0]
    if message.endswith(":") and len(detail) > 1:  # e.g. NRRD: "Error reading x:" ... the actual cause last
        message = f"{message} {detail[-1]}"
    message = re.sub(r"^(?:sitk::ERROR:|(?:ITK ERROR:|itk::ERROR:) \w+\(0x[0-9a-fA-F]+\):)\s*", "", message)
    return message.replace(str(path), "file")


def _is_nifti2(path: Path) -> bool:
    return isinstance(_nifti_header(path), nibabel.Nifti2Header)


def _gzip_complete(path: Path) -> bool:
    """True when the gzip stream of the ``.nii.gz`` at ``path`` holds every voxel byte its header declares."""
    end = _nifti_end(_nifti_header(path))
    # A gzip file ends with its uncompressed size mod 2**32 (RFC 1952); a file cut short ends in
    # compressed data instead, so a match spares decompressing the whole file a second time.
    if _gzip_trailer_size(path) == end % 2**32:
        return True
    try:
        with ImageOpener(path, "rb") as stream:
            stream.seek(end - 1)  # this decompresses up to there
            return len(stream.read(1)) == 1
    except (EOFError, OSError):  # a gzip stream cut short fails while decompressing
        return False


def _gzip_trailer_size(path: Path) -> int:
    with open(path, "rb") as stream:
        stream.seek(-4, os.SEEK_END)
        return int.from_bytes(stream.read(4), "little")


def _restore_nifti_nonfinite(path: Path, array: np.ndarray) -> None:
    """Put back into ``array`` the NaN and infinite voxels of a floating-point NIfTI file, which ITK's reader
    turns into 0 without a word, so that they are refused or, when allowed, kept."""
    header = _nifti_header(path)
    # Integer data cannot hold NaN or infinity; a scaling that overflows shows in ITK's array, checked as it is.
    if header is None or not np.issubdtype(header.get_data_dtype(), np.floating):
        return
    shape, dtype, offset = header.get_data_shape(), header.get_data_dtype(), header.get_data_offset()
    if _is_gzip(path):
        stored = np.asanyarray(ArrayProxy(path, (shape, dtype, offset)))  # as stored, scaling not applied
    else:  # mapped directly: nibabel would take an uncompressed file named .nii.gz for gzip
        stored = np.memmap(path, dtype, "r", offset, shape, order="F")
    bad = ~np.isfinite(stored)
    if not bad.any():
        return
    try:
        slope, inter = header.get_slope_inter()
    except HeaderDataError:  # a finite slope with an invalid intercept, which ITK ignores
        slope, inter = header["scl_slope"], None
    array[bad.reshape(array.shape)] = stored[bad] * (1.0 if slope is None else slope) + (inter or 0.0)


@contextmanager
def _itk_warnings_off():
    """Silence ITK's warnings, which go straight to stderr (GDCM's "No Series were found" for a folder without
    DICOM files): the InputError says it in one line. The switch is process-wide, so it is restored at once."""
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def _series_files(folder: Path, series_uid: str | None) -> tuple[str, ...]:
    """The files, in slice order, of the DICOM series ``series_uid`` in ``folder``, or of its only series."""
    with _itk_warnings_off():
        found = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        if not found:
            raise InputError(f"{folder}: no DICOM series in this folder (subfolders are not searched)")
        if series_uid is None:
            if len(found) > 1:
                raise InputError(
                    f"{folder}: holds {len(found)} DICOM series ({', '.join(found)}); pass series_uid= to pick one"
                )
            series_uid = found[0]
        elif series_uid not in found:
            raise InputError(f"{folder}: no DICOM series {series_uid} here (found: {', '.join(found)})")
        return sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)


def _read_dicom_series(folder: Path, series_uid: str | None) -> sitk.Image:
    files = _series_files(folder, series_uid)
    # ITK allocates the first slice's size times the number of files, then reads each file as one slice.
    first = _dicom_declared(Path(files[0]))
    if first is not None:
        _check_voxel_count(folder, first._replace(size=(*first.size[:2], len(files))))
    for file in files:
        _check_declared_size(Path(file), "GDCMImageIO")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(f"{folder}: cannot read its DICOM series ({_itk_reason(error, folder)})") from None
    _check_regular_slices(folder, reader, image)
    return image


def _check_regular_slices(folder: Path, reader: sitk.ImageSeriesReader, image: sitk.Image) -> None:
    """Refuse a series whose slice positions are not evenly spaced: one spacing would misplace slices."""
    normal = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
    positions = [
        float(np.dot([float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")], normal))
        for i in range(len(reader.GetFileNames()))
        if reader.HasMetaDataKey(i, "0020|0032")
    ]
    gaps = np.abs(np.diff(positions))
    if gaps.size and (np.ptp(gaps) > _SLICE_GAP_TOLERANCE * gaps.mean() or gaps.min() < _SAME_POSITION_MM):
        raise InputError(
            f"{folder}: slice spacing varies from {gaps.min():.4g} to {gaps.max():.4g} mm (missing or "
            "duplicate slices?); a volume needs evenly spaced slices"
        )


def _count_nonfinite(array: np.ndarray) -> int:
    if not np.issubdtype(array.dtype, np.inexact):
        return 0
    return array.size - np.count_nonzero(np.isfinite(array))


def write_image(volume: Volume, path: str | os.PathLike, overwrite: bool = False, notes: str | None = None,
                fields: Mapping[str, str] | None = None) -> Path:
    """Write ``volume`` as NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``) or MetaImage (``.mha``).

    The data type follows the array, except bool -> uint8 and float16/float64 -> float32 (float64 doubles
    the file size for precision no MR image has). ``.nii.gz`` and ``.nrrd`` are compressed. The file is
    written under a temporary name in the same folder and renamed into place, so ``path`` is either the
    complete new image or untouched; missing parent folders are created.

    Args:
        volume: the image and its grid.
        path: destination; its extension picks the format.
        overwrite: replace an existing file.
        notes: one line of description in the header (NIfTI's ``descrip``, at most 80 characters kept).
        fields: further key-value header fields (NRRD and MetaImage keep them; NIfTI has no place for them).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: unsupported extension, ``path`` exists and ``overwrite`` is false, or ITK cannot write.
    """
    path = Path(path)
    extension = image_extension(path)
    if extension not in WRITE_EXTENSIONS:
        raise InputError(f"{path}: cannot write this format; use one of {', '.join(WRITE_EXTENSIONS)}")
    check_destination(path, overwrite)
    stored_dtype = _STORED_DTYPES.get(volume.array.dtype, volume.array.dtype)
    image = volume.with_array(volume.array.astype(stored_dtype, copy=False)).to_sitk()
    if notes:
        image.SetMetaData("ITK_FileNotes", notes[:80])  # ITK's NIfTI writer puts it in descrip
    for key, value in (fields or {}).items():
        image.SetMetaData(key, value)
    with atomic_output(path, suffix=extension, overwrite=overwrite) as temporary:
        try:
            sitk.WriteImage(image, str(temporary), useCompression=extension in _COMPRESSED_EXTENSIONS)
        except RuntimeError as error:
            raise InputError(f"{path}: cannot be written ({_itk_reason(error, temporary)})") from None
    return path


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike,
    overwrite: bool = False,
    modality: str = "MR",
    series_description: str = "",
    attributes: Mapping[str, object] | None = None,
) -> Path:
    """Write a 3D volume as a DICOM series, one file per slice, that reads back on the same grid.

    Voxels are stored as int16 with one RescaleSlope/RescaleIntercept for the whole series, so a reader
    recovers ``stored * slope + intercept``: integer volumes within the int16 range are exact, other volumes
    are within ``slope / 2`` (their range divided into 65535 steps). Every slice carries its position,
    orientation and spacing, and all share new Study, Series and Frame-of-Reference UIDs.

    A DICOM series has no handedness of its own (readers order slices along row x column direction), so a
    left-handed grid is written with its slice axis reversed: reading it back gives the same voxels at the
    same physical positions, on the equivalent right-handed grid.

    The series is written to a temporary folder beside ``folder`` and renamed into place.

    Args:
        volume: 3D scalar volume with an orthonormal direction and finite values.
        folder: destination folder; it must not exist or be empty, unless ``overwrite``, in which case an
            existing folder is replaced only if it holds nothing but DICOM files.
        overwrite: replace an existing series folder.
        modality: ``"MR"`` (MR Image Storage) or ``"CT"`` (CT Image Storage).
        series_description: SeriesDescription shown by DICOM browsers.
        attributes: further attributes every slice carries, by DICOM keyword (``PatientID``, ``AcquisitionTime``,
            ``ContrastBolusAgent``...); they replace the defaults, so the series of one study can share its
            ``StudyInstanceUID`` and ``FrameOfReferenceUID``.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: the volume cannot be stored as a series, or ``folder`` is in the way.
    """
    folder = Path(folder)
    _check_dicom_volume(volume, folder, modality)
    _check_dicom_destination(folder, overwrite)
    volume = _right_handed(volume)
    stored, slope, intercept = _int16_rescale(volume.array)
    series = {**_series_attributes(volume, modality, series_description, slope, intercept), **(attributes or {})}
    slices = volume.array.shape[2]
    digits = max(4, len(str(slices)))
    with atomic_output(folder, overwrite=overwrite) as temporary:
        temporary.mkdir()
        for index in range(slices):
            dataset = _slice_dataset(series, volume, stored[:, :, index], index)
            dataset.save_as(temporary / f"{index + 1:0{digits}d}.dcm", enforce_file_format=True)
    return folder


def _check_dicom_volume(volume: Volume, folder: Path, modality: str) -> None:
    if modality not in _SOP_CLASSES:
        raise InputError(f"{folder}: modality {modality!r} is not supported; use one of {', '.join(_SOP_CLASSES)}")
    if volume.ndim != 3 or volume.array.ndim != 3:
        raise InputError(
            f"{folder}: a DICOM series needs a 3D scalar volume, got array shape {volume.array.shape} on a "
            f"{volume.ndim}D grid"
        )
    if not np.allclose(volume.direction.T @ volume.direction, np.eye(3), atol=1e-4):
        raise InputError(f"{folder}: the volume's direction matrix is not orthonormal, DICOM cannot store it")
    bad = _count_nonfinite(volume.array)
    if bad:
        raise InputError(f"{folder}: {bad} voxels are NaN or infinite, which int16 DICOM pixels cannot hold")


def _check_dicom_destination(folder: Path, overwrite: bool) -> None:
    check_destination(folder, overwrite, what="folder")
    if folder.is_dir():
        others = [p.name for p in folder.iterdir() if not (p.is_file() and is_dicom(p))]
        if others:
            raise InputError(
                f"{folder}: holds files that are not DICOM ({', '.join(sorted(others)[:5])}); "
                "refusing to replace it"
            )


def _right_handed(volume: Volume) -> Volume:
    if np.linalg.det(volume.direction) > 0:
        return volume
    last_slice = volume.array.shape[2] - 1
    origin = np.asarray(volume.origin) + last_slice * volume.spacing[2] * volume.direction[:, 2]
    direction = volume.direction.copy()
    direction[:, 2] *= -1
    return Volume(volume.array[:, :, ::-1], volume.spacing, origin, direction)


def _int16_rescale(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(stored, slope, intercept)`` with ``array ~ stored * slope + intercept`` and int16 ``stored``."""
    values = array.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if low >= _INT16.min and high <= _INT16.max and np.array_equal(values, np.rint(values)):
        return values.astype(np.int16), 1.0, 0.0
    # DS strings hold 16 characters: round slope and intercept to what the file will say, then quantize
    # with exactly those values so the reader's reconstruction matches ours.
    slope = float(format_number_as_ds((high - low) / (_INT16.max - _INT16.min) or 1.0))
    intercept = float(format_number_as_ds(low - _INT16.min * slope))
    stored = np.clip(np.rint((values - intercept) / slope), _INT16.min, _INT16.max).astype(np.int16)
    return stored, slope, intercept


def _ds(values: np.ndarray | float) -> list[str] | str:
    """Decimal String(s) at the best precision DICOM's 16 characters allow."""
    if np.ndim(values):
        return [format_number_as_ds(float(v)) for v in np.ravel(values)]
    return format_number_as_ds(float(values))


def _series_attributes(
    volume: Volume, modality: str, description: str, slope: float, intercept: float
) -> dict[str, object]:
    """Attributes every slice of the series shares."""
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    columns, rows = volume.array.shape[:2]
    return {
        "SOPClassUID": _SOP_CLASSES[modality],
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "StudyDate": date,
        "StudyTime": time,
        "SeriesDate": date,
        "SeriesTime": time,
        "ContentDate": date,
        "ContentTime": time,
        "Modality": modality,
        "SeriesDescription": description,
        "SeriesNumber": 1,
        "StudyID": "",
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "PatientName": "",
        "PatientID": "",
        "PatientBirthDate": "",
        "PatientSex": "",
        "Manufacturer": "",
        "PositionReferenceIndicator": "",
        "ImageType": ["DERIVED", "SECONDARY"],
        # Row direction = increasing column index = array axis x; column direction = array axis y.
        "ImageOrientationPatient": _ds(volume.direction[:, :2].T),
        "PixelSpacing": _ds(np.array([volume.spacing[1], volume.spacing[0]])),  # (between rows, between columns)
        "SliceThickness": _ds(volume.spacing[2]),
        "SpacingBetweenSlices": _ds(volume.spacing[2]),
        "Rows": rows,
        "Columns": columns,
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 1,
        "RescaleSlope": _ds(slope),
        "RescaleIntercept": _ds(intercept),
        **_MODALITY_ATTRIBUTES[modality],
    }


def _slice_dataset(series: dict[str, object], volume: Volume, stored: np.ndarray, index: int) -> Dataset:
    """One slice file: the shared attributes plus its own position, instance and pixels."""
    position = np.asarray(volume.origin) + index * volume.spacing[2] * volume.direction[:, 2]
    dataset = Dataset()
    dataset.update(series)
    dataset.SOPInstanceUID = generate_uid()
    dataset.InstanceNumber = index + 1
    dataset.ImagePositionPatient = _ds(position)
    dataset.SliceLocation = _ds(np.dot(position, volume.direction[:, 2]))
    # DICOM pixel rows run along y and columns along x: the transpose of the (x, y) slice.
    dataset.PixelData = np.ascontiguousarray(stored.T).astype("<i2").tobytes()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset
