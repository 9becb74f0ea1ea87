"""The paper path, rehearsed offline end to end: ``profiles/paper.yaml`` with ``profiles/rehearsal.yaml`` on top.

``make rehearsal`` (``python -m retrofit.rehearsal``) runs every paper-scale code path on a 2-core machine with no
network, in a throwaway copy of the repository, and checks what each step left behind:

1. **A copy.** The files git tracks or does not ignore go to ``<workdir>/repo``, a fresh git repository with one
   commit (DVC's experiments need one), with its own DVC cache and ``base.cache_dir``. The default's outputs and
   caches are never read or written.
2. **Local stand-ins**, built from the embedded default's own data (``dvc repro prepare`` in the copy, default
   params): the seven English hub collections laid out like their hub repositories and Wikipedia for the 20 paper
   languages (:mod:`retrofit.data.hub_layout`; XQuAD training-pool articles, NTREX-128 documents for the 8 languages
   without XQuAD), and the bundled multilingual-e5-small as local base and teacher directories.
3. **The profiles**, merged into the copy's ``params.yaml`` (:mod:`retrofit.profiles`): paper, then rehearsal.
4. **``dvc repro``**, with llama.cpp's own server (:mod:`retrofit.generate.llama_server`) on the profile's loopback
   ``base_url`` and a throwaway key: generation through the OpenAI backend over HTTP, training under
   ``torchrun --nproc_per_node 2`` (gloo) with GradCache, evaluation with the MMTEB stand-in.
5. **The MMTEB path by hand**: two shards of ``python -m retrofit.eval.mmteb evaluate`` on the top scale point, then
   ``summarize``.
6. **A sweep through DVC's queue**: ``dvc exp run --queue`` twice, ``dvc queue start``, and both in ``dvc exp show``.

Every command's output goes to ``<workdir>/rehearsal.log``; ``<workdir>/rehearsal.json`` records each step's
seconds and each check. The server is always stopped. Exit 0 only when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
#: Where the stand-ins live inside the copy (the profile's location values point here); git ignores ``.cache/``, so
#: neither the copy's commits nor DVC's queue carry them.
STANDINS = Path(".cache/rehearsal")
#: Shards of the MMTEB path (one per GPU at paper scale).
_SHARDS = 2
#: The sweep queued through DVC (cheap: only the plot stage reads it).
SWEEP = ("plot.equivalence_margin=0.25", "plot.equivalence_margin=1.0")
#: The sharded MMTEB run's tasks: one per shard.
SHARD_TASKS = ("LegalBenchCorporateLobbying", "BelebeleRetrieval")


class Rehearsal:
    """One rehearsal: the copy, its log, and the record of steps and checks."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.repo = workdir / "repo"
        self.log = workdir / "rehearsal.log"
        self.env = env
        self.record: dict[str, Any] = {"steps": {}, "checks": {}}

    def run(self, *cmd: str, timeout: float = 1800) -> str:
        """Run ``cmd`` in the copy, its output streamed to the log; its output, or an error naming the log."""
        with open(self.log, "a", encoding="utf-8") as log:
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            start = log.tell()
            proc = subprocess.run(cmd, cwd=self.repo, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        with open(self.log, encoding="utf-8", errors="replace") as log:
            log.seek(start)
            output = log.read()
        if proc.returncode:
            raise RuntimeError(f"`{' '.join(cmd)}` exited with {proc.returncode}; its output ends:\n"
                               f"{output[-3000:]}\n(full log: {self.log})")
        return output

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Time one step and print its progress."""
        print(f"rehearsal: {name} ...", flush=True)
        t0 = time.perf_counter()
        out = fn()
        self.record["steps"][name] = round(time.perf_counter() - t0, 1)
        print(f"rehearsal: {name} done in {self.record['steps'][name]:.0f} s", flush=True)
        return out

    def check(self, name: str, ok: bool, evidence: Any) -> None:
        """Record a check and its evidence."""
        self.record["checks"][name] = {"ok": bool(ok), "evidence": evidence}
        print(f"rehearsal: check {name}: {'ok' if ok else 'FAILED'} ({evidence})", flush=True)


def copy_files(src: Path, dest: Path, skip: Callable[[str], bool] = lambda rel: False) -> None:
    """The files git tracks or does not ignore in ``src`` (their paths relative to it, less ``skip``), into ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=src,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (src / rel).is_file() and not skip(rel):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dest / rel)


