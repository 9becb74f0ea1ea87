"""The recipe sweep's bookkeeping: its grid parses, stale results are dropped, and the selection rule is the issue's.

docs/training.md and ``params.yaml`` cite ``reports/recipe_sweep.md``'s choice, so the rule that makes it is tested here;
the training and evaluation it drives are the pipeline's own, tested under ``tests/train`` and ``tests/eval``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from retrofit.config import load_params
from tests.paper import REPO

_spec = importlib.util.spec_from_file_location("recipe_sweep", REPO / "bench" / "recipe_sweep.py")
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def _result(name: str, primary: float, tatoeba_hi: float = 0.01, belebele_hi: float = 0.01) -> dict:
    def c(delta: float, hi: float) -> dict:
        return {"delta": delta, "lo": delta - 0.002, "hi": hi}

    return {"name": name, "overrides": sweep.GRID[name],
            "versus_base": {"primary": c(primary, primary + 0.002), "Tatoeba": c(0.0, tatoeba_hi),
                            "BelebeleRetrieval": c(0.0, belebele_hi)}}


@pytest.fixture(autouse=True)
def _at_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # load_params("params.yaml") as the sweep runs it


@pytest.mark.parametrize("name", list(sweep.GRID))
def test_every_configuration_is_valid_params(name: str) -> None:
    load_params("params.yaml", ["train.mix.per_language=0", *sweep.GRID[name]])


def test_selection_takes_the_widest_train_setting_without_a_loss() -> None:
    results = [
        _result("t01_lr2e-5_s20", 0.0015),
        _result("t01_lr2e-5_s20_nohard", 0.0030),           # the ablation's switch: not a recipe setting
        _result("t01_lr2e-5_s20_seed43", 0.0040),           # a seed row: measures spread, is no choice
        _result("t01_lr5e-5_s20", 0.0050, tatoeba_hi=-0.001),   # widest, but loses on Tatoeba
        _result("t01_lr1e-5_s20", 0.0010),
    ]
    text = " ".join(sweep.selection(results))
    assert "the choice is `t01_lr2e-5_s20`" in text
    assert "`params.yaml` trains with it." in text  # params.yaml's train group is that configuration


def test_selection_flags_a_choice_params_yaml_does_not_train_with() -> None:
    text = " ".join(sweep.selection([_result("t01_lr1e-5_s20", 0.0010)]))
    assert "the choice is `t01_lr1e-5_s20`" in text and "does not train with it" in text


def test_seed_spread_reports_mean_and_sd() -> None:
    lines = sweep.seed_spread([_result("t01_lr2e-5_s20", 0.0010), _result("t01_lr2e-5_s20_seed43", 0.0030),
                               _result("t01_lr2e-5_s20_en48", 0.0090)])  # not a seed row of SPREAD
    assert "under 2 training seeds" in lines[0] and "mean +0.20" in lines[0] and "seed sd 0.14" in lines[0]
    assert sweep.seed_spread([_result("t01_lr2e-5_s20", 0.0010)]) == []


def test_earlier_results_only_from_the_same_rows(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    rows = [_result("t01_lr2e-5_s20", 0.001), _result("t01_lr1e-5_s20", 0.002), {"name": "gone", "overrides": []}]
    out.with_suffix(".json").write_text(json.dumps({"mixture_sha256": "aaa", "results": rows}))
    assert [r["name"] for r in sweep.earlier_results(str(out), "aaa", ["t01_lr1e-5_s20"])] == ["t01_lr2e-5_s20"]
    assert sweep.earlier_results(str(out), "bbb", []) == []  # measured on other rows: not comparable
    assert sweep.earlier_results(str(tmp_path / "none"), "aaa", []) == []
