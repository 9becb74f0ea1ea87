"""llama.cpp's own OpenAI-compatible server on loopback, for the paper path's rehearsal and its fault tests.

``xllamacpp`` (PyPI, MIT) runs llama.cpp's HTTP server inside a Python process, prebuilt for x86-64 with AVX2. Here
that process is a child of the caller: :func:`serve` starts it on ``127.0.0.1`` and a free port, waits (bounded)
until ``GET /v1/models`` answers, yields the API root (``http://127.0.0.1:<port>/v1``) and always stops it, on
success, failure or interrupt. ``generate.backend: openai`` then talks to it through the same client, preflight,
circuit breaker, ledger and response cache as to OpenAI (:mod:`retrofit.generate.openai_backend`).

Run by hand::

    python -m retrofit.generate.llama_server --model bundled:gemma3-270m --port 8080 --api-key-env LLAMA_KEY

The server serves ``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions``, under the GGUF's own chat
template (``use_jinja``), and refuses requests without the key where one is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from retrofit.errors import AssetError

#: Seconds :func:`serve` waits for ``/v1/models`` before it gives up (loading a 1.1 GB GGUF takes a few).
START_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str, api_key: str | None) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def serve(
    gguf: Path, *, alias: str, threads: int, slots: int = 1, ctx_per_slot: int = 2048,
    api_key_env: str | None = None, chat_template: str | None = None, port: int | None = None,
    log: Path | None = None, start_timeout_s: float = START_TIMEOUT_S,
) -> Iterator[str]:
    """llama.cpp's server for ``gguf`` in a child process; yields its API root and always stops it.

    Args:
        gguf: The model file.
        alias: The model id it serves (``generate.openai.model``).
        threads: CPU threads for prompt processing and decoding.
        slots: Requests decoded together (continuous batching).
        ctx_per_slot: Context tokens of each slot.
        api_key_env: An environment variable holding the key the server demands (``None``: no key).
        chat_template: A llama.cpp built-in chat template (``gemma``, ``chatml``, ...) for a GGUF that has none.
        port: The port (default: a free one). The API root is part of the response cache's generator identity, so
            a server restarted on the same port keeps the cached answers.
        log: Where the server's own log goes (default: discarded).
        start_timeout_s: How long to wait for ``/v1/models``.

    Raises:
        AssetError: ``xllamacpp`` is not installed, the file is missing, or the server did not answer in time (the
            message carries the end of its log).
    """
    if not gguf.is_file():
        raise AssetError(f"llama.cpp server: GGUF file {gguf} not found")
    port = port or free_port()
    cmd = [sys.executable, "-m", "retrofit.generate.llama_server", "--gguf", str(gguf), "--alias", alias,
           "--port", str(port), "--threads", str(threads), "--slots", str(slots), "--ctx-per-slot", str(ctx_per_slot)]
    if api_key_env:
        cmd += ["--api-key-env", api_key_env]
    if chat_template:
        cmd += ["--chat-template", chat_template]
    sink = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    root = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + start_timeout_s
        while not _answers(f"{root}/models", os.environ.get(api_key_env) if api_key_env else None):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-1500:] if log and log.exists() else "(no log kept)"
                why = (f"exited with {proc.returncode}" if proc.poll() is not None
                       else f"no answer in {start_timeout_s:g} s")
                raise AssetError(f"llama.cpp server for {gguf.name} {why}; its log ends:\n{tail}")
            time.sleep(0.2)
        yield root
    finally:
        stop(proc)
        if sink is not subprocess.DEVNULL:
            sink.close()


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a server process (and its group): SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _run_server(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT (the child process of :func:`serve`, or by hand)."""
    try:
        import xllamacpp as xlc
    except ImportError as exc:
        raise AssetError("llama.cpp server: xllamacpp is not installed; pip install -e .[test]") from exc
    gguf = args.gguf
    if args.model:
        from retrofit.generate.bundled import resolve_gguf

        gguf, _ = resolve_gguf(args.model, Path(args.cache_dir) / "llm")
    params = xlc.CommonParams()
    params.model.path = str(gguf)
    alias = args.alias or Path(gguf).stem
    params.model_alias = {alias}  # a set of names in xllamacpp
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_parallel = args.slots
    params.n_ctx = args.ctx_per_slot * args.slots
    params.cont_batching = True
    params.use_jinja = True  # the GGUF's own chat template, or a llama.cpp built-in one by name
    if args.chat_template:
        params.chat_template = args.chat_template
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.warmup = False
    if args.api_key_env:
        key = os.environ.get(args.api_key_env, "")
        if not key:
            raise AssetError(f"llama.cpp server: environment variable {args.api_key_env} is unset or empty")
        params.api_keys = [key]
    done = False

    def _stop(*_: object) -> None:
        nonlocal done
        done = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = xlc.Server(params)  # listens until it is garbage-collected
    print(json.dumps({"listening": str(server.listening_address), "model": alias}), flush=True)
    while not done:
        time.sleep(0.2)
    del server


def main() -> None:
    """``python -m retrofit.generate.llama_server``: serve a GGUF on 127.0.0.1 until interrupted."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", type=Path, help="a .gguf file")
    src.add_argument("--model", help="a generate.local.model spec (bundled:<name> or a .gguf path)")
    p.add_argument("--cache-dir", default=".cache/retrofit", help="where bundled models are joined (base.cache_dir)")
    p.add_argument("--alias", default=None, help="the model id to serve (default: the file's stem)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--slots", type=int, default=1)
    p.add_argument("--ctx-per-slot", type=int, default=2048)
    p.add_argument("--api-key-env", default=None, help="demand the key in this environment variable")
    p.add_argument("--chat-template", default=None, help="a llama.cpp built-in template (gemma, chatml, ...)")
    args = p.parse_args()
    try:
        _run_server(args)
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
