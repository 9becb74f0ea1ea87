"""retrofit.report.cost: the cost-of-retrofitting table, its verdicts, paragraph, instrument rows and figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrofit.report.compare import Comparer
from retrofit.report.cost import cell_label, change, cost_markdown, cost_rows, draw_cost
from retrofit.report.evaluations import beyond_cell, statistic_of
from tests.report.evals import make_eval


@pytest.fixture
def beyond_evals():
    return {
        "base": make_eval("base", 0.70, seed=1, beyond=0.80),
        "scale_0": make_eval("scale_0", 0.72, seed=2, beyond=0.80),  # the same quality beyond: no resolved change
        "scale_12": make_eval("scale_12", 0.80, seed=4, beyond=0.97),  # better everywhere
        "seed2": make_eval("seed2", 0.80, seed=5, beyond=0.96),
        "seed3": make_eval("seed3", 0.80, seed=6, beyond=0.97),
        "nohard": make_eval("nohard", 0.80, seed=7),  # not evaluated beyond: no row
    }


def test_cells_statistics_and_scores(beyond_evals) -> None:
    base = beyond_evals["base"]
    assert base.beyond_cells() == [beyond_cell("STS", "seen"), beyond_cell("STS", "unseen"),
                                   beyond_cell("Classification", "seen"), beyond_cell("Classification", "unseen"),
                                   beyond_cell("Clustering", "seen"), beyond_cell("Clustering", "unseen"),
                                   beyond_cell("BitextMining", "unseen")]
    assert statistic_of("beyond:STS:seen") == "spearman" and statistic_of("beyond:BitextMining:unseen") == "bitext_f1"
    values, unit = base.values("beyond:STS:unseen")
    assert list(values) == ["STSBenchmarkMultilingualSTS/fr"] and unit("stsb_multi_mt:3") == "stsb_multi_mt:3"
    assert base.values("beyond:Clustering:seen")[1] is None  # mteb's resamples, each subset on its own
    tasks = base.beyond["tasks"]
    assert base.score("beyond:Classification:seen") == tasks["SIB200Classification"]["scores"]["eng_Latn"]
    assert cell_label("beyond:STS:unseen") == "STS, unseen languages" and cell_label("primary").startswith("retrieval")


def test_rows_carry_the_arms_seeds_and_say_which_way(beyond_evals) -> None:
    cmp = Comparer(beyond_evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", resamples=300, seed=0, margin=0.05)
    rows = cost_rows(cmp, beyond_evals)
    assert {r["model"] for r in rows} == {"scale_0", "scale_12"}  # seed replicas fold into their arm; nohard has none
    top = {r["metric"]: r for r in rows if r["model"] == "scale_12"}
    assert top["primary"]["seeds"] == 3 and top["primary"]["noise"] == "seeds and questions"  # the base is fixed
    assert top["beyond:Classification:seen"]["verdict"] == "better"
    assert top["beyond:STS:seen"]["delta"] > 0
    flat = {r["metric"]: r for r in rows if r["model"] == "scale_0"}
    assert flat["primary"]["noise"] == "one seed: query noise only"
    assert change({"delta": 0.001, "lo": -0.01, "hi": 0.012, "lo90": -0.008, "hi90": 0.01}, 0.05) == "equivalent"
    assert change({"delta": 0.001, "lo": -0.01, "hi": 0.012, "lo90": -0.008, "hi90": 0.01}, 0.005) == (
        "not resolved at this scale")
    assert change({"delta": -0.02, "lo": -0.03, "hi": -0.01, "lo90": -0.03, "hi90": -0.01}, 0.05) == "worse"


def test_markdown_names_subsets_and_puts_the_base_beside_published(beyond_evals, tmp_path: Path) -> None:
    cmp = Comparer(beyond_evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", resamples=200, seed=0)
    rows = cost_rows(cmp, beyond_evals)
    text = "\n".join(cost_markdown(rows, beyond_evals, cmp.margin))
    assert "## The cost of retrofitting" in text and "SIB200Classification: eng_Latn, swh_Latn" in text
    assert "| `scale_12` (3 seeds) |" in text and "`scale_12` (3 seeds, seeds and questions): retrieval +" in text
    assert "| STSBenchmarkMultilingualSTS | fr | unseen |" in text and "| 79.32 |" in text  # the published fr score
    assert "1.18.0, `none`" in text and "1.12.75, `query: `" in text  # each task's protocol
    draw_cost(rows, tmp_path / "cost.png")
    assert (tmp_path / "cost.png").stat().st_size > 10_000
    assert cost_markdown([], beyond_evals, cmp.margin) == []


def test_the_report_writes_the_cost_everywhere_a_user_reads(beyond_evals, tmp_path: Path) -> None:
    import csv
    import json

    from retrofit.report.build import build_report
    from retrofit.report.readme import README_END, README_START, update_readme

    build_report(beyond_evals, [0, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md", resamples=100)
    assert "## The cost of retrofitting" in (tmp_path / "RESULTS.md").read_text()
    assert (tmp_path / "r/figures/cost.png").is_file()
    rows = list(csv.DictReader((tmp_path / "r/cost.csv").open()))  # dvc plots' forest
    assert {"label", "delta", "lo", "hi", "margin_lo", "margin_hi", "verdict"} <= set(rows[0])
    models = json.loads((tmp_path / "r/models.json").read_text())  # dvc metrics show
    assert models["scale_12"]["beyond:STS:unseen"] is not None and models["nohard"]["beyond:STS:unseen"] is None
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    update_readme(readme, tmp_path / "r")
    text = readme.read_text()
    assert "The cost of retrofitting" in text and "| `scale_12` (3 seeds) | +" in text
    assert "classification, unseen languages" in text
