"""Every stage in ``dvc.yaml`` depends on its script and on every ``retrofit`` module that script imports.

The import closure is read statically (``ast``), following imports inside functions too, since those run. A stage
that misses a module would not rerun when that module changes, and ``dvc.lock`` would then describe results the
code no longer produces.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "retrofit"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "retrofit":
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from retrofit import xquad` is a module
    return names


def import_closure(script: Path) -> set[str]:
    """Repository-relative paths of every ``retrofit`` source file that ``script`` imports, directly or not."""
    found: set[Path] = set()
    todo = [script]
    while todo:
        for name in _imported(todo.pop()):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                file = _module_file(".".join(parts[:i]))
                if file is not None and file not in found:
                    found.add(file)
                    todo.append(file)
    return {str(f.relative_to(ROOT)) for f in found}


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
    assert not missing, f"{stage}: imports {missing} but dvc.yaml does not list them as deps"


def test_closure_follows_function_level_and_package_imports(tmp_path: Path) -> None:
    closure = import_closure(ROOT / "stages" / "evaluate.py")
    assert "src/retrofit/evaluation.py" in closure  # `from retrofit import evaluation`
    assert "src/retrofit/stats.py" in closure  # imported inside evaluation.check_per_query only
    assert "src/retrofit/generate/prompts.py" in closure  # through config, inside a function


def test_a_missing_dep_is_caught() -> None:
    _, script, deps = next(s for s in _stages() if s[0] == "train")
    trimmed = [d for d in deps if d != "src/retrofit/unpad.py"]
    missing = [p for p in import_closure(ROOT / script) if not _covered(p, trimmed)]
    assert missing == ["src/retrofit/unpad.py"]
