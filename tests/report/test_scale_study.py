"""Tests for retrofit.report.scale_study: the published gaps, the fraction closed, the curves and the whole page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrofit.config import load_params
from retrofit.profiles import apply_profile
from retrofit.report import scale_study
from retrofit.report.compare import Comparer
from retrofit.report.evaluations import Evaluation
from tests.report.evals import make_eval

REPO = Path(__file__).resolve().parents[2]


def test_published_gaps_compare_each_task_under_one_protocol():
    assert scale_study.published_gap("BelebeleRetrieval")["gap"] == pytest.approx(93.205 - 90.235, abs=1e-6)
    # e5-base's Tatoeba is an mteb 1.12.75 run: the gap uses e5-small's run of that protocol (89.01), not 89.57
    tatoeba = scale_study.published_gap("Tatoeba")
    assert tatoeba["small"] == pytest.approx(89.011, abs=1e-3) and tatoeba["gap"] == pytest.approx(3.507, abs=1e-3)
    assert scale_study.published_gap("LegalBenchCorporateLobbying")["gap"] == pytest.approx(-0.50, abs=1e-6)


def test_the_fraction_closed_is_the_difference_and_its_interval_over_the_published_gap(evals):
    cmp = Comparer(evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", 200, 0)
    rows = {r["task"]: r for r in scale_study.big_brother_rows(cmp, "scale_12")}
    belebele = rows["BelebeleRetrieval"]
    gap = scale_study.published_gap("BelebeleRetrieval")["gap"]
    assert belebele["fraction"] == pytest.approx(100 * belebele["diff"]["delta"] / gap)
    assert belebele["fraction_lo"] == pytest.approx(100 * belebele["diff"]["lo"] / gap)
    assert belebele["diff"]["runs_a"] == ["scale_12", "seed2", "seed3"]  # the top point with its seeds
    assert rows["LegalBenchCorporateLobbying"]["fraction"] is None  # e5-base is not ahead: nothing to close


def test_the_curve_reports_gains_over_the_first_point_and_each_step(evals):
    cmp = Comparer(evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", 200, 0)
    rows = scale_study.curve_rows(cmp, evals, [0, 6, 12])
    assert [r["n"] for r in rows] == [0, 6, 12] and rows[0]["gain"] is None
    assert rows[2]["seeds"] == ["scale_12", "seed2", "seed3"]
    assert rows[2]["score"] == pytest.approx(sum(evals[m].score("primary") for m in rows[2]["seeds"]) / 3)
    assert rows[1]["gain"]["verdict"] == "reproduced"  # 0.72 -> 0.80
    assert rows[2]["step"]["b"] == "scale_6" and rows[2]["step"]["verdict"] == "not resolved at this scale"


def _study_copy(tmp_path: Path) -> tuple[Path, dict[str, Evaluation]]:
    """A study copy's params (the real profile on the real params) and an evaluation for every model it names."""
    repo = tmp_path / "repo"
    (repo / "reports").mkdir(parents=True)
    shutil.copyfile(REPO / "params.yaml", repo / "params.yaml")
    apply_profile(REPO / "profiles" / "cpu-scale.yaml", repo / "params.yaml")
    (repo / "reports" / "RESULTS.md").write_text("# the copy's own report\n", encoding="utf-8")
    params = load_params(repo / "params.yaml")
    names = ["base", *(f"scale_{n}" for n in params.scale.per_language), *params.runs]
    level = {"base": 0.70, "nohard": 0.74, "div_lang": 0.76, "div_task": 0.80, "gen_24": 0.76, "oracle_24": 0.78}
    evals = {}
    for i, name in enumerate(names):
        stem = name.split("_seed")[0].removeprefix("s")  # s50_seed2 -> 50, div_task_seed2 -> div_task
        n = next((p for p in params.scale.per_language if stem in (str(p), f"cale_{p}")), None)
        lv = level.get(name.split("_seed")[0], 0.72 + 0.08 * min(n, 200) / 200 if n is not None else 0.80)
        evals[name] = make_eval(name, lv + 0.002 * (i % 3), seed=i)
    return repo, evals


def test_the_page_is_written_from_the_study_copy(tmp_path, monkeypatch):
    repo, evals = _study_copy(tmp_path)
    for name in evals:
        (repo / "reports" / "eval" / name).mkdir(parents=True)
        (repo / "reports" / "eval" / name / "per_query.json").write_text("{}")
    monkeypatch.setattr(scale_study, "load_evaluations", lambda _dir, names: {n: evals[n] for n in names})
    monkeypatch.setattr(scale_study, "load_training", lambda _dir, names: {n: {"rows": 31000} for n in names[1:]})
    study = {"cpus": 2, "runs": [{"started": "2026-12-07T15:00:00Z", "seconds": 3600.0, "returncode": 0}]}
    md = scale_study.write_scale_study(repo, study, tmp_path / "reports")
    text = md.read_text(encoding="utf-8")
    summary = json.loads((tmp_path / "reports/scale_study/summary.json").read_text())
    for fig in ("curves.png", "findings.png", "RESULTS.md"):
        assert (tmp_path / "reports/scale_study" / fig).is_file()
    assert summary["wall_seconds"] == 3600.0 and "60.0 min" in text
    assert [r["n"] for r in summary["curve"]] == [0, 50, 100, 200, 400, 799]
    assert all(len(r["seeds"]) == 3 for r in summary["curve"])  # every curve point under 3 seeds
    assert summary["findings"]["hard_negatives"]["noise"] == "seeds and questions"
    assert summary["findings"]["task_over_language_diversity"]["verdict"] == "reproduced"
    assert summary["generated"][0]["n"] == 24 and summary["findings"]["generator_cost"]["a"] == "oracle_24"
    # the curve rises to 200 and is flat after it: a resolved gain; the last step is judged by TOST, never read as a
    # plateau merely because it is not resolved
    assert summary["findings"]["gain_from_synthetic"]["verdict"] == "reproduced"
    assert summary["findings"]["plateau"]["verdict"].startswith(("reproduced", "gain reproduced; plateau not resolved"))
    assert "human XQuAD questions" in text and "Belebele" in text and "no gap: e5-base is not ahead" in text
    assert summary["headline"] in text and "Belebele: the top point closes" in summary["headline"]


def test_a_study_cut_short_reports_what_it_evaluated_and_names_the_rest(tmp_path, monkeypatch):
    repo, evals = _study_copy(tmp_path)
    for name in ("gen_24", "oracle_24", "div_task"):
        del evals[name]
    for name in evals:
        (repo / "reports" / "eval" / name).mkdir(parents=True)
        (repo / "reports" / "eval" / name / "per_query.json").write_text("{}")
    monkeypatch.setattr(scale_study, "load_evaluations", lambda _dir, names: {n: evals[n] for n in names})
    monkeypatch.setattr(scale_study, "load_training", lambda _dir, names: {})
    text = scale_study.write_scale_study(repo, {"runs": []}, tmp_path / "reports").read_text()
    assert "**Not evaluated yet**" in text and "`div_task`, `gen_24`, `oracle_24`" in text
    assert "| 3. div_task - div_lang | - | - | - | not run |" in text
    assert not (tmp_path / "reports/scale_study/RESULTS.md").exists()  # the copy's plot stage has not run
