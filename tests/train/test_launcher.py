"""``stages/train.py`` under ``torchrun --nproc_per_node 2`` (gloo on the CPU), as ``train.launcher`` runs it.

One rank killed mid-run: torchrun fails with a non-zero exit and the stage writes no model and no report (so
``dvc repro`` records nothing: it writes ``dvc.lock`` only after a command succeeds). The rerun resumes from the last
checkpoint and ends with the same weights as an uninterrupted run at the same thread count.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_bad_inputs import _mined, _rows, ws  # noqa: F401 (the fixture: params, a tiny base model)
from tests.train.test_trainer import _free_port, _weights

SET = ["train.mix.per_language=0", "train.max_steps=4", "train.checkpoint_every=1", "train.batch_size=2",
       "train.cached=true", "train.mini_batch_size=1", "train.dataloader_workers=0", "base.threads=1"]


def _torchrun(root: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "stages/train.py", "--name", "k", "--set", *SET]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{out[-3000:]}")
    return out


def _rank_pids(torchrun_pid: int) -> dict[int, int]:
    """``{rank: pid}`` of torchrun's worker processes (their environment names the rank)."""
    ranks = {}
    children = subprocess.run(["pgrep", "-P", str(torchrun_pid)], capture_output=True, text=True).stdout.split()
    for pid in map(int, children):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = next((int(e.split(b"=", 1)[1]) for e in env if e.startswith(b"RANK=")), None)
        if rank is not None:
            ranks[rank] = pid
    return ranks


DONE = re.compile(r"^train: k: \d+ rows, 4 steps", re.MULTILINE)


def test_a_killed_rank_fails_the_run_and_the_rerun_resumes_to_the_same_weights(ws: Path):  # noqa: F811
    cache = Path(yaml.safe_load((ws / "params.yaml").read_text())["base"]["cache_dir"])
    _rows(ws / "data/mined/train.jsonl", [_mined(i) for i in range(16)])  # 8 batches of 2: 4 steps for each rank
    out = _finish(_torchrun(ws))
    assert DONE.search(out), out[-3000:]
    info = json.loads((ws / "reports/train/k/info.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 4 and info["resumed_from"] is None
    shutil.move(ws / "models/k", ws / "uninterrupted")
    shutil.rmtree(ws / "reports/train/k")

    proc = _torchrun(ws)
    deadline = time.monotonic() + 240
    while not list(cache.glob("checkpoints/k-*/checkpoint-2/rng_state_1.pth")):  # rank 1 dies once step 2 is saved
        assert proc.poll() is None and time.monotonic() < deadline, _finish(proc)[-3000:]
        time.sleep(0.1)
    os.kill(_rank_pids(proc.pid)[1], signal.SIGKILL)
    out = _finish(proc)
    assert proc.returncode != 0, out[-3000:]
    assert not (ws / "models/k").exists() and not (ws / "reports/train/k").exists()

    out = _finish(_torchrun(ws))
    assert DONE.search(out), out[-3000:]
    info = json.loads((ws / "reports/train/k/info.json").read_text())
    assert info["resumed_from"] and int(info["resumed_from"].split("-")[1]) >= 2 and info["steps"] == 4
    a, b = _weights(ws / "uninterrupted"), _weights(ws / "models/k")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
