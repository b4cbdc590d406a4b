"""Every card's *Train on your data* commands run as written: phantom export, convert, check-data, train.

The commands are read from the card itself, so the card cannot drift from what works. Two things change for a
test of seconds, each by a rule below and nothing else: the phantom stand-in makes fewer, smaller cases, and
each training merges the bundle's tiny_train.yaml (one short epoch). The card's own datalist, output and setting
flags are kept, so the run must end in a checkpoint where the card says.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Train on your data"
# Per bundle: (pattern, replacement) applied to each command: fewer and smaller phantom cases.
SMALLER = {
    "liver_mmhcc_mask2mri": [(r"--n \d+", "--n 10")],
    "breast_dce_pre2post": [(r"--n \d+", "--n 8"),
                            (r"--format dicom$", "--format dicom --size 64 --slices 16 --slice_spacing 5")],
    "breast_dce_patch_cgan": [(r"--n \d+", "--n 12"),
                              (r"--size 256 --slices 12 --slice_spacing 6", "--size 128 --slices 16 --slice_spacing 5")],
    "brain_lesion2mpmri": [(r"--n \d+", "--n 10"), (r"^(synthmr phantom brain .*)$", r"\1 --spacing 6.0")],
    "brain_tumor_fabrication": [(r"--n \d+", "--n 10"), (r"^(synthmr phantom brain .*)$", r"\1 --spacing 6.0")],
}


def card_commands(bundle: str) -> list[str]:
    """The shell commands of the card's first code block after its *Train on your data* heading, one per
    command (continuation lines joined, comments dropped)."""
    text = (ROOT / "bundles" / bundle / "docs" / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, f"{bundle}'s card has no '{SECTION}' section"
    block = re.search(r"```bash\n(.*?)```", text.split(SECTION, 1)[1], re.DOTALL)
    assert block, f"{bundle}'s '{SECTION}' section has no ```bash block"
    commands = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+", " ", line.split("  #", 1)[0]).strip()
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def for_a_test(command: str, bundle: str) -> str:
    for pattern, replacement in SMALLER[bundle]:
        command = re.sub(pattern, replacement, command)
    if "monai.bundle run" in command:
        def merged(match: re.Match) -> str:
            configs = match.group(1).strip('"')
            listed = configs[1:-1].split(",") if configs.startswith("[") else [repr(configs)]
            return f'--config_file "[{",".join([*listed, repr(f"bundles/{bundle}/configs/tiny_train.yaml")])}]"'

        command = re.sub(r'--config_file ("[^"]*"|\S+)', merged, command)
    return command


@pytest.mark.parametrize("bundle", sorted(SMALLER))
def test_the_cards_commands_run_as_written_and_end_in_a_trained_checkpoint(bundle, tmp_path):
    (tmp_path / "bundles").symlink_to(ROOT / "bundles")  # the card's paths are relative to the repository root
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    commands = card_commands(bundle)
    kinds = [next((k for k in ("phantom", "convert", "check-data", "monai.bundle run") if k in c), None) for c in commands]
    assert {"phantom", "convert", "check-data", "monai.bundle run"} <= set(kinds), commands
    for command, kind in zip(commands, kinds):
        result = subprocess.run(["bash", "-c", for_a_test(command, bundle)], cwd=tmp_path, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        if kind == "check-data":
            assert result.stdout.startswith("no problems in "), result.stdout
    train = shlex.split(commands[-1])
    output_dir = tmp_path / train[train.index("--output_dir") + 1]
    assert (output_dir / "checkpoints" / "last.pt").is_file() and (tmp_path / train[train.index("--best_model") + 1]).is_file()
