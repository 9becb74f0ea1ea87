"""The params profile: merges, validates before writing, keeps comments, and its command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from retrofit.config import ParamsError, load_params, validate_params
from retrofit.profiles import apply_profile, merge_profile_text
from tests.paper import PROFILE, REPO


@pytest.fixture
def params_copy(tmp_path: Path) -> Path:
    """A private copy of the repository's params.yaml."""
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_paper_profile_merges_and_validates(params_copy: Path):
    out = apply_profile(PROFILE, params_copy, backup=True)
    assert out["written"]
    assert params_copy.stat().st_mode & 0o777 == 0o644  # an ordinary file, as it was (retrofit.io.atomic_file)
    params = load_params(params_copy)  # what every stage will load
    assert params.model.base == "intfloat/multilingual-e5-base"
    assert params.generate.backend == "openai" and params.generate.openai.model == "gpt-4o-mini"
    assert params.generate.openai.price_per_1m_input == 0.15 and params.generate.openai.price_per_1m_output == 0.60
    assert len(params.generate.languages) == 20 and params.generate.passage_sources == ["wikipedia"]
    assert params.negatives.teacher != "base" and params.train.bf16
    assert 4000 in params.scale.per_language
    assert params_copy.with_name("params.yaml.bak").read_text() == (REPO / "params.yaml").read_text()
    # the merged file keeps the profile's comments and re-applying it changes nothing
    text = params_copy.read_text()
    assert "# 20: 12 XQuAD + 8 MIRACL" in text and "profiles/paper.yaml" in text.splitlines()[0]
    again = apply_profile(PROFILE, params_copy)
    assert again["changes"] == [] and not again["written"]


def test_profile_overlay_comments_every_value():
    """Every leaf value of the profile carries an inline comment, except those whose key says it all."""
    obvious = {"backend", "checkpoint_every", "languages", "english", "task_types", "benchmark", "batch_size"}
    lines = [ln for ln in PROFILE.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    bare = [
        ln for ln in lines
        if ":" in ln and not ln.rstrip().endswith(":") and "#" not in ln
        and ln.split(":")[0].strip() not in obvious
    ]
    assert bare == []


def test_apply_existing_keys_merges_groups_and_replaces_values(params_copy: Path):
    before = yaml.safe_load(params_copy.read_text())
    overlay = _write(
        params_copy.with_name("overlay.yaml"),
        "generate:\n"
        "  per_language: 30         # a test value\n"
        "  task_types: {short_query: 1.0}   # replaced whole\n"
        "runs:\n"
        "  seed2: train.seed=44     # only run left\n"
        "evaluate:\n"
        "  official:\n"
        "    models: [base, seed2]\n"
        "  beyond:\n"
        "    models: [base, seed2]\n"
        "plot:\n"
        "  seed_runs: [seed2]\n"
        "  arm_seeds: {}\n",
    )
    out = apply_profile(overlay, params_copy)
    after = yaml.safe_load(params_copy.read_text())
    assert after["generate"]["per_language"] == 30
    assert after["generate"]["task_types"] == {"short_query": 1.0}  # a value mapping is replaced, not merged
    assert after["runs"] == {"seed2": "train.seed=44"}
    assert after["evaluate"]["official"]["models"] == ["base", "seed2"]
    assert after["evaluate"]["official"]["tasks"] == before["evaluate"]["official"]["tasks"]
    assert after["generate"]["local"] == before["generate"]["local"]  # groups merge key by key
    assert {k: v for k, v in after.items() if k not in ("generate", "runs", "plot", "evaluate")} == {
        k: v for k, v in before.items() if k not in ("generate", "runs", "plot", "evaluate")
    }
    assert [c["key"] for c in out["changes"]] == ["generate.per_language", "generate.task_types", "runs",
                                                  "evaluate.official.models", "evaluate.beyond.models",
                                                  "plot.seed_runs", "plot.arm_seeds"]
    text = params_copy.read_text()
    assert "per_language: 30         # a test value" in text
    assert "the paper uses ~4K" not in text  # the replaced value's stale comment went with it
    assert "ngram: 5                   # character n-grams" in text  # untouched values keep theirs
    assert "\n\ndedupe:" in text and "\n\nscale:" in text and "\n\nevaluate:" in text  # blank lines between groups
    assert not params_copy.with_name("params.yaml.bak").exists()  # no backup unless asked
    validate_params(after)


def test_extras_profile_adds_three_runs_and_keeps_every_default_one(params_copy: Path):
    """``runs`` is replaced whole, so the extras overlay repeats the default's runs: a run added to params.yaml and
    forgotten there would silently leave the default's comparisons when the profile is applied."""
    before = load_params(params_copy)
    apply_profile(REPO / "profiles" / "extras.yaml", params_copy)
    after = load_params(params_copy)
    assert {k: v for k, v in after.runs.items() if k in before.runs} == before.runs
    assert sorted(set(after.runs) - set(before.runs)) == ["crossling", "oracle", "taskbatch"]
    assert after.plot == before.plot and after.train == before.train  # only runs change


def test_apply_invalid_writes_nothing(params_copy: Path):
    original = params_copy.read_bytes()
    overlay = _write(params_copy.with_name("bad.yaml"), "generate:\n  per_languag: 5\n")
    with pytest.raises(ParamsError, match=r"generate\.per_languag"):
        apply_profile(overlay, params_copy, backup=True)
    assert params_copy.read_bytes() == original
    assert not params_copy.with_name("params.yaml.bak").exists()
    negative = _write(params_copy.with_name("neg.yaml"), "train:\n  max_steps: -1\n")
    with pytest.raises(ParamsError, match=r"train\.max_steps"):
        apply_profile(negative, params_copy)
    assert params_copy.read_bytes() == original


def test_dry_run_validates_and_writes_nothing(params_copy: Path):
    original = params_copy.read_bytes()
    overlay = _write(params_copy.with_name("o.yaml"), "train:\n  max_steps: 7   # seven\n")
    out = apply_profile(overlay, params_copy, dry_run=True)
    assert not out["written"] and params_copy.read_bytes() == original
    assert out["changes"] == [{"key": "train.max_steps", "old": 20, "new": 7, "new_key": False}]
    assert "+  max_steps: 7   # seven" in out["diff"]


def test_new_key_lands_inside_its_group():
    text, merged, changes = merge_profile_text(
        "data:\n  a: 1  # one\n\nmodel:\n  base: x\n", "data:\n  b: 2  # two\n", "p.yaml"
    )
    assert merged == {"data": {"a": 1, "b": 2}, "model": {"base": "x"}}
    assert changes == [("data.b", None, 2)]
    assert "  a: 1  # one\n  b: 2  # two\n\nmodel:" in text
    assert yaml.safe_load(text) == merged


def test_apply_cli_dry_run(params_copy: Path, capsys):
    from retrofit.profiles import main

    overlay = _write(params_copy.with_name("o.yaml"), "train:\n  max_steps: 9\n")
    main([str(overlay), "--params", str(params_copy), "--dry-run"])
    out = capsys.readouterr().out
    assert "train.max_steps: 20 -> 9" in out and "nothing written" in out
    with pytest.raises(SystemExit) as info:
        main([str(params_copy.with_name("missing.yaml")), "--params", str(params_copy)])
    assert info.value.code == 2
