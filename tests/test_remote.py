"""The sharing recipe of docs/sharing.md, run for real: a local-directory DVC remote and a shared cache directory.

A tiny DVC project (one stage) stands in for this pipeline so the test stays fast; the commands are exactly the
ones docs/sharing.md gives.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is needed for DVC projects")


def sh(*args: str, cwd: Path) -> str:
    res = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def dvc(*args: str, cwd: Path) -> str:
    return sh(sys.executable, "-m", "dvc", *args, cwd=cwd)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = tmp_path / "alice"
    repo.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh("git", "config", "user.email", "alice@example.org", cwd=repo)
    sh("git", "config", "user.name", "Alice", cwd=repo)
    dvc("init", "-q", cwd=repo)
    dvc("config", "core.analytics", "false", cwd=repo)
    (repo / "make.py").write_text("from pathlib import Path\nPath('out').mkdir(exist_ok=True)\nPath('out/x.txt').write_text('expensive result\\n')\n")
    dvc("stage", "add", "-q", "-n", "make", "-d", "make.py", "-o", "out", f"{sys.executable} make.py", cwd=repo)
    dvc("repro", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "pipeline", cwd=repo)
    return repo


def test_push_then_pull_from_local_remote(project: Path, tmp_path: Path):
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "shared", str(remote), cwd=project)
    sh("git", "commit", "-qam", "remote", cwd=project)
    dvc("push", "-q", cwd=project)
    assert any(remote.rglob("*")), "push wrote nothing to the remote"

    bob = tmp_path / "bob"
    sh("git", "clone", "-q", str(project), str(bob), cwd=tmp_path)
    dvc("pull", "-q", cwd=bob)
    assert (bob / "out" / "x.txt").read_text() == "expensive result\n"
    status = dvc("status", cwd=bob)
    assert "up to date" in status.lower() or "changed" not in status.lower()


def test_shared_cache_directory(project: Path, tmp_path: Path):
    cache = tmp_path / "shared-cache"
    dvc("cache", "dir", str(cache), cwd=project)
    dvc("config", "cache.shared", "group", cwd=project)
    dvc("config", "cache.type", "symlink,hardlink,copy", cwd=project)
    dvc("repro", "-q", "--force", cwd=project)
    assert any(p.is_file() for p in cache.rglob("*")), "the shared cache holds no object"

    # A second checkout using the same cache gets the output without re-running the stage.
    bob = tmp_path / "bob"
    sh("git", "clone", "-q", str(project), str(bob), cwd=tmp_path)
    dvc("cache", "dir", str(cache), cwd=bob)
    dvc("checkout", "-q", cwd=bob)
    assert (bob / "out" / "x.txt").read_text() == "expensive result\n"
