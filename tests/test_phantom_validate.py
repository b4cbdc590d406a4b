"""`synthmr phantom validate ORGAN`: every organ's figures in range on a small n, exit 1 when one is not."""

import math

import pytest
from test_cli import assert_clean_failure, run_cli

from synthmr import cli
from synthmr.phantom import validate as validation
from synthmr.phantom.validate import Figure, format_table, share_range


@pytest.mark.parametrize("organ", ["brain", "breast", "liver"])
def test_every_figure_of_the_phantom_is_in_its_documented_range(organ):
    # The acceptance runs in CI on a small n; the closing note reports n = 20 on two seed ranges.
    result = run_cli("phantom", "validate", organ, "--n", 5)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{organ} phantom, 5 case(s) from seed {validation.DEFAULT_SEED}"
    assert lines[1].split()[:3] == ["figure", "value", "range"]
    assert " OUT " not in result.stdout
    assert lines[-1].endswith("figures in range") and lines[-1].split()[0] == lines[-1].split()[2]


def test_a_figure_out_of_range_fails_with_status_1_and_names_it(monkeypatch, capsys):
    figures = [
        Figure("T2 lesion / tissue", 1.5, 1.1, 2.0, "a paper"),
        Figure("share of washout curves", 0.1, 0.4, 0.7, "another paper"),
    ]
    monkeypatch.setattr(validation, "validate", lambda organ, n, seed: figures)
    with pytest.raises(SystemExit) as stop:
        cli.main(["phantom", "validate", "liver", "--n", "3"])
    assert stop.value.code == 1
    out, err = capsys.readouterr()
    assert "1 of 2 figures in range" in out
    assert "OUT" in out.splitlines()[3] and "ok" in out.splitlines()[2]
    assert err.strip() == "synthmr: out of range: share of washout curves"


@pytest.mark.parametrize(
    "args, words",
    [
        (["phantom", "validate"], ["name one organ"]),
        (["phantom", "validate", "kidney"], ["kidney", "brain, breast, liver"]),
        (["phantom", "validate", "brain", "--n", 0], ["--n"]),
        (["phantom", "validate", "brain", "--out", "x"], ["--out"]),
        (["phantom", "validate", "brain", "--spacing", 3], ["--spacing"]),
        (["phantom", "brain", "stray", "--out", "x"], ["stray"]),
    ],
)
def test_bad_validate_arguments_are_one_line(args, words):
    assert_clean_failure(run_cli(*args), *words)


def test_figures_pass_only_inside_their_finite_range():
    assert Figure("x", 1.0, 1.0, 2.0, "s").passed and Figure("x", 2.0, 1.0, 2.0, "s").passed
    assert not Figure("x", 2.01, 1.0, 2.0, "s").passed
    assert Figure("x", 1e9, 1.0, math.inf, "s").passed
    assert not Figure("x", math.nan, -math.inf, math.inf, "s").passed


def test_share_ranges_widen_as_the_sample_shrinks_and_hold_their_coverage():
    import numpy as np

    small, large = share_range(0.3, 5), share_range(0.3, 200)
    assert small[0] < large[0] < 0.3 < large[1] < small[1]
    assert share_range(0.9, 3) == (pytest.approx(share_range(0.9, 3)[0]), 1.0)
    # 99 % nominal coverage: binomial draws of n = 20 fall inside at least 97 % of the time.
    low, high = share_range(0.57, 20)
    shares = np.random.default_rng(0).binomial(20, 0.57, 20000) / 20
    assert np.mean((shares >= low) & (shares <= high)) >= 0.97


def test_the_table_has_one_aligned_row_per_figure():
    table = format_table([Figure("a", 0.5, 0.0, math.inf, "src one", "mm"), Figure("longer name", 3.0, 1.0, 2.0, "s")])
    rows = table.splitlines()
    assert len(rows) == 3
    assert "0.5 mm" in rows[1] and "[0, inf]" in rows[1] and rows[1].rstrip().endswith("src one")
    assert " OUT " in rows[2]
    assert len({row.index("[") for row in rows[1:]}) == 1  # the range column lines up
