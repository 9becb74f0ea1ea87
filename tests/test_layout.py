"""The package's layout: every module imports on its own, imports only point down the layers, no two modules import
each other, modules and functions stay short.

A cycle hidden behind an import inside a function still runs, so the graph here counts every ``import`` in a module,
at any depth. Importing each module in a fresh interpreter catches what a shared test process hides: a module that
only works because another one was imported first.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
#: Code lines (a docstring aside) a function may have before it must say why in its docstring.
MAX_FUNCTION_LINES = 80
#: Lines a module may have: past this it holds more than one concern.
MAX_MODULE_LINES = 600
#: The layers, lowest first, by a module's first name under ``retrofit`` (``retrofit.eval.stats`` is ``eval``): a
#: module imports from its own layer or the ones below, never above (the README's package tree states the same).
LAYERS = (
    {"retrofit", "schema", "errors"},
    {"io", "config", "runtime", "hub", "cli", "profiles", "plots_html"},
    {"data", "filter", "embed", "models"},
    {"generate", "mine", "mine_corpus", "mine_search", "mine_report", "train", "eval"},
    {"report", "rehearsal", "study"},
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.glob("retrofit/**/*.py"))}


def _imports(path: Path) -> set[str]:
    """The ``retrofit`` modules a file imports anywhere in it (a package's name stands for its ``__init__``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        found |= {n for n in names if n in MODULES}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(mod: str) -> list[str] | None:
        state[mod] = 1
        path.append(mod)
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if mod not in state and (found := visit(mod)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = {mod: _imports(path) - {mod} for mod, path in MODULES.items()}
    # a package's __init__ is imported by each of its modules; an __init__ that imported them back would cycle
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def _layer(mod: str) -> int:
    """The layer of a ``retrofit`` module (see :data:`LAYERS`)."""
    parts = mod.split(".")
    name = parts[1] if len(parts) > 1 else "retrofit"
    found = [i for i, layer in enumerate(LAYERS) if name in layer]
    assert found, f"{mod}: in no layer; add {name!r} to LAYERS and to the README's package tree"
    return found[0]


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points to a higher layer, as ``"importer -> imported"``."""
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m))


def test_imports_only_point_down_the_layers():
    graph = {mod: _imports(path) - {mod} for mod, path in MODULES.items()}
    assert not _upward(graph), _upward(graph)


def test_layer_check_finds_a_planted_upward_import():
    assert _upward({"retrofit.data.oracle": {"retrofit.generate.prompts"}}) == [
        "retrofit.data.oracle -> retrofit.generate.prompts"]
    assert _upward({"retrofit.report.build": {"retrofit.eval.stats", "retrofit.io"}}) == []


def test_no_module_is_over_the_line_limit():
    long = {mod: n for mod, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these along their concerns (at most {MAX_MODULE_LINES} lines): {long}"


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _import_alone(mod: str) -> str | None:
    """``None`` if ``mod`` imports in a fresh interpreter, else the last line of the error."""
    done = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True, check=False)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["(no message)"])[-1]


def test_every_module_imports_alone_in_a_fresh_interpreter():
    with ThreadPoolExecutor(max_workers=2) as pool:  # two interpreters at a time: the CI machine has two cores
        errors = dict(zip(MODULES, pool.map(_import_alone, MODULES), strict=True))
    assert not {m: e for m, e in errors.items() if e}, {m: e for m, e in errors.items() if e}


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines from ``def`` to its end, its docstring aside."""
    total = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        total -= first.end_lineno - first.lineno + 1
    return total


def test_functions_are_short_or_say_why():
    long = []
    for path in [*MODULES.values(), *sorted((ROOT / "tools").glob("*.py")), *sorted((ROOT / "stages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _code_lines(node) > MAX_FUNCTION_LINES
                    and "longer than" not in (ast.get_docstring(node) or "")):  # "longer than": the stated reason
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({_code_lines(node)} lines)")
    assert not long, long
