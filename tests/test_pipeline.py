"""End to end: the real stages, wired by the real ``dvc.yaml``, on a tiny configuration.

The project's ``dvc.yaml``, ``stages/`` and ``src/`` are copied into a scratch DVC project; ``params.yaml`` is
shrunk (a tiny local model instead of the bundled one, two evaluation languages, a few queries). ``dvc repro``
must produce base-model metrics for all three families, and a second ``dvc repro`` must do nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _mirror() -> Path | None:
    env = os.environ.get("RETROFIT_DATA_MIRROR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


def _dvc(*args: str, cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"dvc {' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout


@pytest.fixture
def tiny_project(tmp_path: Path, tiny_model_dir: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(REPO / "dvc.yaml", proj / "dvc.yaml")
    shutil.copytree(REPO / "stages", proj / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"]["base"] = str(tiny_model_dir)
    params["evaluate"].update(languages=["de", "en"], max_queries_per_lang=8, batch_size=16)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return proj


def test_dvc_repro_tiny(tiny_project: Path):
    mirror = _mirror()
    if mirror is None:
        pytest.skip("no data mirror: set RETROFIT_DATA_MIRROR")
    env = {**os.environ, "RETROFIT_DATA_MIRROR": str(mirror), "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    _dvc("init", "--no-scm", "-q", cwd=tiny_project, env=env)
    _dvc("config", "core.analytics", "false", cwd=tiny_project, env=env)
    _dvc("repro", cwd=tiny_project, env=env)

    metrics = json.loads((tiny_project / "reports/eval/base/metrics.json").read_text())
    assert set(metrics["families"]) == {"mono", "cross", "pooled"}
    for fam in metrics["families"].values():
        assert 0.0 <= fam["ndcg_at_10"] <= 1.0
    counts = json.loads((tiny_project / "data/prepared/counts.json").read_text())
    assert counts["xquad"]["articles"] == {"train": 24, "test": 24}
    assert (tiny_project / "reports/eval/base/table.md").read_text().count("|") > 10
    assert "ndcg_at_10" in _dvc("metrics", "show", cwd=tiny_project, env=env)
    again = _dvc("repro", cwd=tiny_project, env=env)
    assert "up to date" in again.lower(), again
