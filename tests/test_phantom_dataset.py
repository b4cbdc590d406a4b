"""phantom_datalist: a bundle's default data is simulated once, reused, and never silently replaced."""

import json

import pytest

from synthmr.errors import InputError
from synthmr.phantom.dataset import phantom_datalist


def test_simulates_once_then_reuses_and_refuses_another_recipe(tmp_path):
    out = tmp_path / "train"
    items = phantom_datalist("breast", out, n=2, seed=3, dims=2, size=64)
    assert [item["case_id"] for item in items] == ["case_0000", "case_0001"]
    stamp = (out / "datalist.json").stat().st_mtime_ns
    again = phantom_datalist("breast", out, n=2, seed=3, dims=2, size=64)
    assert again == items and (out / "datalist.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    with pytest.raises(InputError, match="holds another phantom dataset"):
        phantom_datalist("breast", out, n=3, seed=3, dims=2, size=64)
    assert len(phantom_datalist("breast", out, n=2, seed=3, dims=2, size=64)) == 2


def test_a_dataset_simulated_by_another_synthmr_release_is_not_reused(tmp_path):
    # The same seed draws other cases after a phantom change: training on the old ones would be silent staleness.
    out = tmp_path / "train"
    phantom_datalist("breast", out, n=1, seed=3, dims=2, size=64)
    datalist = json.loads((out / "datalist.json").read_text())
    datalist["phantom"]["synthmr"] = "0.0.1"
    (out / "datalist.json").write_text(json.dumps(datalist))
    with pytest.raises(InputError, match="0.0.1"):
        phantom_datalist("breast", out, n=1, seed=3, dims=2, size=64)
