"""Process-wide runtime settings: thread counts, bf16 where the CPU has it natively, seeds, autocast, the rank."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def set_threads(n: int) -> None:
    """Pin every thread pool (torch, OpenMP, MKL, tokenizers) to ``n`` threads.

    On a 2-core machine torch with 2 threads on a busy host can be 4-12x slower than with 1, and trained
    weights are bit-identical across reruns only at the same thread count, so the count is a param.

    Args:
        n: Number of threads, at least 1.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch

        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # only settable before the first inter-op parallel work
            torch.set_num_interop_threads(1)
    except ImportError:  # pragma: no cover - torch is a hard dependency, but keep data-only tools importable
        pass


#: Set to ``0`` or ``1`` to override the CPU's bf16 detection (``0`` stands in for an AVX2-only CPU).
BF16_ENV = "RETROFIT_CPU_BF16"

#: The choices :func:`resolve_runtime` made in this process, for the stages' metrics.
_CHOICES: dict[str, Any] = {}


def _cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16(device: str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and why.

    A CUDA device when torch says it supports bf16; a CPU with AMX-BF16 or AVX512-BF16 (x86) or the BF16 extension
    (arm64). Elsewhere bf16 is emulated: an AVX2-only AMD EPYC ran the generate stage 4.6x slower in bf16 than
    in fp32. ``RETROFIT_CPU_BF16=0``/``1`` overrides the CPU's answer.

    Returns:
        ``(native, reason)``, the reason naming the feature (or the override) behind the answer.
    """
    import torch

    if device.startswith("cuda"):
        ok = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return ok, "cuda bf16" if ok else "cuda without bf16"
    forced = os.environ.get(BF16_ENV)
    if forced in ("0", "1"):
        return forced == "1", f"{BF16_ENV}={forced}"
    for name, probe in (("amx_bf16", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True, name
    flags = _cpu_flags()
    for name in ("amx_bf16", "avx512_bf16", "bf16"):
        if name in flags:
            return True, name
    return False, f"no native bf16 ({torch.backends.cpu.get_cpu_capability()})"


#: Values of ``base.fp32_linear`` (:mod:`retrofit.embed.linear`): ``auto`` resolves to ``onednn`` where torch has it, else ``aten``.
LINEAR_KERNELS = ("auto", "onednn", "aten")


def onednn_available() -> bool:
    """Whether this torch build can run a dense fp32 linear through oneDNN on the CPU."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def resolve_linear_kernel(setting: str) -> str:
    """``base.fp32_linear``'s concrete value: ``auto`` -> ``onednn`` where available, else ``aten``.

    Raises:
        ValueError: For a value outside :data:`LINEAR_KERNELS`, or ``onednn`` asked for where torch lacks it.
    """
    if setting not in LINEAR_KERNELS:
        raise ValueError(f"fp32_linear must be one of {list(LINEAR_KERNELS)}, got {setting!r}")
    available = onednn_available()
    if setting == "onednn" and not available:
        raise ValueError("fp32_linear: onednn asked for, but this torch build has no oneDNN linear; use auto or aten")
    return "onednn" if setting == "onednn" or (setting == "auto" and available) else "aten"


def resolve_bf16(setting: bool | str, device: str = "cpu") -> bool:
    """A bf16 param's value: ``True``/``False`` as given, ``"auto"`` from :func:`native_bf16`."""
    if setting == "auto":
        return native_bf16(device)[0]
    return bool(setting)


def busy_cores(window_s: float = 0.25) -> float:
    """Cores that other processes kept busy over a short window, from ``/proc/stat`` (0.0 where unreadable)."""
    import time

    def sample() -> tuple[float, float]:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [float(x) for x in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0.0)  # idle + iowait
        return sum(ticks) - idle, time.monotonic()

    try:
        own0, (busy0, t0) = os.times(), sample()
        time.sleep(window_s)
        own1, (busy1, t1) = os.times(), sample()
    except (OSError, IndexError, ValueError):
        return 0.0
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    own = (own1.user + own1.system) - (own0.user + own0.system)
    return max(0.0, (busy1 - busy0) / hz - own) / max(t1 - t0, 1e-6)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def local_processes() -> int:
    """Processes of this job on this machine: ``LOCAL_WORLD_SIZE`` under ``torchrun``/``accelerate launch``, else 1."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))


def resolve_threads(setting: int | str) -> int:
    """A thread-count param's value for this process: an int, or ``"auto"``: the usable cores no other process holds.

    torch with 2 threads on a 2-core host where another process holds a core ran 4-12x slower than with 1, so
    ``auto`` counts a core as taken when other processes kept it busy over a quarter second, and never goes below 1.
    Under a multi-process launcher the ranks on this machine share its cores: each takes its share of the count (of
    the usable cores for ``auto``, since its sibling ranks are busy by design). The rehearsal found 2 ranks at 2
    threads each on 2 cores 10x slower than at 1.
    """
    return _decide_threads(setting)[0]


def _decide_threads(setting: int | str) -> tuple[int, float | None]:
    """:func:`resolve_threads`, and the busy cores it saw (``None`` for a fixed count or a launcher's share)."""
    local = local_processes()
    if setting != "auto":
        return max(1, int(setting) // local), None
    if local > 1:
        return max(1, usable_cores() // local), None
    cores, busy = usable_cores(), busy_cores()
    return max(1, min(cores, cores - int(busy + 0.5))), round(busy, 2)


def redecide_threads(at: str) -> int | None:
    """Decide an ``auto`` thread count again at a point of a long stage (a generation round), pin and record it.

    A quarter-second sample at a stage's start must not fix a half-hour stage to 1 thread because another process
    held a core for a moment: long stages call this between units of work. Every decision goes into
    :func:`runtime_choices` (``thread_decisions``).

    Args:
        at: Where in the stage the decision is made (for the record), e.g. ``"round 2"``.

    Returns:
        The thread count now pinned; ``None`` when :func:`resolve_runtime` has not run in this process or the stage's
        count is fixed (then nothing changes).
    """
    if _CHOICES.get("threads_param") != "auto":
        return None
    n, busy = _decide_threads("auto")
    if n != _CHOICES["threads"]:
        set_threads(n)
    _CHOICES["threads"] = n
    _CHOICES["thread_decisions"].append({"at": at, "threads": n, "busy_cores": busy})
    return n


def resolve_runtime(threads: int | str, bf16: Mapping[str, bool | str], device: str = "cpu",
                    fp32_linear: str = "auto") -> dict[str, Any]:
    """Resolve a stage's thread count, bf16 switches and fp32 linear kernel once, pin the threads, remember the choice.

    Args:
        threads: ``base.threads`` (an int or ``"auto"``).
        bf16: The stage's bf16 params by name (``{"bf16_inference": "auto", ...}``).
        device: The device the bf16 switches apply to.
        fp32_linear: ``base.fp32_linear`` (:func:`resolve_linear_kernel`).

    Returns:
        ``{"threads": n, "cores": n, "device": ..., "native_bf16": bool, "bf16_reason": ..., "thread_decisions":
        [{"at", "threads", "busy_cores"}], "fp32_linear": "onednn"|"aten", <name>: bool, ...}``, also kept for
        :func:`runtime_choices`.
    """
    n, busy = _decide_threads(threads)
    set_threads(n)
    native, reason = native_bf16(device)
    choices = {"threads": n, "threads_param": threads, "cores": usable_cores(), "local_processes": local_processes(),
               "device": device,
               "native_bf16": native, "bf16_reason": reason,
               "thread_decisions": [{"at": "start", "threads": n, "busy_cores": busy}],
               "fp32_linear": resolve_linear_kernel(fp32_linear) if device == "cpu" else "aten"}
    choices.update({name: native if value == "auto" else bool(value) for name, value in bf16.items()})
    _CHOICES.clear()
    _CHOICES.update(choices)
    return dict(choices)


def fp32_linear() -> str:
    """The fp32 linear kernel :func:`resolve_runtime` chose in this process (``aten``, torch's own, before it ran)."""
    return str(_CHOICES.get("fp32_linear", "aten"))


def runtime_choices() -> dict[str, Any]:
    """What :func:`resolve_runtime` chose in this process (empty before it ran), for a stage's metrics."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in _CHOICES.items()}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def inference_autocast(enabled: bool, device: str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast for inference (encoding, mining, evaluation), or a no-op.

    On this project's reference CPU (AMX bf16) encoding XQuAD paragraphs with multilingual-e5-small ran 2.8x
    faster under bf16 autocast, with cosine >= 0.99998 to the fp32 embeddings; GPUs gain similarly.

    Args:
        enabled: Use bf16; ``False`` returns a null context.
        device: ``"cpu"`` or ``"cuda"`` (a device string such as ``"cuda:0"`` is reduced to its type).
    """
    if not enabled:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=str(device).split(":")[0], dtype=torch.bfloat16)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a ``torchrun``/``accelerate launch`` job (both set ``RANK``)."""
    return int(os.environ.get("RANK", "0")) == 0


