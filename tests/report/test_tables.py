"""Tests for retrofit.report.tables: the tidy scores and the plot tables, every row inside its own interval."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from retrofit.report.compare import Comparer
from retrofit.report.evaluations import Evaluation
from retrofit.report.tables import plot_tables, tidy_rows, write_csv


@pytest.fixture
def cmp(evals: dict[str, Evaluation]) -> Comparer:
    return Comparer(evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", resamples=200, seed=0, margin=0.005)


def test_scale_table_is_each_points_gain_over_the_first(cmp: Comparer) -> None:
    scale = plot_tables(cmp, [0, 6, 12])["scale"]
    assert {r["family"] for r in scale} == {"primary", "mono", "cross", "pooled"}
    for r in scale:  # each point's gain over scale_0, inside its own interval; scale_0 itself is the zero
        assert r["lo"] <= r["gain"] <= r["hi"]
        if r["model"] == "scale_0":
            assert r["gain"] == 0.0
    top = next(r for r in scale if (r["model"], r["family"]) == ("scale_12", "primary"))
    assert top["gain"] == pytest.approx(cmp.compare("scale_12", "scale_0")["delta"])


def test_forest_tables_carry_the_margin_and_verdict(cmp: Comparer) -> None:
    tables = plot_tables(cmp, [0, 6, 12])
    ablation = tables["ablation"]
    assert [r["family"] for r in ablation] == ["primary", "mono", "cross", "pooled"]
    assert {r["comparison"] for r in ablation} == {"scale_12 - nohard"}
    assert all(r["margin_hi"] == pytest.approx(0.005) and r["lo"] <= r["delta"] <= r["hi"] for r in ablation)
    assert {r["comparison"] for r in tables["diversity"]} == {"div_task - div_lang"}
    assert tables["diversity"][0]["verdict"] == "opposite to the paper"


def test_tidy_rows_and_csv_round_trip(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    rows = tidy_rows(evals, [0, 6, 12])
    write_csv(tmp_path / "s.csv", rows, ["model", "scale", "benchmark", "family", "subset", "score"])
    back = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(back) == len(rows)
    mono_de = next(r for r in back if (r["model"], r["family"], r["subset"]) == ("base", "mono", "de"))
    assert float(mono_de["score"]) == pytest.approx(evals["base"].metrics["subsets"]["mono"]["de"]["ndcg_at_10"],
                                                    abs=1e-5)
    assert {r["scale"] for r in back if r["model"] == "scale_6"} == {"6"}
    assert {r["benchmark"] for r in back} >= {"xquad", "Tatoeba", "BelebeleRetrieval"}
