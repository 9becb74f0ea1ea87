"""Tests for retrofit.data.sources: the registry, mirror copies and verified downloads from a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from retrofit.data.sources import (
    MIRROR_ENV,
    DataError,
    SourceFile,
    dataset_file,
    fetch,
    load_registry,
    mirror_from_env,
    raw_file,
    url,
)
from tests.mirror import mirror_or_skip

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_source(mirror: Path, file: str, content: bytes, dataset: str = "toy") -> SourceFile:
    """Write ``content`` to ``mirror/file`` and return its correct pin."""
    (mirror / file).parent.mkdir(parents=True, exist_ok=True)
    (mirror / file).write_bytes(content)
    return SourceFile(
        dataset=dataset,
        repo="owner/toy",
        commit="0" * 40,
        path=f"data/{Path(file).name}",
        file=file,
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
    )


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, list[SourceFile]]:
    mirror = tmp_path / "mirror"
    files = [
        make_source(mirror, "toy/a.txt", b"alpha\n"),
        make_source(mirror, "toy/b.json", b'{"b": 1}\n'),
        make_source(mirror, "other/c.txt", b"gamma" * 1000, dataset="other"),
    ]
    return mirror, files


def leftovers(dest: Path) -> list[Path]:
    """Temporary siblings that atomic_dir would leave behind on a bug."""
    return list(dest.parent.glob(f".{dest.name}.*"))


# --- registry -------------------------------------------------------------------------------------------------------


def test_registry_loads_and_filters() -> None:
    files = load_registry()
    assert len(files) == 239  # 106 training and evaluation files, 25 of the official tasks, 108 of the tasks beyond
    assert len({sf.file for sf in files}) == len(files)
    xquad = load_registry(["xquad"])
    assert {sf.dataset for sf in xquad} == {"xquad"}
    assert "xquad/xquad.en.json" in {sf.file for sf in xquad}


def test_registry_unknown_dataset_is_named() -> None:
    with pytest.raises(DataError, match=r"unknown dataset.*'nope'"):
        load_registry(["xquad", "nope"])


def test_registry_rejects_bad_entries(tmp_path: Path) -> None:
    bad = tmp_path / "sources.json"
    bad.write_text(
        '[{"dataset": "x", "repo": "a/b", "commit": "c", "path": "p", "file": "../x", "sha256": "'
        + "0" * 64
        + '", "size": 1}]'
    )
    with pytest.raises(DataError, match="entry 0: key 'file'"):
        load_registry(path=bad)
    bad.write_text('[{"dataset": "x"}]')
    with pytest.raises(DataError, match="entry 0: missing key"):
        load_registry(path=bad)


def test_url_is_raw_github() -> None:
    sf = load_registry(["qed_nq"])[0]
    assert url(sf) == f"https://raw.githubusercontent.com/{sf.repo}/{sf.commit}/{sf.path}"
    assert url(sf, "http://127.0.0.1:9/").startswith(f"http://127.0.0.1:9/{sf.repo}/")


# --- mirror_from_env ------------------------------------------------------------------------------------------------


def test_mirror_from_env(tmp_path: Path) -> None:
    assert mirror_from_env({}) is None
    assert mirror_from_env({MIRROR_ENV: ""}) is None
    assert mirror_from_env({MIRROR_ENV: str(tmp_path)}) == tmp_path
    not_dir = tmp_path / "file.txt"
    not_dir.write_text("x")
    with pytest.raises(DataError, match=f"{MIRROR_ENV}=.*file.txt.*not a directory"):
        mirror_from_env({MIRROR_ENV: str(not_dir)})
    with pytest.raises(DataError, match="not a directory"):
        mirror_from_env({MIRROR_ENV: str(tmp_path / "missing")})


# --- fetch from a mirror --------------------------------------------------------------------------------------------


def test_fetch_from_mirror(toy: tuple[Path, list[SourceFile]], tmp_path: Path) -> None:
    mirror, files = toy
    dest = tmp_path / "raw"
    manifest = fetch(files, dest, mirror)
    for sf in files:
        assert (dest / sf.file).read_bytes() == (mirror / sf.file).read_bytes()
        assert manifest[sf.file] == {
            "dataset": sf.dataset,
            "repo": sf.repo,
            "commit": sf.commit,
            "path": sf.path,
            "sha256": sf.sha256,
            "size": sf.size,
            "origin": "mirror",
        }
    assert list(manifest) == [sf.file for sf in files]
    assert not leftovers(dest)


def test_fetch_replaces_stale_dest(toy: tuple[Path, list[SourceFile]], tmp_path: Path) -> None:
    mirror, files = toy
    dest = tmp_path / "raw"
    (dest / "stale").mkdir(parents=True)
    fetch(files[:1], dest, mirror)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == ["toy/a.txt"]


def test_wrong_checksum_names_file_and_leaves_no_dest(toy: tuple[Path, list[SourceFile]], tmp_path: Path) -> None:
    mirror, files = toy
    wrong = SourceFile(**{**files[1].__dict__, "sha256": "f" * 64})
    dest = tmp_path / "raw"
    with pytest.raises(DataError) as err:
        fetch([files[0], wrong, files[2]], dest, mirror)
    msg = str(err.value)
    assert "toy" in msg and "data/b.json" in msg and "f" * 64 in msg
    assert "corrupt or stale" in msg and MIRROR_ENV in msg
    assert not dest.exists()
    assert not leftovers(dest)


def test_failure_keeps_previous_dest(toy: tuple[Path, list[SourceFile]], tmp_path: Path) -> None:
    mirror, files = toy
    dest = tmp_path / "raw"
    fetch(files, dest, mirror)
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    (mirror / files[2].file).unlink()
    with pytest.raises(DataError):
        fetch(files, dest, mirror)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before


def test_missing_mirror_entry(toy: tuple[Path, list[SourceFile]], tmp_path: Path) -> None:
    mirror, files = toy
    (mirror / files[0].file).unlink()
    with pytest.raises(DataError) as err:
        fetch(files, tmp_path / "raw", mirror)
    msg = str(err.value)
    assert "not in the mirror" in msg and str(mirror / files[0].file) in msg
    assert files[0].sha256 in msg and "data/a.txt" in msg and MIRROR_ENV in msg
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("corrupt", [b"alphA\n", b"alph", b"alpha\nextra"], ids=["flipped", "truncated", "longer"])
def test_corrupt_mirror_file(toy: tuple[Path, list[SourceFile]], tmp_path: Path, corrupt: bytes) -> None:
    mirror, files = toy
    (mirror / files[0].file).write_bytes(corrupt)
    with pytest.raises(DataError, match=r"toy file 'data/a.txt'.*corrupt"):
        fetch(files, tmp_path / "raw", mirror)
    assert not (tmp_path / "raw").exists()


def test_mirror_not_a_directory(toy: tuple[Path, list[SourceFile]], tmp_path: Path) -> None:
    _, files = toy
    with pytest.raises(DataError, match="not a directory"):
        fetch(files, tmp_path / "raw", tmp_path / "nowhere")


def test_raw_file(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "y.txt").write_text("y")
    assert raw_file(tmp_path, "x/y.txt") == tmp_path / "x" / "y.txt"
    with pytest.raises(DataError, match=r"z\.txt: not found; fetch the raw data first"):
        raw_file(tmp_path, "x/z.txt")


def test_fetch_real_mirror_subset(tmp_path: Path) -> None:
    files = load_registry(["xquad", "qed_nq"])
    manifest = fetch(files, tmp_path / "raw", mirror_or_skip())
    assert len(manifest) == len(files) == 15
    assert all(v["origin"] == "mirror" for v in manifest.values())


# --- fetch over HTTP (local server only) ----------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``directory``; the first ``fail_first`` requests get ``fail_code``."""

    def __init__(self, *args, state: dict, **kwargs) -> None:  # type: ignore[type-arg]
        self.state = state
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.state["requests"] += 1
        if self.state["requests"] <= self.state["fail_first"]:
            self.send_error(self.state["fail_code"])
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, dict]]:  # type: ignore[type-arg]
    """A local HTTP server on 127.0.0.1 serving ``root``; yields (base_url, root, state)."""
    root = tmp_path / "www"
    root.mkdir()
    state = {"requests": 0, "fail_first": 0, "fail_code": 503}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root), state=state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, state
    finally:
        httpd.shutdown()
        httpd.server_close()


