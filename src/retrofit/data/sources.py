"""The pinned public source files and their verified download.

Every raw file the project reads is pinned in ``assets/sources.json``: a JSON list with one object per file,

- ``dataset`` -- the dataset it belongs to (``xquad``, ``ntrex128``, ``qed_nq``, ...);
- ``repo``, ``commit``, ``path`` -- where it lives on GitHub; its canonical address is
  ``https://raw.githubusercontent.com/<repo>/<commit>/<path>`` (see :func:`url`);
- ``file`` -- its name under the raw-data directory (and under a mirror), ``<dataset>/<flattened path>``;
- ``sha256``, ``size`` -- what the bytes must hash to and how many there are.

:func:`fetch` fills a raw-data directory ``dest`` so that ``dest/<file>`` exists for every requested file, either
by copying from a local mirror (a directory with the same layout, found through ``RETROFIT_DATA_MIRROR``) or by
downloading the canonical address. Each file is hashed while it streams and checked against its pin. The whole
directory is built in a temporary sibling and swapped in only when every file verified, so a failure leaves the
previous ``dest`` (or nothing), never a partial one.

The preparers read from that directory or, equally, from the mirror itself (same layout): :mod:`retrofit.data.xquad`
and :mod:`retrofit.data.ntrex` take their dataset's folder (``<raw>/xquad``, ``<raw>/ntrex128``) and
:mod:`retrofit.data.english`, which reads six datasets, takes the root.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from tqdm.auto import tqdm

from retrofit.errors import RetrofitError
from retrofit.io import atomic_dir

log = logging.getLogger(__name__)

#: The pinned registry shipped with the package.
REGISTRY_PATH = Path(__file__).parents[1] / "assets" / "sources.json"

#: Environment variable naming a local mirror with the same layout as a fetched raw-data directory.
MIRROR_ENV = "RETROFIT_DATA_MIRROR"

#: Where the canonical copies live.
RAW_BASE_URL = "https://raw.githubusercontent.com"

_CHUNK = 1 << 16
_FIELDS = {"dataset": str, "repo": str, "commit": str, "path": str, "file": str, "sha256": str, "size": int}


class DataError(RetrofitError):
    """A raw data file is missing, corrupt or could not be downloaded; the message names it and says what to do."""


@dataclass(frozen=True)
class SourceFile:
    """One pinned file of a public dataset.

    Attributes:
        dataset: Dataset name, e.g. ``"xquad"``.
        repo: GitHub ``owner/name``.
        commit: The pinned commit (40 hex digits).
        path: Path of the file inside the repository.
        file: Relative name under the raw-data directory and the mirror, e.g. ``"xquad/xquad.en.json"``.
        sha256: Expected sha256 of the bytes (lowercase hex).
        size: Expected size in bytes.
    """

    dataset: str
    repo: str
    commit: str
    path: str
    file: str
    sha256: str
    size: int

    def describe(self) -> str:
        """A one-line name for error messages: dataset, repository path and expected sha256."""
        return f"{self.dataset} file {self.path!r} (local name {self.file}, expected sha256 {self.sha256})"


def load_registry(datasets: list[str] | None = None, path: str | Path = REGISTRY_PATH) -> list[SourceFile]:
    """Load and validate the pinned registry.

    Args:
        datasets: Keep only these datasets, in registry order; ``None`` keeps every file.
        path: The registry JSON file (the packaged ``assets/sources.json`` by default).

    Returns:
        The pinned files.

    Raises:
        DataError: The registry is malformed (the message names the entry and key), two entries share a ``file``
            name, or a requested dataset is not in it.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the source registry ({exc}); reinstall the package") from exc
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a JSON list of file entries, got {type(raw).__name__}")
    files: list[SourceFile] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
        missing = sorted(set(_FIELDS) - set(entry))
        if missing:
            raise DataError(f"{where}: missing key(s) {missing}")
        for key, typ in _FIELDS.items():
            if not isinstance(entry[key], typ) or isinstance(entry[key], bool):
                raise DataError(f"{where}: key {key!r} should be {typ.__name__}, got {entry[key]!r}")
        sf = SourceFile(**{k: entry[k] for k in _FIELDS})
        rel = PurePosixPath(sf.file)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise DataError(f"{where}: key 'file' must be a relative path inside the data directory, got {sf.file!r}")
        if len(sf.sha256) != 64 or any(c not in "0123456789abcdef" for c in sf.sha256):
            raise DataError(f"{where}: key 'sha256' must be 64 lowercase hex digits, got {sf.sha256!r}")
        if sf.size < 0:
            raise DataError(f"{where}: key 'size' must be >= 0, got {sf.size}")
        if sf.file in seen:
            raise DataError(f"{where}: file name {sf.file!r} repeats entry {seen[sf.file]}")
        seen[sf.file] = i
        files.append(sf)
    if datasets is None:
        return files
    known = {sf.dataset for sf in files}
    unknown = [d for d in datasets if d not in known]
    if unknown:
        raise DataError(f"{path}: unknown dataset(s) {unknown}; the registry has {sorted(known)}")
    wanted = set(datasets)
    return [sf for sf in files if sf.dataset in wanted]


