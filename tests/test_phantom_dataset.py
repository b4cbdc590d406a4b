"""phantom_datalist: a bundle's default data is simulated once, reused, and never silently replaced."""

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
