"""The plot stage's fan-in: tidy tables, verdicts against the seed spread, figures and RESULTS.md."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from retrofit.report import build_report, load_mmteb, mmteb_markdown, verdict

LANGS = ("de", "en")


def report(h: float, mono: float | None = None, cross: float | None = None, pooled: float | None = None) -> dict:
    fam = {"mono": mono or h, "cross": cross or h, "pooled": pooled or h}
    metrics = lambda x: {"ndcg_at_10": x, "recall_at_10": x, "mrr_at_10": x}  # noqa: E731
    subsets = {
        "mono": {lang: metrics(fam["mono"]) for lang in LANGS},
        "cross": {"de-en": metrics(fam["cross"] - 0.01), "en-de": metrics(fam["cross"] + 0.01)},
        "pooled": {lang: metrics(fam["pooled"]) for lang in LANGS},
    }
    return {"headline": metrics(h), "families": {k: metrics(v) for k, v in fam.items()}, "subsets": subsets}


@pytest.mark.parametrize(
    ("delta", "spread", "want"),
    [(0.05, 0.01, "reproduced"), (-0.05, 0.01, "reversed"), (0.005, 0.01, "not reproduced (within the seed spread)"),
     (None, 0.01, "not run")],
)
def test_verdict(delta, spread, want):
    assert verdict(delta, spread) == want


def test_build_report_tables_and_findings(tmp_path: Path):
    reports = {
        "base": report(0.70),
        "scale_0": report(0.72),
        "scale_6": report(0.75),
        "scale_12": report(0.752),
        "seed2": report(0.748),
        "nohard": report(0.73),
        "div_lang": report(0.74),
        "div_task": report(0.745),
    }
    summary = build_report(reports, [0, 6, 12], tmp_path / "results", tmp_path / "RESULTS.md")
    f = summary["findings"]
    assert summary["spread"]["headline"] == pytest.approx(0.004)
    assert f["gain_from_synthetic"]["delta"] == pytest.approx(0.032)
    assert f["plateau"]["verdict"].startswith("reproduced")  # last step +0.002 is within the 0.004 spread
    assert f["hard_negatives"]["verdict"] == "reproduced"  # +0.022
    assert f["task_over_language_diversity"]["verdict"] == "reproduced"  # +0.005 > 0.004
    rows = list(csv.DictReader((tmp_path / "results/scores.csv").open()))
    cross_de = [r for r in rows if r["model"] == "base" and r["family"] == "cross" and r["language"] == "de"]
    assert float(cross_de[0]["ndcg_at_10"]) == pytest.approx(0.70)  # mean of de-en and en-de
    import json

    models = json.loads((tmp_path / "results/models.json").read_text())
    assert set(models) == set(reports) and models["nohard"]["headline"] == pytest.approx(0.73)
    curve = list(csv.DictReader((tmp_path / "results/scale_headline.csv").open()))
    assert [int(r["scale"]) for r in curve] == [0, 6, 12]
    for name in ("scale", "ablation", "diversity"):
        assert (tmp_path / "results/figures" / f"{name}.png").stat().st_size > 1000
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| 2. hard negatives are essential |" in md and "+2.20" in md


def test_missing_spread_is_reported_not_guessed(tmp_path: Path):
    reports = {"base": report(0.7), "scale_0": report(0.7), "scale_6": report(0.8)}
    summary = build_report(reports, [0, 6], tmp_path / "r", tmp_path / "R.md")
    assert summary["spread"]["headline"] is None
    assert summary["findings"]["hard_negatives"]["verdict"] == "not run"
    assert summary["findings"]["plateau"]["verdict"] == "not run"


def test_mmteb_section_lists_models_beside_anchors_and_flags_incomplete(tmp_path: Path):
    import json

    (tmp_path / "base" / "mmteb").mkdir(parents=True)
    (tmp_path / "base" / "mmteb" / "metrics.json").write_text(json.dumps(
        {"headline": {"main_score": 0.5272, "ndcg_at_10": 0.5301}, "tasks_done": 17, "tasks_expected": 18,
         "complete": False}))
    (tmp_path / "scale_0").mkdir()  # XQuAD only: no MMTEB section for it
    mm = load_mmteb(tmp_path, ["base", "scale_0"])
    assert list(mm) == ["base"]
    lines = mmteb_markdown(mm, {"paper": 60.56})
    assert "| base | 52.72 | 53.01 | 17/18 | no |" in lines and "| *paper* | *60.56* | | 18/18 | published |" in lines
    assert mmteb_markdown({}, {"paper": 60.56}) == []
