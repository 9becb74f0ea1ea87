"""Bad input, stage by stage, as ``dvc repro`` runs it: one ``error:`` line naming the cause, exit 2, no output.

Each case runs a stage script (``python stages/<stage>.py``) in a scratch workspace holding ``params.yaml`` and
just enough valid upstream artifacts (hand-written rows that satisfy each producer's schema, a tiny model) to
reach the input under test. A bug, by contrast, keeps its traceback (``test_a_bug_keeps_its_traceback``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.generate.fake_openai_server import FakeOpenAIServer, refused_url
from tests.mirror import mirror_or_skip

REPO = Path(__file__).resolve().parents[1]
STAGES = ("fetch", "prepare", "base_model", "teacher", "generate", "dedupe", "mine", "train", "evaluate", "plot")
#: What each stage writes (dvc.yaml outs); none may exist after a failure.
OUTS = {
    "fetch": ["data/raw"], "prepare": ["data/prepared"], "base_model": [], "teacher": [],  # those two pre-exist
    "generate": ["data/generated", "reports/generate/sample.md"], "dedupe": ["data/deduped"], "mine": ["data/mined"],
    "train": ["models/scale_0", "reports/train/scale_0"], "evaluate": ["reports/eval/scale_0"],
    "plot": ["reports/results", "reports/RESULTS.md"],
}
ARGS = {
    "train": ["--name", "scale_0", "--set", "train.mix.per_language=0"],
    "evaluate": ["--model", "models/retro", "--name", "scale_0", "--out", "reports/eval/scale_0"],
}


def _params(**groups: dict) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, values in groups.items():
        params[name].update(values)
    return params


def _rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _pair(i: int, source: str = "qed_nq") -> dict:
    return {"id": f"{source}-{i}", "source": source, "lang": "en", "task_type": "qa", "query": f"question {i}",
            "positive": f"passage {i}", "negative": None, "source_id": None, "provenance": {}}


def _mined(i: int) -> dict:
    return {**_pair(i), "negatives": [], "positive_score": None}


@pytest.fixture
def ws(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A workspace with valid params, a tiny base model and one valid artifact of every kind."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "stages").symlink_to(REPO / "stages")
    # No data/raw here: the official and beyond families have their own tests.
    official = {"tasks": [], "base_only": [], "models": None}
    beyond = {"tasks": [], "languages": None, "models": None}
    (root / "params.yaml").write_text(yaml.safe_dump(_params(base={"cache_dir": str(tmp_path / "cache")},
                                                             evaluate={"official": official, "beyond": beyond})))
    shutil.copytree(tiny_model_dir, root / "models/base")
    (root / "models/teacher").mkdir(parents=True)
    (root / "models/teacher/teacher.json").write_text(json.dumps({"spec": "base", "use": "models/base"}))
    shutil.copytree(tiny_model_dir, root / "models/retro")
    xq = root / "data/prepared/xquad"
    _rows(xq / "paragraphs.jsonl", [{"id": f"a0{a}p0", "lang": lang, "article": a, "title": "T",
                                     "text": f"text {a} {lang}", "split": split}
                                    for a, split in ((0, "test"), (1, "train")) for lang in ("de", "en")])
    _rows(xq / "questions.jsonl", [{"id": f"q{a}", "lang": lang, "paragraph_id": f"a0{a}p0", "text": f"q {a} {lang}",
                                    "answer": "text", "answer_start": 0, "split": split}
                                   for a, split in ((0, "test"), (1, "train")) for lang in ("de", "en")])
    _rows(root / "data/prepared/heldout.jsonl", [{"id": f"xquad-{lang}-p-a00p0", "eval": "xquad_heldout",
                                                  "text": f"text 0 {lang}"} for lang in ("de", "en")])
    for source in _params()["data"]["english"]:
        _rows(root / f"data/prepared/english/{source}.jsonl", [{k: v for k, v in _pair(i, source).items()
                                                                  if k not in ("source_id", "provenance")}
                                                                 for i in range(3)])
    _rows(root / "data/generated/examples.jsonl", [{
        "id": "syn-de-000000", "lang": "de", "task_type": "short_query", "query": "frage", "positive": "text",
        "evidence": "text", "negative": None, "source": "xquad", "source_id": "xquad:a01p0",
        "generator": {"backend": "local"}}])
    _rows(root / "data/generated/pool.jsonl", [{"lang": "de", "source": "xquad", "source_id": "xquad:a01p0",
                                                "text": "text"}])
    _rows(root / "data/deduped/pairs.jsonl", [_pair(i) for i in range(3)])
    _rows(root / "data/deduped/oracle.jsonl", [])
    _rows(root / "data/deduped/cross.jsonl", [])
    _rows(root / "data/mined/train.jsonl", [_mined(i) for i in range(3)])
    return root


def _run(root: Path, stage: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``stage`` in ``root`` as ``dvc repro`` would, its outputs removed first (some are other stages' inputs)."""
    for out in OUTS[stage]:
        target = root / out
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    cmd = [sys.executable, f"stages/{stage}.py", *ARGS.get(stage, []), *extra]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def _assert_refused(root: Path, stage: str, res: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2; the last stderr line, and the only ``error:`` line, names every needle; no traceback, no outputs."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, f"{stage}: exit {res.returncode}\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]], lines[-5:]
    for needle in needles:
        assert needle in lines[-1], f"{needle!r} not in {lines[-1]!r}"
    for out in OUTS[stage]:
        assert not (root / out).exists(), f"{stage} left {out} behind"