def publish(root: Path, sf: SourceFile, content: bytes) -> None:
    """Put ``content`` where ``url(sf, base)`` points on the local server."""
    target = root / sf.repo / sf.commit / sf.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def test_download_from_local_server(toy: tuple[Path, list[SourceFile]], server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mirror, files = toy
    base, root, state = server
    for sf in files:
        publish(root, sf, (mirror / sf.file).read_bytes())
    dest = tmp_path / "raw"
    manifest = fetch(files, dest, None, timeout=5, base_url=base)
    for sf in files:
        assert (dest / sf.file).read_bytes() == (mirror / sf.file).read_bytes()
        assert manifest[sf.file]["origin"] == "url"
    assert state["requests"] == len(files)


def test_download_404_is_clear(toy: tuple[Path, list[SourceFile]], server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, files = toy
    base, _, state = server
    dest = tmp_path / "raw"
    with pytest.raises(DataError) as err:
        fetch(files, dest, None, timeout=5, base_url=base, backoff_s=0)
    msg = str(err.value)
    assert "HTTP 404" in msg and "data/a.txt" in msg and files[0].sha256 in msg and base in msg
    assert MIRROR_ENV in msg
    assert state["requests"] == 1  # a 404 is not retried
    assert not dest.exists() and not leftovers(dest)


def test_download_retries_transient_errors(toy: tuple[Path, list[SourceFile]], server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mirror, files = toy
    base, root, state = server
    publish(root, files[0], (mirror / files[0].file).read_bytes())
    state["fail_first"] = 1
    fetch(files[:1], tmp_path / "raw", None, timeout=5, base_url=base, retries=3, backoff_s=0)
    assert state["requests"] == 2

    state.update(requests=0, fail_first=10)
    with pytest.raises(DataError, match=r"failed after 2 attempt\(s\).*HTTP 503"):
        fetch(files[:1], tmp_path / "raw2", None, timeout=5, base_url=base, retries=2, backoff_s=0)
    assert state["requests"] == 2


def test_download_wrong_bytes(toy: tuple[Path, list[SourceFile]], server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, files = toy
    base, root, state = server
    publish(root, files[0], b"ALPHA\n")  # right size, wrong content: not retried
    with pytest.raises(DataError, match=r"data/a.txt.*sha256 .*re-download"):
        fetch(files[:1], tmp_path / "raw", None, timeout=5, base_url=base, backoff_s=0)
    assert state["requests"] == 1
    assert not (tmp_path / "raw").exists()


def test_download_unreachable(toy: tuple[Path, list[SourceFile]], tmp_path: Path) -> None:
    _, files = toy
    import socket

    with socket.socket() as s:  # a free port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match=r"failed after 2 attempt\(s\)"):
        fetch(files[:1], tmp_path / "raw", None, timeout=2, base_url=f"http://127.0.0.1:{port}", retries=2, backoff_s=0)


def test_download_real_pins_from_local_server(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Real registry entries, served at their pinned repo/commit/path by a local server, download and verify."""
    base, root, _ = server
    mirror = mirror_or_skip()
    files = load_registry(["qed_nq", "fever_symmetric"])
    for sf in files:
        publish(root, sf, (mirror / sf.file).read_bytes())
    manifest = fetch(files, tmp_path / "raw", None, timeout=10, base_url=base)
    assert {v["origin"] for v in manifest.values()} == {"url"}
    for sf in files:
        assert (tmp_path / "raw" / sf.file).read_bytes() == (mirror / sf.file).read_bytes()


def test_dataset_file(tmp_path: Path) -> None:
    (tmp_path / "xquad").mkdir()
    (tmp_path / "xquad" / "xquad.en.json").write_text("{}")
    assert dataset_file(tmp_path / "xquad", "xquad", "xquad.en.json") == tmp_path / "xquad" / "xquad.en.json"
    with pytest.raises(DataError, match=r"is the raw-data root; pass its xquad/ folder"):
        dataset_file(tmp_path, "xquad", "xquad.en.json")
    with pytest.raises(DataError, match=r"xquad\.de\.json: not found; fetch the raw data first"):
        dataset_file(tmp_path / "xquad", "xquad", "xquad.de.json")
