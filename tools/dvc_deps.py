"""Keep each ``dvc.yaml`` stage's ``src/retrofit`` deps equal to its script's import closure.

A stage that misses a module it imports would not rerun when that module changes, and ``dvc.lock`` would then
describe results the code no longer produces (``tests/tools/test_dvc_deps.py`` fails on that). The closure is read
statically (``ast``), following imports inside functions too, since those run.

Usage::

    python tools/dvc_deps.py           # rewrite every stage's sorted `- src/retrofit/...` block
    python tools/dvc_deps.py --check   # exit 1 and name the stages whose block differs
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
_DEP = re.compile(r"^(\s+)- (src/retrofit/\S+)\s*$")
_STAGE = re.compile(r"^  (\w+):\s*$")


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


def stage_scripts(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, str]:
    """Stage name -> the script its ``cmd`` runs (``python <script> ...``)."""
    doc = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))
    return {name: stage.get("do", stage)["cmd"].split()[1] for name, stage in doc["stages"].items()}


def synced(text: str, scripts: dict[str, str]) -> tuple[str, list[str]]:
    """``dvc.yaml`` text with each stage's contiguous ``src/retrofit`` dep block replaced by its sorted closure.

    Non-Python files in a block (``src/retrofit/assets/sources.json``) are kept. Returns the text and the stages
    whose block changed.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    changed: list[str] = []
    stage = None
    i = 0
    while i < len(lines):
        if (m := _STAGE.match(lines[i])) and m.group(1) in scripts:
            stage = m.group(1)
        if stage is None or not (m := _DEP.match(lines[i])):
            out.append(lines[i])
            i += 1
            continue
        indent, block = m.group(1), []
        while i < len(lines) and (m := _DEP.match(lines[i])):
            block.append(m.group(2))
            i += 1
        closure = import_closure(ROOT / scripts[stage]) | {b for b in block if not b.endswith(".py")}
        new = sorted(closure)
        if new != block:
            changed.append(stage)
        out += [f"{indent}- {p}\n" for p in new]
    return "".join(out), changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="report stages out of sync; change nothing")
    args = ap.parse_args()
    path = ROOT / "dvc.yaml"
    text, changed = synced(path.read_text(encoding="utf-8"), stage_scripts(path))
    if args.check:
        print("out of sync: " + ", ".join(changed) if changed else "dvc.yaml deps match the import closures")
        return 1 if changed else 0
    path.write_text(text, encoding="utf-8")
    print("rewrote: " + ", ".join(changed) if changed else "nothing to change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
