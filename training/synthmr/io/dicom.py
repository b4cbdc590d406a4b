"""Write a 3D volume as an MR DICOM series (one file per axial slice), with the tags that tell phases apart.

SynthMR reads DICOM through SimpleITK (:mod:`synthmr.io.duke`); it writes DICOM only to export simulated studies
in a public dataset's layout, so that the converters can be exercised end to end. Every written image says it is
not an acquired one: Image Type ``DERIVED\\SECONDARY`` (DICOM PS3.3, C.7.6.1.1.2: pixel values derived from other
data, created after the examination) and the manufacturer ``SynthMR``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from synthmr.io.volume import Volume


def write_series(volume: Volume, folder: str | os.PathLike, *, patient: str, study_uid: str, frame_uid: str,
                 description: str, time: str, series_number: int, contrast: str = "", scan_options: str = "",
                 slope: float = 1.0) -> Path:
    """Write ``volume`` (3D, LPS grid) as ``folder/<slice>.dcm`` files of one series; returns ``folder``.

    Geometry: Image Orientation (Patient) holds the LPS directions of the array's first two axes (columns run
    along x, rows along y), Image Position (Patient) the LPS position of each slice's first voxel, so a DICOM
    reader puts every voxel where the volume had it. Intensities are stored as unsigned 16-bit integers times
    ``slope`` (Rescale Slope; intercept 0): pass one slope for all series of a study to keep their relative
    intensities. UIDs are derived from the patient, study and description, so the same export is the same files.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    if volume.ndim != 3 or volume.array.ndim != 3:
        raise ValueError(f"write_series takes a 3D scalar volume, got an array of shape {volume.array.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = np.clip(np.rint(np.asarray(volume.array, np.float64) / slope), 0, 65535).astype(np.uint16)
    series_uid = generate_uid(entropy_srcs=[study_uid, description, str(series_number)])
    direction = np.asarray(volume.direction)
    for k in range(stored.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.Modality, ds.Manufacturer = "MR", "SynthMR"
        ds.PatientID, ds.PatientName = patient, patient
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        ds.SeriesDescription, ds.AcquisitionTime, ds.SeriesTime, ds.ContentTime = description, time, time, time
        ds.ContrastBolusAgent, ds.ScanOptions = contrast, scan_options
        ds.ImageOrientationPatient = [float(v) for v in (*direction[:, 0], *direction[:, 1])]
        position = np.asarray(volume.origin) + direction[:, 2] * volume.spacing[2] * k
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.PixelSpacing = [volume.spacing[1], volume.spacing[0]]  # row spacing (along y), column spacing (along x)
        ds.SliceThickness = ds.SpacingBetweenSlices = volume.spacing[2]
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, 0.0, "US"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        ds.save_as(folder / f"{k + 1:04d}.dcm", enforce_file_format=True)
    return folder