def copy_repository(src: Path, dest: Path) -> None:
    """The files git tracks or does not ignore, into ``dest``, committed there as a fresh repository."""
    copy_files(src, dest)
    git = ["git", "-c", "user.name=rehearsal", "-c", "user.email=rehearsal@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "rehearsal copy"], cwd=dest, check=True)


def wikipedia_articles(prepared: Path, raw: Path, langs: list[str]) -> dict[str, list[dict[str, str]]]:
    """Stand-in Wikipedia articles per language: XQuAD training-pool articles, NTREX-128 documents elsewhere."""
    from retrofit.data.ntrex import PASSAGE_ROW, prepare_ntrex
    from retrofit.data.xquad import PARAGRAPH_ROW
    from retrofit.io import read_jsonl
    from retrofit.schema import XQUAD_LANGUAGES

    articles: dict[str, list[dict[str, str]]] = defaultdict(list)
    by_article: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in read_jsonl(prepared / "xquad" / "paragraphs.jsonl", PARAGRAPH_ROW):
        if r["split"] == "train" and r["lang"] in langs:  # never a held-out article
            by_article[(r["lang"], r["article"])].append(r)
    for (lang, article), rows in sorted(by_article.items()):
        articles[lang].append({"id": f"xquad{article}", "url": f"https://{lang}.wikipedia.org/wiki/xquad{article}",
                               "title": rows[0]["title"], "text": "\n".join(r["text"] for r in rows)})
    others = [lang for lang in langs if lang not in XQUAD_LANGUAGES]
    if others:
        with tempfile.TemporaryDirectory() as tmp:
            prepare_ntrex(raw / "ntrex128", Path(tmp) / "ntrex", others, 2000)
            docs: dict[tuple[str, str], list[dict]] = defaultdict(list)
            for r in read_jsonl(Path(tmp) / "ntrex" / "passages.jsonl", PASSAGE_ROW):
                docs[(r["lang"], r["doc_id"])].append(r)
        for (lang, doc), rows in sorted(docs.items()):
            articles[lang].append({"id": doc, "url": f"https://{lang}.wikipedia.org/wiki/{doc}",
                                   "title": rows[0]["headline"], "text": "\n".join(r["text"] for r in rows)})
    return dict(articles)


def build_standins(r: Rehearsal, langs: list[str]) -> dict[str, Any]:
    """The hub collections, Wikipedia and the local models under :data:`STANDINS` in the copy, from its default data."""
    import datasets

    from retrofit.data.hub_layout import write_english, write_wikipedia

    datasets.disable_progress_bars()
    root = r.repo / STANDINS
    english = write_english(root / "hub", r.repo / "data" / "prepared" / "english", rows=120)
    articles = wikipedia_articles(r.repo / "data" / "prepared", r.repo / "data" / "raw", langs)
    write_wikipedia(root / "hub" / "wikimedia" / "wikipedia", articles)
    model = STANDINS / "models" / "multilingual-e5-small"
    r.run(sys.executable, "-c", "from retrofit.models.load import materialize_base_model as m; "
          f"m('bundled:multilingual-e5-small', {str(model)!r})")
    shutil.copytree(root / "models" / "multilingual-e5-small", root / "models" / "teacher")
    return {"english": sorted(english), "wikipedia_articles": {k: len(v) for k, v in sorted(articles.items())}}


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def rehearse(workdir: Path, keep: bool = False) -> dict[str, Any]:
    """Run the rehearsal in ``workdir`` (created); returns the record also written to ``rehearsal.json``."""
    from retrofit.config import load_params
    from retrofit.generate.bundled import resolve_gguf
    from retrofit.generate.llama_server import serve
    from retrofit.profiles import apply_profile

    workdir.mkdir(parents=True, exist_ok=True)
    key_env = "RETROFIT_REHEARSAL_KEY"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "DVC_NO_ANALYTICS": "1", key_env: secrets.token_hex(16), "PYTHONPATH": str(workdir / "repo" / "src")}
    r = Rehearsal(workdir, env)
    r.log.write_text("", encoding="utf-8")
    t0 = time.perf_counter()
    try:
        r.step("copy", lambda: copy_repository(REPO, r.repo))
        r.step("default data", lambda: r.run("dvc", "repro", "prepare"))
        paper = yaml.safe_load((r.repo / "profiles" / "paper.yaml").read_text(encoding="utf-8"))
        r.record["standins"] = r.step("stand-ins", lambda: build_standins(r, paper["base"]["languages"]))
        for profile in ("paper", "rehearsal"):
            r.step(f"apply {profile}", lambda p=profile: apply_profile(r.repo / "profiles" / f"{p}.yaml",
                                                                        r.repo / "params.yaml"))
        params = load_params(r.repo / "params.yaml")
        op = params.generate.openai
        if op.api_key_env != key_env:
            raise RuntimeError(f"profiles/rehearsal.yaml: generate.openai.api_key_env must be {key_env}")
        port = int(op.base_url.split(":")[2].split("/")[0])
        gguf, _ = resolve_gguf(f"bundled:{op.model}", r.repo / params.base.cache_dir / "llm")  # the served model
        os.environ[key_env] = env[key_env]  # the key the server demands (serve passes this process's environment)
        with serve(gguf, alias=op.model, threads=params.base.threads, port=port, ctx_per_slot=4096,
                   api_key_env=key_env, log=workdir / "llama-server.log"):
            r.step("dvc repro", lambda: r.run("dvc", "repro"))
        top = f"scale_{max(params.scale.per_language)}"
        out = f"reports/eval/{top}/mmteb-sharded"
        for k in range(_SHARDS):
            r.step(f"mmteb shard {k}/{_SHARDS}", lambda k=k: r.run(
                sys.executable, "-m", "retrofit.eval.mmteb", "evaluate", "--model", f"models/{top}", "--name", top,
                "--out", out, "--tasks", *SHARD_TASKS, "--shard", f"{k}/{_SHARDS}", "--threads",
                str(params.base.threads), "--fp32"))
        r.step("mmteb summarize", lambda: r.run(sys.executable, "-m", "retrofit.eval.mmteb", "summarize", "--out", out,
                                                "--tasks", *SHARD_TASKS))
        r.run("git", "add", "-A")
        r.run("git", "-c", "user.name=rehearsal", "-c", "user.email=rehearsal@localhost", "commit", "-qm",
              "rehearsal: the paper profile reproduced")
        for i, setting in enumerate(SWEEP):
            r.step(f"queue sweep {i}", lambda s=setting, i=i: r.run("dvc", "exp", "run", "--queue", "-n", f"sweep{i}",
                                                                  "-S", s))
        r.step("dvc queue start", lambda: (r.run("dvc", "queue", "start", "--jobs", "1"), _wait_for_queue(r)))
        checks(r, params, out)
    except Exception as exc:
        r.record["error"] = f"{type(exc).__name__}: {exc}"
        print(f"rehearsal: FAILED: {r.record['error']}", file=sys.stderr, flush=True)
    finally:
        r.record["seconds"] = round(time.perf_counter() - t0, 1)
        (workdir / "rehearsal.json").write_text(json.dumps(r.record, indent=2), encoding="utf-8")
        if not keep and "error" not in r.record and all(c["ok"] for c in r.record["checks"].values()):
            shutil.rmtree(r.repo, ignore_errors=True)
    return r.record


