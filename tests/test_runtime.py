"""Runtime choices: bf16 only where the CPU has it natively, threads that step aside for a busy core, recorded."""

from __future__ import annotations

import pytest
import torch

from retrofit import cli, runtime
from retrofit.config import load_params


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_override_stands_in_for_a_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.BF16_ENV, "0")
    assert runtime.native_bf16() == (False, f"{runtime.BF16_ENV}=0")
    assert runtime.resolve_bf16("auto") is False
    assert runtime.resolve_bf16(True) is True  # an explicit value is kept
    monkeypatch.setenv(runtime.BF16_ENV, "1")
    assert runtime.resolve_bf16("auto") is True
    assert runtime.resolve_bf16(False) is False


def test_detection_follows_the_cpu_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.BF16_ENV, raising=False)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2", "fma"})
    native, reason = runtime.native_bf16()
    assert native is False and "no native bf16" in reason
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert runtime.native_bf16() == (True, "avx512_bf16")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert runtime.native_bf16() == (True, "amx_bf16")


def test_auto_threads_leave_a_core_another_process_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cores", lambda: 0.1)
    assert runtime.resolve_threads("auto") == 2
    monkeypatch.setattr(runtime, "busy_cores", lambda: 0.9)
    assert runtime.resolve_threads("auto") == 1
    monkeypatch.setattr(runtime, "busy_cores", lambda: 5.0)
    assert runtime.resolve_threads("auto") == 1  # never below one
    assert runtime.resolve_threads(3) == 3


def test_ranks_of_a_launcher_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun --nproc_per_node 2 on 2 cores: one thread per rank, whatever the count or the siblings' load."""
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cores", lambda: 1.0)  # the sibling rank
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert runtime.resolve_threads("auto") == runtime.resolve_threads(2) == runtime.resolve_threads(1) == 1
    assert runtime.resolve_threads(8) == 4 and runtime.local_processes() == 2
    monkeypatch.setattr(runtime, "usable_cores", lambda: 16)
    assert runtime.resolve_threads("auto") == 8
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert runtime.resolve_threads(2) == 2 and runtime.local_processes() == 1


def test_busy_cores_measures_a_short_window() -> None:
    busy = runtime.busy_cores(0.05)
    assert 0.0 <= busy <= runtime.usable_cores() + 0.5


def test_the_choice_is_pinned_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.BF16_ENV, "0")
    choice = runtime.resolve_runtime(1, {"bf16_inference": "auto", "train_bf16": True})
    assert torch.get_num_threads() == 1
    assert choice["threads"] == 1 and choice["threads_param"] == 1
    assert choice["bf16_inference"] is False and choice["train_bf16"] is True
    assert choice["native_bf16"] is False and choice["bf16_reason"] == f"{runtime.BF16_ENV}=0"
    assert runtime.runtime_choices() == choice
    runtime.runtime_choices()["threads"] = 99  # a copy
    assert runtime.runtime_choices()["threads"] == 1


def test_stages_see_concrete_values_for_every_auto_param(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.BF16_ENV, "0")
    params = load_params("params.yaml")
    assert (params.base.threads, params.base.bf16_inference, params.train.bf16) == ("auto", "auto", "auto")
    out = cli.resolved(params)
    assert isinstance(out.base.threads, int) and 1 <= out.base.threads <= runtime.usable_cores()
    assert out.base.bf16_inference is False and out.train.bf16 is False
    assert out.evaluate == params.evaluate  # nothing else changes
    forced = cli.resolved(load_params("params.yaml", ["base.threads=1", "base.bf16_inference=true"]))
    assert (forced.base.threads, forced.base.bf16_inference) == (1, True)


def test_bad_runtime_values_are_refused() -> None:
    from retrofit.config import ParamsError

    for bad in ("base.threads=0", "base.threads=many", "base.bf16_inference=sometimes", "train.bf16=maybe"):
        with pytest.raises(ParamsError):
            load_params("params.yaml", [bad])


def test_a_long_stage_decides_auto_threads_again_and_records_each_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cores", lambda window_s=0.25: 0.9)  # a core taken at the stage's start
    runtime.resolve_runtime("auto", {"bf16_inference": False})
    assert torch.get_num_threads() == 1
    monkeypatch.setattr(runtime, "busy_cores", lambda window_s=0.25: 0.0)  # free again a round later
    assert runtime.redecide_threads("round 2") == 2
    assert torch.get_num_threads() == 2
    decisions = runtime.runtime_choices()["thread_decisions"]
    assert decisions == [{"at": "start", "threads": 1, "busy_cores": 0.9},
                         {"at": "round 2", "threads": 2, "busy_cores": 0.0}]
    assert runtime.runtime_choices()["threads"] == 2


def test_a_fixed_thread_count_is_never_decided_again(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.resolve_runtime(1, {"bf16_inference": False})
    monkeypatch.setattr(runtime, "busy_cores", lambda window_s=0.25: pytest.fail("sampled a fixed count"))
    assert runtime.redecide_threads("round 2") is None
    assert runtime.runtime_choices()["thread_decisions"] == [{"at": "start", "threads": 1, "busy_cores": None}]
