"""The rehearsal profile never drifts from the paper profile (retrofit.rehearsal, profiles/rehearsal.yaml).

Every key that ``profiles/paper.yaml`` sets appears in ``profiles/rehearsal.yaml``, either ``# as is`` with the
paper's own value or overridden with a comment naming its kind (size, location or offline stand-in); a key added
to the paper profile later fails here until it is rehearsed. The rehearsal itself (``make rehearsal``) runs in CI
after ``make test``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from retrofit.profiles import apply_profile, is_group

REPO = Path(__file__).resolve().parents[1]
PAPER, REHEARSAL = REPO / "profiles" / "paper.yaml", REPO / "profiles" / "rehearsal.yaml"
KINDS = ("as is", "size:", "location:", "offline stand-in:")
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


def leaves(tree: dict[str, Any], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every value a profile sets: params groups are walked key by key, anything else is one value."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        here = (*path, key)
        if isinstance(value, dict) and is_group(here):
            out |= leaves(value, here)
        else:
            out[here] = value
    return out


def comments(text: str) -> dict[tuple[str, ...], str]:
    """The inline comment of every key line of a block-style YAML file, by the key's path."""
    out: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        m = _KEY.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        rest = m["rest"]
        out[tuple(k for _, k in stack)] = rest.split(" # ", 1)[1].strip() if " # " in rest else ""
    return out


def test_comments_are_read_by_path():
    text = "a:\n  b: 1   # size: x\n  c:  # location: y\n    d: 2\ne: [1] # as is\n"
    assert comments(text) == {("a",): "", ("a", "b"): "size: x", ("a", "c"): "location: y", ("a", "c", "d"): "",
                              ("e",): "as is"}


def drift(paper_text: str, rehearsal_text: str) -> list[str]:
    """Each way ``rehearsal_text`` fails to rehearse ``paper_text`` (empty: no drift)."""
    paper = leaves(yaml.safe_load(paper_text))
    rehearsal = leaves(yaml.safe_load(rehearsal_text))
    said = comments(rehearsal_text)
    problems = []
    for path, value in paper.items():
        key = ".".join(path)
        if path not in rehearsal:
            problems.append(f"{key}: set by paper.yaml, missing from rehearsal.yaml")
            continue
        kind = next((k for k in KINDS if said.get(path, "").startswith(k)), None)
        if kind is None:
            problems.append(f"{key}: its comment must start with one of {KINDS}, not {said.get(path)!r}")
        elif (kind == "as is") != (rehearsal[path] == value):
            problems.append(f"{key}: '{said[path]}' but the values are {value!r} (paper) and {rehearsal[path]!r}")
    for path in rehearsal.keys() - paper.keys():  # the rehearsal's own additions: never "as is"
        if not any(said.get(path, "").startswith(k) for k in KINDS[1:]):
            problems.append(f"{'.'.join(path)}: not in paper.yaml, so its comment must name size, location or "
                            f"offline stand-in, not {said.get(path)!r}")
    return problems


def test_every_key_of_the_paper_profile_is_rehearsed_as_is_or_overridden_with_its_kind():
    problems = drift(PAPER.read_text(encoding="utf-8"), REHEARSAL.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_drift_fails_on_a_new_key_a_changed_value_and_an_unnamed_kind():
    paper, rehearsal = PAPER.read_text(encoding="utf-8"), REHEARSAL.read_text(encoding="utf-8")
    gained = paper.replace("  learning_rate: 2.0e-5", "  warmup_ratio: 0.05\n  learning_rate: 2.0e-5")
    assert drift(gained, rehearsal) == ["train.warmup_ratio: set by paper.yaml, missing from rehearsal.yaml"]
    changed = paper.replace("  roundtrip_top_k: 20 ", "  roundtrip_top_k: 10 ")
    assert [p.split(":")[0] for p in drift(changed, rehearsal)] == ["generate.roundtrip_top_k"]
    unnamed = rehearsal.replace("max_steps: 2               # size: steps", "max_steps: 2")
    assert [p.split(":")[0] for p in drift(paper, unnamed)] == ["train.max_steps"]


def test_paper_then_rehearsal_validate_on_params_yaml(tmp_path: Path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    apply_profile(PAPER, params)
    merged = apply_profile(REHEARSAL, params)
    assert merged  # validated before anything was written
    final = yaml.safe_load(params.read_text(encoding="utf-8"))
    assert final["train"]["launcher"] == "torchrun --nproc_per_node 2"
    assert final["generate"]["openai"]["base_url"].startswith("http://127.0.0.1:")
    assert final["evaluate"]["mmteb"]["data"] == "local"
    assert all(spec["dataset"].startswith(".cache/rehearsal/") for spec in final["data"]["hub_english"].values())


@pytest.mark.parametrize("text", ["runs:  # size: x\n  seed2: train.seed=43\n"])
def test_value_mappings_are_one_value(text: str):
    assert leaves(yaml.safe_load(text)) == {("runs",): {"seed2": "train.seed=43"}}
