"""The result-cell readers (lare2lib.eval.results) on every form a metrics.json cell takes."""

from __future__ import annotations

import math

import pytest

from lare2lib.eval import results


@pytest.mark.parametrize(("cell", "value", "interval"), [
    (0.75, 0.75, (math.nan, math.nan)),
    (None, math.nan, (math.nan, math.nan)),
    ({"value": 0.8, "std": 0.1, "n": 3, "ci": [0.7, 0.9]}, 0.8, (0.7, 0.9)),
    ({"auc": 0.6, "low": 0.5, "high": 0.7}, math.nan, (0.5, 0.7)),
    ({"mean": 0.4, "std": 0.0, "n": 1}, 0.4, (math.nan, math.nan)),
    ({"value": None, "ci": [None, 0.3]}, math.nan, (math.nan, 0.3)),
])
def test_readers_accept_every_cell_form(cell, value, interval):
    got = results.cell_value(cell)
    assert (math.isnan(got) and math.isnan(value)) or got == value
    assert [math.isnan(x) if math.isnan(y) else x == y
            for x, y in zip(results.cell_interval(cell), interval)] == [True, True]


def test_an_explicit_key_wins_and_std_is_nan_without_seeds():
    assert results.cell_value({"auc": 0.6, "value": 0.1}, "auc") == 0.6
    assert results.cell_std({"value": 1.0, "std": 0.25}) == 0.25
    assert math.isnan(results.cell_std(0.5))


def test_seed_cell_matches_a_hand_computed_mean_and_sample_std():
    cell = results.seed_cell([0.5, 0.7, 0.9], ci=(0.4, 1.0))
    assert cell["value"] == pytest.approx(0.7) and cell["std"] == pytest.approx(0.2)
    assert cell["n"] == 3 and cell["per_seed"] == [0.5, 0.7, 0.9] and cell["ci"] == [0.4, 1.0]
    assert results.seed_cell([0.3])["std"] == 0.0
    with pytest.raises(ValueError, match="at least one"):
        results.seed_cell([])


def test_table_values_reads_a_nested_table():
    table = {"kl_ae": {"kl_ldm": {"value": 0.9}, "vq_ldm": 0.5}}
    assert results.table_values(table) == {"kl_ae": {"kl_ldm": 0.9, "vq_ldm": 0.5}}
