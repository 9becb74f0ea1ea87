"""Every stage in ``dvc.yaml`` depends on its script and on every ``retrofit`` module that script imports.

The import closure is read statically (``ast``), following imports inside functions too, since those run. A stage
that misses a module would not rerun when that module changes, and ``dvc.lock`` would then describe results the
code no longer produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from dvc_deps import import_closure, stage_scripts, synced


def _stages() -> list[tuple[str, str, list[str]]]:
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    out = []
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        out.append((name, body["cmd"].split()[1], [str(d) for d in body.get("deps", [])]))
    return out


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize(("stage", "script", "deps"), _stages(), ids=[s[0] for s in _stages()])
def test_stage_depends_on_everything_it_imports(stage: str, script: str, deps: list[str]) -> None:
    assert script in deps, f"{stage}: its script {script} is not a dep"
    missing = sorted(p for p in import_closure(ROOT / script) if not _covered(p, deps))
    assert not missing, f"{stage}: imports {missing} but dvc.yaml does not list them (run python tools/dvc_deps.py)"


def test_closure_follows_function_level_and_package_imports(tmp_path: Path) -> None:
    generate = import_closure(ROOT / "stages" / "generate.py")
    assert "src/retrofit/generate/llamacpp_backend.py" in generate  # imported inside backend_from_params only
    fetch = import_closure(ROOT / "stages" / "fetch.py")
    assert "src/retrofit/data/sources.py" in fetch  # `from retrofit.data import sources`: a module
    assert "src/retrofit/data/__init__.py" in fetch  # importing it runs its package first


def test_a_missing_dep_is_caught() -> None:
    _, script, deps = next(s for s in _stages() if s[0] == "train")
    trimmed = [d for d in deps if d != "src/retrofit/embed/unpad.py"]
    missing = [p for p in import_closure(ROOT / script) if not _covered(p, trimmed)]
    assert missing == ["src/retrofit/embed/unpad.py"]


def test_the_sync_tool_leaves_the_committed_dvc_yaml_unchanged() -> None:
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    assert synced(text, stage_scripts()) == (text, [])


def test_the_sync_tool_restores_a_missing_dep() -> None:
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    trimmed = text.replace("      - src/retrofit/embed/unpad.py\n", "", 1)
    restored, changed = synced(trimmed, stage_scripts())
    assert changed and restored.count("src/retrofit/embed/unpad.py") == text.count("src/retrofit/embed/unpad.py")
