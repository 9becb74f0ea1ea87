"""Tests for retrofit.report.readme and its command line: the README's results block, regenerated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from retrofit.errors import InputError
from retrofit.report.build import build_report
from retrofit.report.evaluations import Evaluation
from retrofit.report.readme import README_END, README_START, update_readme


def test_readme_block_is_regenerated_from_the_results(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md", resamples=200)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nstale table\n{README_END}\noutro\n")
    assert update_readme(readme, tmp_path / "r")
    text = readme.read_text()
    assert "stale table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    models = json.loads((tmp_path / "r/models.json").read_text())
    assert f"| `base` | {100 * models['base']['primary']:.2f} | " in text
    assert "| 3. task diversity beats language diversity | -" in text and "opposite to the paper" in text
    assert "What each model saw in training" not in text  # no training.json rows: no table
    assert not update_readme(readme, tmp_path / "r")  # idempotent
    readme.write_text("no block")
    with pytest.raises(InputError, match="no results block"):
        update_readme(readme, tmp_path / "r")


def test_command_line_rewrites_the_block(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md", resamples=100)
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    cmd = [sys.executable, "-m", "retrofit.report", "readme", str(readme), str(tmp_path / "r")]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "results block updated" in done.stdout and "| `scale_12` |" in readme.read_text()
    bad = subprocess.run([sys.executable, "-m", "retrofit.report"], capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "usage: python -m retrofit.report readme" in bad.stderr


def test_readme_block_states_what_each_model_saw(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    training = {"scale_12": {"rows": 5, "by_source_lang": {"qed_nq": {"en": 3}, "synthetic": {"de": 1, "zh": 1}}}}
    build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md", resamples=100,
                 training=training)
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    update_readme(readme, tmp_path / "r")
    assert "| `scale_12` | 1 (en) | generated queries: de zh |" in readme.read_text()
    assert "## What each model saw in training" in (tmp_path / "RESULTS.md").read_text()


def test_the_scale_study_headline_joins_the_block_when_the_study_ran(evals: dict[str, Evaluation],
                                                                   tmp_path: Path) -> None:
    build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md", resamples=200)
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    update_readme(readme, tmp_path / "r")
    assert "CPU scale study" not in readme.read_text()
    (tmp_path / "scale_study").mkdir()
    (tmp_path / "scale_study" / "summary.json").write_text(json.dumps({"headline": "CPU scale study (31 trainings)"}))
    assert update_readme(readme, tmp_path / "r")
    link = "([reports/scale_study.md](reports/scale_study.md))"
    assert f"\nCPU scale study (31 trainings) {link}.\n" in readme.read_text()
