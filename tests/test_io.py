"""Tests for retrofit.io: JSONL contracts, the one atomic file writer, and an output directory swap that no crash
can leave missing or mixed.

The crash test runs :func:`retrofit.io.atomic_dir` in a child process and kills it (SIGKILL, no clean-up) before
each filesystem step of the swap in turn: the exchange rename, the journal's renames and every unlink and rmdir of
the clean-up. After each kill the target must hold exactly the old tree or exactly the new one.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from retrofit.errors import InputError
from retrofit.io import atomic_dir, atomic_file, read_jsonl, recover_dir, write_json, write_jsonl
from retrofit.schema import RowSchema

OLD = {"a.txt": "old a", "sub/b.txt": "old b"}
NEW = {"a.txt": "new a", "c.txt": "new c", "deep/er/d.txt": "new d"}

#: The child: build OLD at the target, then write NEW through atomic_dir and die by SIGKILL before step ``kill_at``
#: (-1: inside the block, before any swap step; a number past the last step: never).
_CHILD = textwrap.dedent("""
    import errno, os, shutil, signal, sys
    from pathlib import Path
    import retrofit.io as rio

    target, kill_at, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    old, new = {old!r}, {new!r}
    for rel, text in old.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    steps = [0]
    swapping = [False]

    def counted(fn):
        def step(*args, **kwargs):
            if swapping[0]:
                if steps[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                steps[0] += 1
            return fn(*args, **kwargs)
        return step

    if mode == "journal":  # a filesystem without an exchange rename
        def no_exchange(a, b):
            raise OSError(errno.EINVAL, "no exchange here")
        rio._exchange = no_exchange
    rio._exchange = counted(rio._exchange)
    for name in ("rename", "replace", "unlink", "rmdir"):
        setattr(os, name, counted(getattr(os, name)))
    with rio.atomic_dir(target) as tmp:
        for rel, text in new.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        if kill_at == -1:
            os.kill(os.getpid(), signal.SIGKILL)
        swapping[0] = True
    print("steps", steps[0])
""").format(old=OLD, new=NEW)


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("mode", ["exchange", "journal"])
def test_atomic_dir_survives_a_kill_at_every_step_of_the_swap(tmp_path: Path, mode: str) -> None:
    outcomes = []
    for kill_at in range(-1, 100):
        case = tmp_path / f"k{kill_at + 1}"
        target = case / "out"
        target.mkdir(parents=True)
        done = subprocess.run([sys.executable, "-c", _CHILD, str(target), str(kill_at), mode],
                              capture_output=True, text=True, check=False)
        if mode == "exchange":  # no recovery needed: the target is whole the instant the process dies
            assert _tree(target) in (OLD, NEW), (kill_at, done.stderr)
        recover_dir(target)  # what the next atomic_dir on this target does first
        got = _tree(target)
        assert got in (OLD, NEW), (mode, kill_at, got, done.stderr)
        assert sorted(p.name for p in case.iterdir()) == ["out"], (mode, kill_at)  # nothing left beside it
        outcomes.append("new" if got == NEW else "old")
        if done.returncode == 0:
            break
        assert done.returncode == -signal.SIGKILL, done.stderr
    else:
        pytest.fail("the swap never completed")
    steps = int(done.stdout.split()[-1])
    assert outcomes[0] == "old" and outcomes[-1] == "new"  # killed inside the block: old; never killed: new
    assert len(outcomes) == steps + 2 and steps >= (1 if mode == "exchange" else 2)


def test_atomic_dir_keeps_the_old_directory_on_an_error(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("new")
        raise RuntimeError("stage failed halfway")
    assert _tree(target) == {"keep.txt": "old"} and sorted(os.listdir(tmp_path)) == ["out"]
    with atomic_dir(tmp_path / "fresh") as tmp:  # no old directory: a plain rename
        (tmp / "x").write_text("1")
    assert _tree(tmp_path / "fresh") == {"x": "1"} and stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o755


def test_recover_dir_leaves_a_live_writers_temporary_directory_alone(tmp_path: Path) -> None:
    mine = tmp_path / f".out.{os.getpid()}.abc.tmp"
    dead = tmp_path / ".out.999999999.abc.tmp"  # no such process
    for d in (mine, dead):
        d.mkdir()
    recover_dir(tmp_path / "out")
    assert mine.exists() and not dead.exists()


def test_atomic_file_replaces_only_on_success_and_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(ValueError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise ValueError("writer failed")
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["f.txt"]
    with atomic_file(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp would leave 0600
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]


def test_jsonl_round_trip_and_contract_errors(tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "ü"}, {"id": "b", "text": "x"}]
    assert write_jsonl(tmp_path / "r.jsonl", rows) == 2
    schema = RowSchema("demo row", "demo", {"id": (str,), "text": (str,)})
    assert read_jsonl(tmp_path / "r.jsonl", schema) == rows
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "text": "x"}\n{"id": "b"')
    with pytest.raises(InputError, match=r"bad.jsonl:2: not valid JSON"):
        read_jsonl(tmp_path / "bad.jsonl")
    with pytest.raises(InputError, match="file not found; it is written by the `demo` stage"):
        read_jsonl(tmp_path / "missing.jsonl", schema)
    write_json(tmp_path / "m.json", {"b": 1, "a": 2})
    assert (tmp_path / "m.json").read_text() == json.dumps({"a": 2, "b": 1}, indent=2) + "\n"
