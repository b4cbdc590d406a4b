"""synthmr.generation: case sets made block by block, the same bytes over 1 or 2 processes, resumed after a kill.

The method-free tests use a toy ``make`` (a case is noise drawn from its seed); the torchrun and kill tests run
`synthmr generate` with bundle liver_mmhcc_mask2mri, whose cases take milliseconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from synthmr.errors import InputError
from synthmr.generation import case_id, case_seed, write_case_set
from synthmr.io import Volume, write_image
from synthmr.phantom.dataset import phantom_datalist

GRID = {"spacing": (1.0, 1.0), "origin": (0.0, 0.0), "direction": np.eye(2)}


class Toy:
    """Writes case i as 8x8 noise drawn from case_seed(seed, i); counts the cases it made; may stop mid-way."""

    def __init__(self, seed, stop_after=None, bad=None):
        self.seed, self.stop_after, self.bad, self.made = seed, stop_after, bad, []

    def __call__(self, indices, folder):
        items = []
        for i in indices:
            if self.stop_after is not None and len(self.made) >= self.stop_after:
                raise KeyboardInterrupt  # what a kill looks like from inside: the run ends mid-block
            if i == self.bad:
                raise InputError(f"source of case {i} is broken")
            image = np.random.default_rng(case_seed(self.seed, i)).normal(size=(8, 8)).astype(np.float32)
            write_image(Volume(image, **GRID), folder / case_id(i) / "image.nii.gz")
            items.append({"case_id": case_id(i), "image": f"{case_id(i)}/image.nii.gz", "seed": case_seed(self.seed, i)})
            self.made.append(i)
        return items


def files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_set_has_its_cases_datalist_and_manifest_and_nothing_else(tmp_path):
    progress = []
    items = write_case_set(Toy(5), 5, tmp_path / "set", 5, block=2, description="toy", file_keys=["image"],
                           identity={"bundle": "toy", "version": "1.0"},
                           progress=lambda done, total: progress.append((done, total)))
    assert [item["image"] for item in items] == [str(tmp_path / "set" / case_id(i) / "image.nii.gz") for i in range(5)]
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["bundle"] == "toy" and manifest["version"] == "1.0" and manifest["n"] == 5
    assert manifest["cases"] == {case_id(i): case_seed(5, i) for i in range(5)}
    datalist = json.loads((tmp_path / "set" / "datalist.json").read_text())
    assert datalist["description"] == "toy" and [item["case_id"] for item in datalist["training"]] == [
        case_id(i) for i in range(5)]
    assert sorted(files(tmp_path / "set")) == sorted(
        ["datalist.json", "manifest.json", *(f"{case_id(i)}/image.nii.gz" for i in range(5))])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["set"]  # no partial folder left
    assert progress == [(2, 5), (4, 5), (5, 5)]


def test_a_run_stopped_mid_way_resumes_and_ends_with_the_same_set(tmp_path):
    write_case_set(Toy(3), 7, tmp_path / "whole", 3, block=2)
    stopped = Toy(3, stop_after=3)  # blocks {0, 1} done, block {2, 3} cut after case 2
    with pytest.raises(KeyboardInterrupt):
        write_case_set(stopped, 7, tmp_path / "set", 3, block=2)
    partial = tmp_path / ".set.partial"
    assert not (tmp_path / "set").exists() and (partial / case_id(2) / "image.nii.gz").is_file()
    resumed = Toy(3)
    write_case_set(resumed, 7, tmp_path / "set", 3, block=2)
    assert resumed.made == [2, 3, 4, 5, 6]  # the finished block is kept, the cut one made again whole
    assert files(tmp_path / "set") == files(tmp_path / "whole") and not partial.exists()


def test_a_partial_set_of_other_settings_is_refused_by_name(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write_case_set(Toy(3, stop_after=1), 4, tmp_path / "set", 3, identity={"weights": "a"})
    with pytest.raises(InputError, match=r"\.set\.partial: holds part of another set \(seed: 3 -> 4\)"):
        write_case_set(Toy(4), 4, tmp_path / "set", 4, identity={"weights": "a"})
    with pytest.raises(InputError, match=r"holds part of another set \(weights: 'a' -> 'b'\)"):
        write_case_set(Toy(3), 4, tmp_path / "set", 3, identity={"weights": "b"})


def test_a_user_mistake_mid_way_leaves_nothing_and_an_existing_set_is_kept(tmp_path):
    with pytest.raises(InputError, match="source of case 3 is broken"):
        write_case_set(Toy(0, bad=3), 5, tmp_path / "set", 0, block=2)
    assert list(tmp_path.iterdir()) == []
    write_case_set(Toy(0), 2, tmp_path / "set", 0)
    before = files(tmp_path / "set")
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        write_case_set(Toy(1), 2, tmp_path / "set", 1)
    assert files(tmp_path / "set") == before
    write_case_set(Toy(1), 2, tmp_path / "set", 1, overwrite=True)
    assert files(tmp_path / "set") != before


def test_a_bundle_without_a_generate_overlay_is_refused_by_name(tmp_path):
    from synthmr.bundle.runner import overlay_config

    (tmp_path / "configs").mkdir()
    with pytest.raises(InputError, match=r"bundle .* declares no synthetic data set \(no configs/generate.yaml\)"):
        overlay_config(tmp_path, "generate", "declares no synthetic data set")


@pytest.fixture(scope="module")
def liver_sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("liver_sources")
    phantom_datalist("liver", folder / "cases", n=2, seed=210610, dims=2, size=128, spacing=3.0, subtype="mmhcc")
    return folder / "cases" / "datalist.json"


def generate_command(sources, out, n, *, ranks=1):
    # torchrun's own options take --n as an abbreviation of theirs, so the count is given as -n.
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks)] if ranks > 1 else [
        sys.executable]
    return [*launcher, "-m", "synthmr", "generate", "liver_mmhcc_mask2mri", "-n", str(n), "--from", str(sources),
            "--out", str(out), "--seed", "5", "--device", "cpu"]


def test_two_processes_under_torchrun_write_the_same_bytes_as_one(liver_sources, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, ranks in (("one", 1), ("two", 2)):
        result = subprocess.run(generate_command(liver_sources, tmp_path / name, 18, ranks=ranks),
                                capture_output=True, text=True, env=environment)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert len([name for name in one if name.endswith("t2.nii.gz")]) == 18
    assert one == two
    assert json.loads(one["manifest.json"])["bundle"] == "liver_mmhcc_mask2mri"


def test_a_killed_run_restarted_ends_with_the_same_set(liver_sources, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    n = 120  # 15 blocks of 8: the kill lands after the first
    process = subprocess.Popen(generate_command(liver_sources, tmp_path / "set", n), env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial, deadline = tmp_path / ".set.partial", time.monotonic() + 300
    while not any(partial.glob("case_*/.item.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    made = len(list(partial.glob("case_*/.item.json")))
    assert 0 < made < n and not (tmp_path / "set").exists()
    result = subprocess.run(generate_command(liver_sources, tmp_path / "set", n), capture_output=True, text=True,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "generate [" in result.stdout and f"{made}/{n} cases" in result.stdout  # it started from what was made
    subprocess.run(generate_command(liver_sources, tmp_path / "whole", n), check=True, env=environment,
                   capture_output=True)
    assert files(tmp_path / "set") == files(tmp_path / "whole") and not partial.exists()