def _wait_for_queue(r: Rehearsal, timeout_s: float = 900) -> None:
    """Until ``dvc queue status`` shows nothing queued or running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = r.run("dvc", "queue", "status")
        if not any(word in status for word in ("Queued", "Running")):
            return
        time.sleep(5)
    raise RuntimeError(f"the DVC queue did not finish in {timeout_s:g} s")


def checks(r: Rehearsal, params: Any, mmteb_out: str) -> None:
    """What the done-when asks the log to show, read from the outputs."""
    repo = r.repo
    metrics = _json(repo / "data" / "generated" / "metrics.json")
    rows = [json.loads(line) for line in (repo / "data" / "generated" / "examples.jsonl").read_text().splitlines()]
    served = {tuple(sorted(row["generator"].items())) for row in rows}
    r.check("generation through llama.cpp's server over HTTP on loopback",
            metrics.get("requests", 0) > 0 and all(dict(s).get("base_url") == params.generate.openai.base_url
                                                  for s in served),
            {"requests": metrics.get("requests"), "examples": len(rows), "generators": [dict(s) for s in served]})
    sources = {row["source"] for row in rows}
    r.check("every passage from the Wikipedia stand-in", sources <= {"wikipedia"}, sorted(sources))
    infos = {p.parent.name: _json(p) for p in sorted((repo / "reports" / "train").glob("*/info.json"))}
    r.check("training in 2 processes", bool(infos) and all(i.get("world_size") == 2 for i in infos.values()),
            {name: i.get("world_size") for name, i in infos.items()})
    mm = _json(repo / mmteb_out / "metrics.json")
    log = r.log.read_text(encoding="utf-8")
    r.check("MMTEB evaluation in 2 shards", mm["complete"] and all(f"shard {k}/{_SHARDS}: " in log
                                                                  for k in range(_SHARDS)),
            {"tasks": sorted(mm["tasks"]), "complete": mm["complete"]})
    stage = {p.parent.parent.name: _json(p)["tasks_done"]
             for p in sorted((repo / "reports" / "eval").glob("*/mmteb/metrics.json"))}
    r.check("the evaluate stage's MMTEB stand-in for every model", bool(stage) and all(stage.values()), stage)
    shown = json.loads(r.run("dvc", "exp", "show", "--json"))
    names = sorted({exp.get("name") for rev in shown for exp in (rev.get("experiments") or [])
                    for exp in [(exp.get("revs") or [{}])[0]] if exp.get("name")})
    r.check("a sweep through DVC's queue", all(f"sweep{i}" in names for i in range(len(SWEEP))), names)
    r.check("RESULTS.md written", (repo / "reports" / "RESULTS.md").is_file(), "reports/RESULTS.md")


def main() -> None:
    """``python -m retrofit.rehearsal``: rehearse the paper path offline; exit 1 if any check fails."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=None, help="default: a new folder under the system temp dir")
    p.add_argument("--keep", action="store_true", help="keep the copy even when every check passes")
    args = p.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="retrofit-rehearsal-"))
    record = rehearse(workdir, keep=args.keep)
    failed = [name for name, c in record["checks"].items() if not c["ok"]]
    print(f"rehearsal: {record['seconds']:.0f} s; {len(record['checks']) - len(failed)} of {len(record['checks'])} "
          f"checks passed; record: {workdir / 'rehearsal.json'}; log: {workdir / 'rehearsal.log'}")
    if failed or "error" in record:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