def _set_params(root: Path, change: Callable[[dict], None]) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    change(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


# ---------------------------------------------------------------------------------------------------------------
# Params: every stage validates them before anything else
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_an_unknown_key(ws: Path, stage: str) -> None:
    _set_params(ws, lambda p: p["train"].update(learning_rat=1e-5))
    _assert_refused(ws, stage, _run(ws, stage), "train.learning_rat")


@pytest.mark.parametrize("stage", ["generate", "train", "evaluate"])
def test_a_wrong_type(ws: Path, stage: str) -> None:
    _set_params(ws, lambda p: p["train"].update(max_steps="many"))
    _assert_refused(ws, stage, _run(ws, stage), "train.max_steps")


@pytest.mark.parametrize("stage", ["generate", "dedupe", "mine"])
def test_an_unsupported_language(ws: Path, stage: str) -> None:
    _set_params(ws, lambda p: p["generate"].update(languages=["de", "xx"]))
    _assert_refused(ws, stage, _run(ws, stage), "generate.languages", "xx")


# ---------------------------------------------------------------------------------------------------------------
# Files: missing, truncated, a row without a field, a wrong sha256, an empty source
# ---------------------------------------------------------------------------------------------------------------

MISSING = {
    "prepare": "data/raw",
    "generate": "data/prepared/xquad/paragraphs.jsonl",
    "dedupe": "data/generated/examples.jsonl",
    "mine": "data/deduped/pairs.jsonl",
    "train": "data/mined/train.jsonl",
    "evaluate": "data/prepared/xquad/paragraphs.jsonl",
    "plot": "reports/eval",
}


@pytest.mark.parametrize("stage", sorted(MISSING))
def test_a_missing_file(ws: Path, stage: str) -> None:
    target = ws / MISSING[stage]
    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    _assert_refused(ws, stage, _run(ws, stage, env={"RETROFIT_DATA_MIRROR": ""}), MISSING[stage].split("/")[-1])


TRUNCATED = {
    "dedupe": "data/generated/examples.jsonl",
    "mine": "data/deduped/pairs.jsonl",
    "train": "data/mined/train.jsonl",
    "evaluate": "data/prepared/xquad/questions.jsonl",
}


@pytest.mark.parametrize("stage", sorted(TRUNCATED))
def test_a_truncated_jsonl(ws: Path, stage: str) -> None:
    path = ws / TRUNCATED[stage]
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) - 9], encoding="utf-8")  # a write cut short inside the last row
    lines = text.count("\n")
    _assert_refused(ws, stage, _run(ws, stage), f"{TRUNCATED[stage]}:{lines}:", "not valid JSON")


def test_a_row_without_a_field_names_file_line_and_field(ws: Path) -> None:
    rows = [_mined(0), {k: v for k, v in _mined(1).items() if k != "positive"}, _mined(2)]
    _rows(ws / "data/mined/train.jsonl", rows)
    _assert_refused(ws, "train", _run(ws, "train"), "data/mined/train.jsonl:2:", "'positive'")


def test_a_wrong_sha256(ws: Path, tmp_path: Path) -> None:
    mirror = mirror_or_skip()
    bad = tmp_path / "mirror"
    bad.mkdir()
    for entry in mirror.iterdir():
        (bad / entry.name).symlink_to(entry)
    (bad / "tatoeba").unlink()
    shutil.copytree(mirror / "tatoeba", bad / "tatoeba")
    victim = sorted(p for p in (bad / "tatoeba").rglob("*") if p.is_file())[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1  # same size, another hash
    victim.write_bytes(bytes(data))
    _assert_refused(ws, "fetch", _run(ws, "fetch", env={"RETROFIT_DATA_MIRROR": str(bad)}), victim.name, "sha256")


def test_an_empty_source(ws: Path) -> None:
    (ws / "data/prepared/english/scitldr.jsonl").write_text("", encoding="utf-8")
    _assert_refused(ws, "dedupe", _run(ws, "dedupe"), "scitldr", "empty")


def test_mine_names_a_missing_english_corpus(ws: Path) -> None:
    (ws / "data/prepared/english/scitldr.jsonl").unlink()  # negatives.english_pool reads every English dataset
    _assert_refused(ws, "mine", _run(ws, "mine"), "data/prepared/english/scitldr.jsonl", "prepare")


# ---------------------------------------------------------------------------------------------------------------
# Assets: a model directory without weights
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stage", "model"), [("generate", "models/base"), ("mine", "models/base"),
                                              ("train", "models/base"), ("evaluate", "models/retro")])