def url(sf: SourceFile, base_url: str | None = None) -> str:
    """The download address of a pinned file.

    Args:
        sf: The file.
        base_url: Replaces ``https://raw.githubusercontent.com`` (tests point this at a local server).

    Returns:
        ``<base_url>/<repo>/<commit>/<path>``, with the path percent-encoded.
    """
    base = (base_url or RAW_BASE_URL).rstrip("/")
    return f"{base}/{sf.repo}/{sf.commit}/{urllib.parse.quote(sf.path, safe='/')}"


def mirror_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """The local mirror named by ``RETROFIT_DATA_MIRROR``, if any.

    Args:
        environ: The environment to read (``os.environ`` by default).

    Returns:
        The mirror directory, or ``None`` when the variable is unset or empty (download instead).

    Raises:
        DataError: The variable is set but does not name a directory.
    """
    value = (os.environ if environ is None else environ).get(MIRROR_ENV, "").strip()
    if not value:
        return None
    mirror = Path(value).expanduser()
    if not mirror.is_dir():
        raise DataError(
            f"{MIRROR_ENV}={value!r} is not a directory; point it at a data mirror "
            f"(a folder with <dataset>/<file> as listed in assets/sources.json) or unset it to download"
        )
    return mirror


def fetch(
    files: Iterable[SourceFile],
    dest: str | Path,
    mirror: str | Path | None,
    timeout: float = 60,
    base_url: str | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> dict[str, dict[str, Any]]:
    """Fill ``dest/<file>`` for every file, verified, and swap the directory in atomically.

    Args:
        files: The pinned files to fetch (usually :func:`load_registry`'s result).
        dest: The raw-data directory to produce; an existing one is replaced only on success.
        mirror: Copy from ``mirror/<file>`` instead of downloading; ``None`` downloads.
        timeout: Socket timeout per HTTP request, seconds.
        base_url: Replaces ``https://raw.githubusercontent.com`` in download addresses.
        retries: Attempts per download for transient failures (network errors, HTTP 5xx/429, a truncated body).
        backoff_s: Sleep before the second attempt, doubled for each further one.

    Returns:
        A manifest ``{file: {"dataset", "repo", "commit", "path", "sha256", "size", "origin"}}`` where ``origin`` is
        ``"mirror"`` or ``"url"``, in input order.

    Raises:
        DataError: A mirror entry is missing, a file's size or sha256 does not match its pin, or a download failed;
            the message names the file (dataset, path, expected sha256) and says what to do. ``dest`` is untouched.
    """
    files = list(files)
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    dupes = sorted(name for name, n in Counter(sf.file for sf in files).items() if n > 1)
    if dupes:
        raise DataError(f"fetch: file name(s) {dupes} requested more than once")
    mirror = Path(mirror) if mirror is not None else None
    if mirror is not None and not mirror.is_dir():
        raise DataError(f"mirror {mirror} is not a directory; fix {MIRROR_ENV} or unset it to download")
    manifest: dict[str, dict[str, Any]] = {}
    total = sum(sf.size for sf in files)
    with atomic_dir(dest) as tmp, tqdm(total=total, unit="B", unit_scale=True, desc="fetch", disable=None) as bar:
        for sf in files:
            target = tmp / sf.file
            target.parent.mkdir(parents=True, exist_ok=True)
            bar.set_postfix_str(sf.file, refresh=False)
            if mirror is not None:
                _copy_from_mirror(sf, mirror, target, bar.update)
                origin: Literal["mirror", "url"] = "mirror"
            else:
                _download(sf, target, timeout, base_url, retries, backoff_s, bar)
                origin = "url"
            manifest[sf.file] = {**{k: v for k, v in asdict(sf).items() if k != "file"}, "origin": origin}
    log.info("fetched %d file(s), %d bytes, into %s", len(files), total, dest)
    return manifest


def _copy_hashing(src: IO[bytes], dst: IO[bytes], progress: Callable[[int], object]) -> tuple[str, int]:
    """Stream ``src`` into ``dst``; return the sha256 and byte count of what was copied."""
    digest = hashlib.sha256()
    n = 0
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        dst.write(chunk)
        n += len(chunk)
        progress(len(chunk))
    return digest.hexdigest(), n


def _copy_from_mirror(sf: SourceFile, mirror: Path, target: Path, progress: Callable[[int], object]) -> None:
    src = mirror / sf.file
    if not src.is_file():
        raise DataError(
            f"{sf.describe()}: not in the mirror (looked for {src}). Refresh the mirror from {url(sf)}, "
            f"point {MIRROR_ENV} at a complete mirror, or unset it to download."
        )
    with src.open("rb") as fin, target.open("wb") as fout:
        sha, n = _copy_hashing(fin, fout, progress)
    if n != sf.size or sha != sf.sha256:
        raise DataError(
            f"{sf.describe()}: the mirror copy {src} is corrupt or stale (got {n} bytes, sha256 {sha}; expected "
            f"{sf.size} bytes). Replace it with a fresh download of {url(sf)}, or unset {MIRROR_ENV} to download."
        )


class _Transient(Exception):
    """A download failure worth retrying."""


def _download(
    sf: SourceFile, target: Path, timeout: float, base_url: str | None, retries: int, backoff_s: float, bar: tqdm
) -> None:
    address = url(sf, base_url)
    failures: list[str] = []
    for attempt in range(1, retries + 1):
        done = 0

        def progress(k: int) -> None:
            nonlocal done
            done += k
            bar.update(k)

        try:
            with urllib.request.urlopen(address, timeout=timeout) as resp, target.open("wb") as fout:
                sha, n = _copy_hashing(resp, fout, progress)
            if n != sf.size:  # a body cut short by the connection: transient
                raise _Transient(f"got {n} of {sf.size} bytes")
            if sha != sf.sha256:  # complete but different bytes: retrying would not help
                raise DataError(
                    f"{sf.describe()}: the download from {address} has sha256 {sha}. The file was corrupted in "
                    f"transit or changed upstream; re-run to re-download, and if it persists fix the pin in "
                    f"assets/sources.json or use a verified mirror via {MIRROR_ENV}."
                )
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise DataError(
                    f"{sf.describe()}: download from {address} failed with HTTP {exc.code} {exc.reason}. Check the "
                    f"repo/commit/path pin in assets/sources.json, or set {MIRROR_ENV} to a local mirror."
                ) from None
            failures.append(f"HTTP {exc.code} {exc.reason}")
        except (_Transient, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            failures.append(f"{type(exc).__name__}: {reason}")
        bar.update(-done)
        if attempt < retries:
            wait = backoff_s * 2 ** (attempt - 1)
            log.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.1fs", sf.file, attempt, retries, failures[-1], wait
            )
            time.sleep(wait)
    target.unlink(missing_ok=True)
    raise DataError(
        f"{sf.describe()}: download from {address} failed after {retries} attempt(s) ({'; '.join(failures)}). "
        f"Check the network and re-run to re-download, or set {MIRROR_ENV} to a local mirror."
    )


def raw_file(raw_dir: str | Path, file: str) -> Path:
    """Locate one fetched file, failing clearly if it is absent.

    Args:
        raw_dir: A directory produced by :func:`fetch` (or a mirror with the same layout).
        file: The registry ``file`` name, e.g. ``"xquad/xquad.en.json"``.

    Returns:
        ``raw_dir/file``.

    Raises:
        DataError: The file does not exist.
    """
    path = Path(raw_dir) / file
    if not path.is_file():
        raise DataError(
            f"{path}: not found; fetch the raw data first (retrofit.data.sources.fetch into {raw_dir}) "
            f"or point raw_dir at a data mirror"
        )
    return path


def dataset_file(dataset_dir: str | Path, dataset: str, name: str) -> Path:
    """Locate one file inside a single dataset's folder (e.g. ``data/raw/xquad``), failing clearly if absent.

    Args:
        dataset_dir: The dataset's folder inside a raw-data directory (or mirror).
        dataset: The dataset name, used to spot a raw-data root passed by mistake.
        name: The file name inside that folder, e.g. ``"xquad.en.json"``.

    Returns:
        ``dataset_dir/name``.

    Raises:
        DataError: The file does not exist; if ``dataset_dir`` looks like the raw-data root, the message says so.
    """
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / name
    if path.is_file():
        return path
    hint = ""
    if (dataset_dir / dataset / name).is_file():
        hint = f" ({dataset_dir} is the raw-data root; pass its {dataset}/ folder, {dataset_dir / dataset})"
    raise DataError(
        f"{path}: not found{hint}; fetch the raw data first (retrofit.data.sources.fetch) or point at a data mirror's "
        f"{dataset}/ folder"
    )
