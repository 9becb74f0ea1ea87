"""The batching bench's comparisons: what it calls equal is equal, and it reports every pair it measures.

The property it measures on the real teacher (an embedding does not depend on its batch) is tested on the tiny
model in ``tests/test_mine.py``; here the bench runs end to end on that model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from tests.paper import REPO

_spec = importlib.util.spec_from_file_location("encoder_batching", REPO / "bench" / "encoder_batching.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_compare_counts_rows_equal_bit_for_bit() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    b = a.copy()
    b[1, 1] = np.nextafter(np.float32(4.0), np.float32(5.0))  # one ulp
    assert bench.compare(a, b) == {"rows": 3, "bitwise_equal": 2, "share_equal": 0.6667,
                                   "max_abs_diff": float(b[1, 1] - 4.0)}


def test_other_partners_returns_the_original_order() -> None:
    texts = [f"t{i}" for i in range(10)]
    calls: list[list[str]] = []

    def fn(batch: list[str]) -> np.ndarray:
        calls.append(batch)
        return np.array([[float(t[1:])] for t in batch], dtype=np.float32)

    out = bench.other_partners(fn, texts)
    assert out[:, 0].tolist() == list(range(10))
    assert len(calls) == 4 and [t for c in calls for t in c] != texts  # shuffled over 4 calls


def test_bench_runs_on_the_tiny_model(tiny_model_dir: Path) -> None:
    texts = ["paris is the capital", "who wrote it", "the spree flows through berlin, the capital of germany",
             "der die das", "what is the capital of france? paris is the capital and largest city of france.",
             "who wrote it"]
    run = bench.run(tiny_model_dir, list(dict.fromkeys(texts)), n_alone=3, bf16=False, threads=1, batch_size=2)
    assert run["grouped_vs_other_partners"]["max_abs_diff"] <= 1e-6
    assert run["grouped_vs_alone"]["rows"] == 3 and run["grouped_vs_2_threads"]["rows"] == 5
    md = bench.markdown({"texts": 5, "n_alone": 3, "model": "tiny", "batch_size": 2, "runs": [run]})
    assert md.count("| fp32 | 1 |") == 6 + 1  # six comparisons and one timing row
