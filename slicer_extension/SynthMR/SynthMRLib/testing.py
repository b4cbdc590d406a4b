"""A tiny bundle that follows the ``synthmr run`` contract, for the module's self-test and the pytest suite.

It needs no weights and no GPU: its "network" is one config expression, so a test checks the whole path (scene ->
files -> runner -> scene) in seconds and can tell exactly what the output must be. Its interface exercises every
kind of input role: a reference volume, a required organ mask with declared labels, and an optional lesion that
supports every lesion edit; and both kinds of output: an image and a label map.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

INTERFACE = {
    "spatial_dims": 2,
    "inputs": {
        "t1_pre": {"kind": "volume", "sequence": "t1_pre", "description": "pre-contrast T1-weighted image"},
        "liver": {"kind": "labelmap", "labels": {"1": "liver"}, "description": "liver mask"},
        "tumor": {"kind": "labelmap", "labels": {"1": "tumor"}, "description": "tumour mask", "required": False},
    },
    "outputs": {
        "t1_post1": {"kind": "volume", "sequence": "t1_post1", "description": "synthetic first phase"},
        "tumor_shown": {"kind": "labelmap", "labels": {"1": "tumor"}, "description": "where the output shows a tumour"},
    },
    "reference": "t1_pre",
    "organ_mask": "liver",
    "lesion": "tumor",
    "lesion_edits": ["translate", "scale", "mirror", "transplant"],
}
# Output = 2 * t1_pre + 100 inside the tumour: a test sees both the image and where the (edited) lesion went; the
# label map output is the tumour it drew.
LESION_CONTRAST = 100
DEFAULT_RUN = (
    "$@progress(0, 2) if @progress is not None else None",
    "$write_image(@image.with_array(2 * @image.array + @tumor_contrast), @output_path)",
    "$write_image(@image.with_array((@tumor_contrast > 0) * numpy.ones(@image.array.shape, 'uint8')), @label_path)",
    "$@progress(2, 2) if @progress is not None else None",
)
_CONFIG_HEAD = """\
imports:
  - $import numpy
  - $from synthmr.io import read_image
  - $from synthmr.io import write_image
bundle_root: .
device: "$torch.device('cpu')"
input: {{}}
output_dir: "$@bundle_root + '/output'"
progress: null
image: "$read_image(@input['t1_pre'])"
tumor_contrast: "$({contrast} * (read_image(@input['tumor']).array > 0)) if 'tumor' in @input else 0"
output_path: "$@output_dir + '/' + @input['case_id'] + '/t1_post1.nii.gz'"
label_path: "$@output_dir + '/' + @input['case_id'] + '/tumor_shown.nii.gz'"
initialize: []
finalize: []
run:
"""


def write_test_bundle(folder: str | os.PathLike, name: str = "synthmr_test", run: Sequence[str] = DEFAULT_RUN) -> Path:
    """Write the test bundle as ``<folder>/<name>`` and return its folder.

    Args:
        folder: where to create the bundle folder.
        name: the bundle's (folder) name.
        run: the config expressions of its ``run`` section (default: output = 2 * t1_pre + 100 * tumour).
    """
    bundle = Path(folder) / name
    (bundle / "configs").mkdir(parents=True)
    metadata = {
        "version": "0.1.0",
        "monai_version": "1.4.0",
        "pytorch_version": "2.4.0",
        "numpy_version": "1.26.4",
        "required_packages_version": {},
        "task": "SynthMR module test",
        "description": "doubles t1_pre and brightens the tumour",
        "authors": "SynthMR",
        "copyright": "SynthMR",
        "network_data_format": {"inputs": {"image": {}}, "outputs": {"pred": {}}},
        "synthmr": INTERFACE,
    }
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    config = _CONFIG_HEAD.format(contrast=LESION_CONTRAST) + "".join(f"  - {json.dumps(item)}\n" for item in run)
    (bundle / "configs" / "inference.yaml").write_text(config, encoding="utf-8")
    return bundle
