"""Every synthetic image says it is synthetic: header mark, sidecar, `synthmr inspect`, lesion edits carried along."""

import hashlib
import json
import subprocess
import sys

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from synthmr.errors import InputError
from synthmr.inference import Synthesizer
from synthmr.io import Volume, write_image
from synthmr.provenance import describe, read_provenance, record, sidecar_path, write_synthetic

IDENTITY = {"bundle": "toy_bundle", "version": "1.2.3", "weights": {"path": "/w/model.pt", "sha256": "ab" * 32}}


def volume(array=None):
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4) if array is None else array
    return Volume(array, (1.0, 1.5, 2.0), (3.0, 4.0, 5.0), np.eye(3))


@pytest.mark.parametrize("name", ["out.nii.gz", "out.nrrd", "out.mha"])
def test_the_header_and_the_sidecar_say_synthetic_in_every_format(tmp_path, name):
    source = write_image(volume(), tmp_path / "source.nii.gz")
    path = write_synthetic(volume(), tmp_path / name, {**record(IDENTITY, {"t1_pre": source}, seed=7), "output": "x"})
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    assert reader.GetMetaData("ITK_FileNotes") == "SYNTHETIC: SynthMR toy_bundle 1.2.3"
    if name.endswith(".nii.gz"):  # where NIfTI readers other than ITK look
        assert nibabel.load(path).header["descrip"].tobytes().rstrip(b"\0") == b"SYNTHETIC: SynthMR toy_bundle 1.2.3"
    else:
        assert reader.GetMetaData("synthmr_synthetic") == "true"
        assert reader.GetMetaData("synthmr_weights_sha256") == "ab" * 32
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path).name == "out.json" and sidecar["file"] == name
    assert sidecar["synthetic"] is True and sidecar["bundle"] == "toy_bundle" and sidecar["seed"] == 7
    assert sidecar["inputs"]["t1_pre"]["relative"] == "source.nii.gz"
    assert sidecar["inputs"]["t1_pre"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_inspect_reads_the_sidecar_then_the_header_alone_and_names_an_unmarked_file(tmp_path):
    source = write_image(volume(), tmp_path / "source.nii.gz")
    path = write_synthetic(volume(), tmp_path / "t2.nii.gz", {**record(IDENTITY, {"t2": source}), "output": "t2"})
    text = describe(path)
    assert "SYNTHETIC, made by SynthMR" in text and "bundle toy_bundle 1.2.3" in text and str(source) in text
    sidecar_path(path).unlink()  # lost on the way: the header still says it
    assert read_provenance(path)["source"] == "header"
    assert "made by SynthMR (SYNTHETIC: SynthMR toy_bundle 1.2.3); its sidecar is missing" in describe(path)
    assert "no SynthMR mark" in describe(source)
    with pytest.raises(InputError, match="no such file"):
        describe(tmp_path / "absent.nii.gz")


def test_a_failed_write_leaves_neither_image_nor_sidecar_and_existing_outputs_are_kept(tmp_path):
    content = {**record(IDENTITY), "output": "x"}
    with pytest.raises(InputError):
        write_synthetic(volume(), tmp_path / "out.png", content)  # a format write_image refuses
    assert list(tmp_path.iterdir()) == []
    write_synthetic(volume(), tmp_path / "out.nii.gz", content)
    with pytest.raises(InputError, match="exists"):
        write_synthetic(volume(), tmp_path / "out.nii.gz", content)
    write_synthetic(volume(), tmp_path / "out.nii.gz", content, overwrite=True)


class Double(torch.nn.Module):
    def forward(self, x):
        return 2 * x[:, :1]


def test_a_lesion_edit_travels_from_synthmr_lesion_into_the_synthetic_outputs_sidecar(tmp_path):
    """synthmr lesion records its edits beside the edited map; a bundle run on it lists them in its outputs."""
    labels = np.zeros((8, 8, 3), np.uint8)
    labels[1:3, 2:5, 1] = 1
    lesion = write_image(Volume(labels, (1, 1, 1), (0, 0, 0), np.eye(3)), tmp_path / "lesion.nii.gz")
    image = write_image(Volume(np.random.default_rng(0).random((8, 8, 3)).astype(np.float32), (1, 1, 1), (0, 0, 0),
                               np.eye(3)), tmp_path / "t1.nii.gz")
    edited = tmp_path / "edited.nii.gz"
    result = subprocess.run([sys.executable, "-m", "synthmr", "lesion", "--lesion", str(lesion), "--mirror",
                             "--out", str(edited)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "edited, made by SynthMR" in describe(edited) and '"mirror": true' in describe(edited)
    Synthesizer(Double(), [{"case_id": "c", "t1": str(image), "lesion": str(edited)}], ["t1", "lesion"], ["out"],
                tmp_path / "synthetic", spatial_dims=2, roi_size=(8, 8), labelmaps=["lesion"], provenance=IDENTITY)()
    sidecar = json.loads((tmp_path / "synthetic" / "c" / "out.json").read_text())
    assert sidecar["lesion_edits"] == [{"mirror": True, "unit": "voxel"}]
    assert sidecar["inputs"]["lesion"]["provenance"]["synthetic"] is False  # the edited map's own record
    assert sidecar["weights"] == IDENTITY["weights"] and sidecar["precision"] == "float32"
