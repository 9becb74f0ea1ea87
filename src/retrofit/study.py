"""The CPU scale study (``profiles/cpu-scale.yaml``): the paper's findings at the largest scale a 2-core CPU affords.

``make scale-study`` (``python -m retrofit.study``) runs the study in a copy of the repository and writes its report
here; the default's outputs are never read for writing or changed:

1. **A copy** of the files git tracks or does not ignore (:func:`retrofit.rehearsal.copy_repository`) in
   ``<workdir>/repo`` (default ``.cache/scale-study/repo``), a git repository of its own. It is kept: a second run
   syncs the files into it and DVC reruns only what changed, so an interrupted study loses nothing but the stage it
   was in. Its DVC cache is this repository's (``.dvc/cache``), so stages the default has already run with the same
   inputs (fetch, prepare, the models, generate) come from DVC's run cache instead of running again.
2. **The profile**, merged into the copy's ``params.yaml`` (:func:`retrofit.profiles.apply_profile`).
3. **``dvc repro``** in the copy, its output in ``<workdir>/study.log``; the wall time of every run, finished or
   interrupted, goes to ``<workdir>/study.json`` and then into the report.
4. **The report**: ``reports/scale_study.md`` and ``reports/scale_study/`` (figures, ``summary.json``) from the copy's
   evaluations (:mod:`retrofit.report.scale_study`).

``--report-only`` skips steps 1-3 (the report from an existing copy).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from retrofit.rehearsal import REPO, copy_files, copy_repository

#: The study's profile, relative to the repository.
PROFILE = Path("profiles/cpu-scale.yaml")
#: Where the copy lives by default (git ignores ``.cache/``).
WORKDIR = Path(".cache/scale-study")
#: Folders of pipeline outputs (DVC's, and the reports git tracks): a resumed copy keeps its own.
OUTPUTS = ("data/", "models/", "reports/")


def sync_copy(src: Path, dest: Path) -> None:
    """Create the copy, or bring an existing one's code and params up to date with ``src`` (its ``dvc.lock`` and
    outputs kept, so that ``dvc repro`` resumes)."""
    if not (dest / ".git").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        copy_repository(src, dest)
        return
    # the copy's own state and outputs are never the default's
    copy_files(src, dest, skip=lambda rel: rel == "dvc.lock" or rel.startswith(OUTPUTS))
    git = ["git", "-c", "user.name=study", "-c", "user.email=study@localhost"]
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "study copy", "--allow-empty"], cwd=dest, check=True)


def run_study(workdir: Path) -> dict[str, Any]:
    """Steps 1-3 of the module docstring; returns the record written to ``<workdir>/study.json``."""
    from retrofit.profiles import apply_profile

    repo = (workdir / "repo").resolve()
    log = workdir / "study.log"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(repo / "src")}
    record: dict[str, Any] = {"profile": str(PROFILE), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    t0 = time.perf_counter()
    sync_copy(REPO, repo)
    subprocess.run(["git", "checkout", "-q", "--", "params.yaml"], cwd=repo, check=True)  # the profile on a clean file
    apply_profile(repo / PROFILE, repo / "params.yaml")
    subprocess.run(["dvc", "cache", "dir", "--local", str(REPO / ".dvc" / "cache")], cwd=repo, env=env, check=True)
    print(f"study: dvc repro in {repo} (log: {log})", flush=True)
    handler = signal.signal(signal.SIGTERM, _interrupt)  # a killed study still records the time it spent
    record["returncode"] = "interrupted"
    try:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"\n$ dvc repro  # {record['started']}\n")
            out.flush()
            record["returncode"] = subprocess.run(["dvc", "repro"], cwd=repo, env=env, stdout=out,
                                                  stderr=subprocess.STDOUT).returncode
    finally:
        signal.signal(signal.SIGTERM, handler)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        record["cpus"] = os.cpu_count()
        record["bf16_env"] = os.environ.get("RETROFIT_CPU_BF16")
        previous = _json(workdir / "study.json") or {}
        record["runs"] = [*previous.get("runs", []), {k: record[k] for k in ("started", "seconds", "returncode")}]
        (workdir / "study.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if record["returncode"]:
        raise SystemExit(f"study: dvc repro exited with {record['returncode']} after {record['seconds']:.0f} s; rerun "
                         f"`make scale-study` to resume (finished stages are cached); log: {log}")
    return record


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def main() -> None:
    """``python -m retrofit.study``: run (or resume) the study, then write its report."""
    from retrofit.report.scale_study import write_scale_study

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=REPO / WORKDIR)
    p.add_argument("--report-only", action="store_true", help="write the report from the existing copy")
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        run_study(args.workdir)
    path = write_scale_study(args.workdir / "repo", _json(args.workdir / "study.json") or {}, REPO / "reports")
    print(f"study: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