def test_a_model_directory_without_weights(ws: Path, stage: str, model: str) -> None:
    (ws / model / "model.safetensors").unlink()
    _assert_refused(ws, stage, _run(ws, stage), model, "no weights")


# ---------------------------------------------------------------------------------------------------------------
# Endpoints: unreachable, or a bad key
# ---------------------------------------------------------------------------------------------------------------


def _openai(root: Path, base_url: str) -> None:
    _set_params(root, lambda p: p["generate"].update(
        backend="openai", languages=["de"], per_language=2, passage_sources=["xquad"],
        openai={**p["generate"]["openai"], "base_url": base_url, "api_key_env": "FAKE_KEY", "max_retries": 1}))


def test_an_unreachable_endpoint(ws: Path) -> None:
    url = refused_url()
    _openai(ws, url)
    _assert_refused(ws, "generate", _run(ws, "generate", env={"FAKE_KEY": "fake-key-closed-port"}), url, "FAKE_KEY")


def test_a_bad_key(ws: Path) -> None:
    with FakeOpenAIServer(responder=lambda prompt: "{}", api_key="fake-key-right") as server:
        _openai(ws, server.url)
        res = _run(ws, "generate", env={"FAKE_KEY": "fake-key-wrong"})
        _assert_refused(ws, "generate", res, server.url, "FAKE_KEY")
        assert "fake-key-wrong" not in res.stderr + res.stdout
        assert server.requests_total <= 3


def test_a_bug_keeps_its_traceback(ws: Path, tmp_path: Path) -> None:
    """Anything that is not a RetrofitError is a bug: exit 1 with the full traceback, not a one-line message."""
    script = tmp_path / "buggy.py"
    script.write_text("from retrofit import cli\n\ndef main():\n    raise ValueError('a bug')\n\ncli.run(main)\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" in res.stderr and "ValueError: a bug" in res.stderr


def test_a_failure_partway_leaves_no_output_and_no_lock_entry(ws: Path) -> None:
    """The endpoint answers two requests, then fails every other (HTTP 500): ``generate`` stops after its work began.

    Run by ``dvc repro`` as a user runs it: the circuit breaker stops the stage (exit 2, one ``error:`` line), which
    leaves no output (not even a partial one), and ``dvc.lock`` gains no entry for it; the two paid answers stay in the
    response cache, so a rerun does not pay for them again.
    """
    answer = json.dumps({"query": "Was steht im Text?"})
    with FakeOpenAIServer(responder=lambda prompt: answer, fail_after=2) as server:
        _openai(ws, server.url)
        _set_params(ws, lambda p: (p["generate"].update(per_language=4), p["generate"]["openai"].update(
            concurrency=1, max_retries=0, breaker_window=2, breaker_failure_rate=0.5)))  # two answers, then failures
        env = {**os.environ, "FAKE_KEY": "fake-key", "HF_HUB_OFFLINE": "1"}
        for cmd in (["init", "--no-scm", "-q"], ["config", "core.analytics", "false"]):
            subprocess.run([sys.executable, "-m", "dvc", *cmd], cwd=ws, check=True, env=env)
        (ws / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"generate": {
            "cmd": f"{sys.executable} stages/generate.py",
            "deps": ["data/prepared", "models/base"], "params": ["base", "generate"],
            "outs": ["data/generated", {"reports/generate/sample.md": {"cache": False}},
                     {"reports/generate/ledger.json": {"cache": False}}]}}}))
        for out in ("data/generated", "reports/generate"):
            shutil.rmtree(ws / out, ignore_errors=True)
        res = subprocess.run([sys.executable, "-m", "dvc", "repro", "generate"], cwd=ws, capture_output=True,
                             text=True, timeout=300, env=env)
        answered = server.requests_total
    assert res.returncode != 0, res.stdout[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "HTTP 500" in errors[0] and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert answered > 2  # it had begun: two answers, then at least one refusal
    for out in ("data/generated", "reports/generate/sample.md", "reports/generate/ledger.json"):
        assert not (ws / out).exists(), f"generate left {out} behind"
    lock = ws / "dvc.lock"
    assert not lock.exists() or "generate" not in (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    cached = [line for p in (ws / "data/responses").rglob("responses-*.jsonl") for line in p.read_text().splitlines()]
    assert len(cached) == 2  # nothing paid for is lost
