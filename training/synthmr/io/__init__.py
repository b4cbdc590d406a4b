"""Reading and writing images and datalists, keeping geometry."""

from synthmr.io.brats import brats2023_datalist
from synthmr.io.datalist import load_datalist, read_json, save_datalist
from synthmr.io.image import read_image, write_dicom_series, write_image
from synthmr.io.volume import Volume
from synthmr.io.weights import load_weights

__all__ = [
    "Volume",
    "brats2023_datalist",
    "load_datalist",
    "load_weights",
    "read_image",
    "read_json",
    "save_datalist",
    "write_dicom_series",
    "write_image",
]
