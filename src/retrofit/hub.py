"""Hugging Face Hub access that fails fast: offline detection, one reachability probe, and how-to-provide help.

Every hub-facing path of the project (the base model and mining teacher in :mod:`retrofit.models.load`, the English task
datasets and MMTEB tasks in :mod:`retrofit.eval.mmteb`, Wikipedia passages in :mod:`retrofit.data.passages`) goes
through here. Before a download it sends one metadata request with a :data:`PROBE_TIMEOUT_S` timeout, so an
unreachable Hub fails in seconds with a message that names the asset and the ways to provide it (a local path, a
pre-populated ``HF_HOME``, a mirror), instead of hanging in the libraries' retry loops.
"""

from __future__ import annotations

import os

from retrofit.errors import AssetError

#: One metadata request decides online against unreachable before a download is attempted.
PROBE_TIMEOUT_S = 10.0
#: Environment variables that switch the Hugging Face libraries to offline mode.
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> bool:
    """Offline mode as set *now* (the libraries read these variables once, at import)."""
    from huggingface_hub import constants

    values = [(os.environ.get(v) or "").strip().upper() for v in OFFLINE_VARS]
    return bool(constants.HF_HUB_OFFLINE) or any(v in {"1", "ON", "YES", "TRUE"} for v in values)


def provide_help(*, fetch: str = "load it once", local: str | None = None) -> str:
    """How to provide a hub asset offline: a pre-populated HF_HOME, a local copy (where one works), a mirror."""
    ways = [
        f"on a machine with network access, {fetch} and copy that machine's HF_HOME here (or share it), then set "
        "HF_HUB_OFFLINE=1 so that only the cache is read",
        "point HF_ENDPOINT at a reachable Hugging Face Hub mirror",
    ]
    if local:
        ways.insert(1, local)
    return "Provide it one of these ways: " + "; ".join(f"({i}) {w}" for i, w in enumerate(ways, 1)) + "."


def unreachable_reason(repo_id: str, *, repo_type: str = "dataset", revision: str | None = None) -> str | None:
    """One metadata request (:data:`PROBE_TIMEOUT_S`) for a hub repository: ``None`` if it is reachable, else why not.

    Args:
        repo_id: ``org/name``.
        repo_type: ``dataset`` or ``model``.
        revision: A branch, tag or commit to check.

    Returns:
        ``None``, or the reason: gated, missing repository or revision, or the Hub unreachable (DNS, refused,
        timeout, proxy).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    info = HfApi().dataset_info if repo_type == "dataset" else HfApi().model_info
    try:
        info(repo_id, revision=revision, timeout=PROBE_TIMEOUT_S)
    except GatedRepoError as exc:
        return f"the repository is gated; log in with a token that has accepted its terms ({exc})"
    except RevisionNotFoundError:
        return f"no revision {revision!r} in this repository"
    except RepositoryNotFoundError:
        return f"no such {repo_type} repository on the Hub"
    except Exception as exc:
        return f"the Hub is unreachable: {type(exc).__name__}: {exc}"
    return None


def probe(
    repo_id: str, describe: str, *, repo_type: str = "dataset", revision: str | None = None,
    local: str | None = None, fetch: str = "load it once",
) -> None:
    """:func:`unreachable_reason`, raising when the repository cannot be reached.

    Args:
        repo_id: ``org/name``.
        describe: What the asset is to the user (a params key and the id), the start of the error message.
        repo_type: ``dataset`` or ``model``.
        revision: A branch, tag or commit to check.
        local: How to provide it as a local copy, if that works for this asset.
        fetch: What to run on a networked machine to cache it.

    Raises:
        RuntimeError: Naming the asset, the reason and how to provide it.
    """
    reason = unreachable_reason(repo_id, repo_type=repo_type, revision=revision)
    if reason:
        raise AssetError(
            f"{describe}: cannot get it from the Hugging Face Hub ({reason}). {provide_help(fetch=fetch, local=local)}"
        )
