"""retrofit.study: the study's copy is created once, then resumed with new code and its own outputs and lock kept."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from retrofit.study import sync_copy


def _repo(root: Path) -> Path:
    for rel, text in {"src/m.py": "v1\n", "params.yaml": "a: 1\n", "dvc.lock": "main's lock\n",
                      "reports/RESULTS.md": "main's results\n", ".gitignore": ".cache/\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


def test_a_resumed_copy_takes_new_code_and_keeps_its_own_lock_and_outputs(tmp_path):
    src = _repo(tmp_path / "src")
    dest = tmp_path / "work" / "repo"
    sync_copy(src, dest)
    assert (dest / "dvc.lock").read_text() == "main's lock\n" and (dest / ".git").is_dir()
    (dest / "dvc.lock").write_text("the study's lock\n")  # what the study's dvc repro wrote
    (dest / "reports/RESULTS.md").write_text("the study's results\n")
    (src / "src/m.py").write_text("v2\n")
    (src / "src/new.py").write_text("new\n")
    (src / "dvc.lock").write_text("main's newer lock\n")
    sync_copy(src, dest)
    assert (dest / "src/m.py").read_text() == "v2\n" and (dest / "src/new.py").read_text() == "new\n"
    assert (dest / "dvc.lock").read_text() == "the study's lock\n"
    assert (dest / "reports/RESULTS.md").read_text() == "the study's results\n"
    log = subprocess.run(["git", "log", "--oneline"], cwd=dest, check=True, capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 2  # a commit per sync: DVC's experiments need one


def test_a_failed_study_records_its_time_and_names_the_resume_command(tmp_path, monkeypatch):
    import json
    import shutil

    import pytest

    from retrofit import study

    src = tmp_path / "src"
    for rel in ("params.yaml", "profiles/cpu-scale.yaml"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(study.REPO / rel, src / rel)
    subprocess.run(["git", "init", "-q"], cwd=src, check=True)
    subprocess.run(["git", "add", "-A"], cwd=src, check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dvc").write_text('#!/bin/sh\n[ "$1" = repro ] && { echo "stage failed"; exit 3; }\nexit 0\n')
    (bin_dir / "dvc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setattr(study, "REPO", src)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(SystemExit, match="exited with 3 .*make scale-study"):
        study.run_study(workdir)
    record = json.loads((workdir / "study.json").read_text())
    assert record["runs"][-1]["returncode"] == 3 and record["runs"][-1]["seconds"] >= 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is this run's only
    assert "stage failed" in (workdir / "study.log").read_text()
    assert "human: true" in (workdir / "repo" / "params.yaml").read_text()  # the profile, applied in the copy
    assert "human: false" in (src / "params.yaml").read_text()  # never in the source
