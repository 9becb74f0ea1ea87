"""Benchmark: ``retrofit.mine.mine`` against ``sentence_transformers.util.mine_hard_negatives``.

Both miners run on the same rows (100,000 distinct passages, one query each, by default) with the same teacher, a
tiny random BERT built offline, at the same settings: ``range_min``, ``range_max``, ``num_negatives``,
``relative_margin`` from ``params.yaml``'s ``negatives``, ``sampling_strategy="top"``, ``use_faiss=True``, prompts
``"query"``/``"passage"``, encoding ``batch_size`` 64. ``mine`` runs with ``rank_window="filtered"``, the
sentence-transformers semantics of the rank window, so the chosen negatives should be the same; a warm run with
the default ``rank_window="search"`` shows how much that choice changes them.

Each run is a fresh subprocess (one thread for torch, FAISS and BLAS), timed (wall and CPU) from the start of its
work (reading the rows) to its output file, with peak RSS (``ru_maxrss``) and, in separate runs because tracing
slows Python down, the tracemalloc peak (Python and NumPy allocations only: torch tensors, FAISS and Arrow, where
sentence-transformers keeps its score matrices and its output ``Dataset``, allocate outside its view, while
``mine`` returns plain Python rows, so that column favours the baseline; peak RSS counts everything).
"Cold" runs encode everything (each miner writes its own embedding cache: ``cache_folder`` for
sentence-transformers); "warm" runs reuse that cache at the same settings. Runs repeat ``--repeats`` times in
alternating order and the table shows the fastest trial, because the host is shared and noisy.

Usage::

    python bench/mine.py                      # 100k passages; prints a table, writes reports/bench/mine.json
    python bench/mine.py --passages 5000 --repeats 1 --no-tracemalloc --out /tmp/mine.json     # a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
}
REPO = Path(__file__).resolve().parents[1]

#: name -> (miner, cache state, rank window, tracemalloc); run in this order
RUNS: dict[str, tuple[str, str, str, bool]] = {
    "st_cold": ("st", "cold", "filtered", False),
    "ours_cold": ("ours", "cold", "filtered", False),
    "st_warm": ("st", "warm", "filtered", False),
    "ours_warm": ("ours", "warm", "filtered", False),
    "ours_warm_search_window": ("ours", "warm", "search", False),
    "ours_cold_tracemalloc": ("ours", "cold", "filtered", True),
    "st_cold_tracemalloc": ("st", "cold", "filtered", True),
}


# ----------------------------------------------------------------------------------------------------------------
# Data and model (parent process)
# ----------------------------------------------------------------------------------------------------------------


def make_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Distinct random-word passages (15-40 words) with one query each: 8 of its words, shuffled.

    A 50k-word vocabulary with a flat Zipf (exponent 0.3) keeps shared words, hence similarity, mostly between a
    query and its own passage, while frequent words give every query a tail of look-alike passages.
    """
    import numpy as np

    gen = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = sorted({"".join(gen.choice(letters, size=gen.integers(3, 10))) for _ in range(60_000)})[:50_000]
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 0.3
    p /= p.sum()
    cdf = np.cumsum(p)
    rows, seen_p, seen_q = [], set(), set()
    while len(rows) < n:
        draws = np.minimum(np.searchsorted(cdf, gen.random(gen.integers(15, 41))), len(vocab) - 1)
        words = [vocab[i] for i in draws]
        passage = " ".join(words)
        query = " ".join(gen.permutation(words)[:8])
        if passage in seen_p or query in seen_q:
            continue
        seen_p.add(passage)
        seen_q.add(query)
        rows.append({
            "id": f"bench-{len(rows):06d}", "source": "synthetic", "lang": "en", "task_type": "qa", "query": query,
            "positive": passage, "negative": None, "source_id": None, "provenance": {"generator": "bench/mine.py"},
        })
    return rows


def build_model(out_dir: Path, corpus: list[str], hidden: int = 64, layers: int = 2) -> Path:
    """A tiny random BERT sentence-transformers model with a WordPiece tokenizer trained offline on ``corpus``.

    Position and token-type embeddings are zeroed: shared by every text, random ones pack all cosines into a
    narrow band near 0.9; without them similarity follows shared words, as a retriever's would.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=8000, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=128,
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=128,
    )
    bert = BertModel(config)
    with torch.no_grad():
        bert.embeddings.position_embeddings.weight.zero_()
        bert.embeddings.token_type_embeddings.weight.zero_()
    hf_dir = out_dir.parent / f".{out_dir.name}.hf"
    bert.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    model = SentenceTransformer(
        modules=[Transformer(str(hf_dir), max_seq_length=128), Pooling(hidden, "mean"), Normalize()],
        prompts={"query": "query: ", "passage": "passage: "}, device="cpu",
    )
    model.save(str(out_dir))
    shutil.rmtree(hf_dir)
    return out_dir


# ----------------------------------------------------------------------------------------------------------------
# Workers (one subprocess per run)
# ----------------------------------------------------------------------------------------------------------------


def _rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def worker(args: argparse.Namespace) -> None:
    """Run one miner and write ``<work>/<run>.result.json`` plus its chosen negatives."""
    t_process = time.perf_counter()
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    from datasets import Dataset  # noqa: F401  -- imported by both, so import time is not part of the comparison
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from retrofit.config import default_params
    from retrofit.embed.cache import EmbeddingCache
    from retrofit.embed.encoder import SentenceTransformerEncoder
    from retrofit.io import read_jsonl, write_json, write_jsonl
    from retrofit.mine import mine

    miner, _, window, trace = RUNS[args.worker]
    work = Path(args.work)
    params = default_params().negatives  # params.yaml's values (config has no defaults)
    out_path = work / f"{args.worker}.{args.trial}.negatives.jsonl"
    rss_after_imports = _rss_now()
    if trace:
        import tracemalloc

        tracemalloc.start()
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    rows = read_jsonl(work / "rows.jsonl")
    extra: dict[str, Any] = {}
    if miner == "st":
        ds = Dataset.from_dict({"query": [r["query"] for r in rows], "positive": [r["positive"] for r in rows]})
        del rows  # generous to the baseline: it only needs the two columns
        model = SentenceTransformer(str(work / "model"), device="cpu", local_files_only=True)
        out = mine_hard_negatives(
            ds, model,
            range_min=params.range_min, range_max=params.range_max, num_negatives=params.num_negatives,
            relative_margin=params.relative_margin, sampling_strategy="top", use_faiss=True,
            batch_size=params.batch_size, query_prompt_name="query", corpus_prompt_name="passage",
            output_format="labeled-list", output_scores=True, verbose=False, cache_folder=str(work / "st_cache"),
        )
        write_jsonl(out_path, (
            {"query": r["query"], "negatives": r["positive"][1:], "scores": r["scores"][1:]} for r in out
        ))
        extra["rows_with_negatives"] = len(out)
    else:
        encoder = SentenceTransformerEncoder(work / "model", batch_size=params.batch_size)
        mined, report = mine(rows, encoder, params, EmbeddingCache(work / "ours_cache"), rank_window=window)
        write_jsonl(out_path, (
            {"query": r["query"], "negatives": [n["text"] for n in r["negatives"]],
             "scores": [n["score"] for n in r["negatives"]]} for r in mined
        ))
        write_json(work / f"{args.worker}.{args.trial}.report.json", report)
        extra["rows_with_negatives"] = report["rows"]["in"] - report["rows"]["without_negatives"]
        extra["encoded"] = {k: v["encoded"] for k, v in report["encoding"].items()}
        extra["candidates"] = report["candidates"]
        extra["model_loaded"] = encoder._model is not None
    run_s = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "run_s": run_s,
        "cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        "process_s": time.perf_counter() - t_process,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_after_imports_bytes": rss_after_imports,
        **extra,
    }
    if trace:
        result["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    (work / f"{args.worker}.{args.trial}.result.json").write_text(json.dumps(result))


# ----------------------------------------------------------------------------------------------------------------
# Comparison (parent process)
# ----------------------------------------------------------------------------------------------------------------


def overlap(a_path: Path, b_path: Path) -> dict[str, Any]:
    """Per-query Jaccard of chosen negative sets (empty vs empty counts as 1) and exact list agreement."""
    def load(path: Path) -> dict[str, list[str]]:
        with path.open(encoding="utf-8") as fh:
            return {(r := json.loads(line))["query"]: r["negatives"] for line in fh}

    a, b = load(a_path), load(b_path)
    queries = sorted(set(a) | set(b))
    jac, same_list, nonempty = [], 0, []
    for q in queries:
        x, y = a.get(q, []), b.get(q, [])
        union = set(x) | set(y)
        j = len(set(x) & set(y)) / len(union) if union else 1.0
        jac.append(j)
        same_list += x == y
        if union:
            nonempty.append(j)
    return {
        "queries": len(queries),
        "jaccard_mean": sum(jac) / len(jac),
        "jaccard_mean_nonempty": sum(nonempty) / len(nonempty) if nonempty else None,
        "identical_lists": same_list / len(queries),
        "negatives": [sum(map(len, a.values())), sum(map(len, b.values()))],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--passages", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temp dir, removed)")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench" / "mine.json")
    p.add_argument("--no-tracemalloc", action="store_true", help="skip the two tracemalloc runs")
    p.add_argument("--repeats", type=int, default=2, help="trials per run (tracemalloc runs: 1), order alternated")
    p.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    p.add_argument("--trial", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    os.environ.update(ENV)
    sys.path.insert(0, str(REPO / "src"))
    from retrofit.config import default_params
    from retrofit.io import write_json, write_jsonl

    load_before = os.getloadavg()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-mine-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    rows = make_rows(args.passages, args.seed)
    write_jsonl(work / "rows.jsonl", rows)
    build_model(work / "model", [r["positive"] for r in rows[:20_000]])
    print(f"data and model: {args.passages} rows in {time.perf_counter() - t:.1f}s -> {work}", flush=True)
    del rows

    schedule: list[tuple[int, list[str]]] = []  # (trial, runs in order); every other trial runs ours first
    for trial in range(args.repeats):
        for pair in (["st_cold", "ours_cold"], ["st_warm", "ours_warm"]):
            schedule.append((trial, pair if trial % 2 == 0 else pair[::-1]))
    schedule.append((0, ["ours_warm_search_window"]))
    if not args.no_tracemalloc:
        schedule.append((0, ["ours_cold_tracemalloc", "st_cold_tracemalloc"]))

    trials: dict[str, list[dict[str, Any]]] = {}
    for trial, names in schedule:
        for name in names:
            miner, state, _, _ = RUNS[name]
            if state == "cold":
                shutil.rmtree(work / f"{miner}_cache", ignore_errors=True)
            env = {**os.environ, **ENV, "PYTHONPATH": str(REPO / "src")}
            cmd = [sys.executable, __file__, "--worker", name, "--trial", str(trial), "--work", str(work)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"run {name} failed:\n{proc.stderr[-4000:]}")
            r = json.loads((work / f"{name}.{trial}.result.json").read_text())
            trials.setdefault(name, []).append(r)
            print(f"{name} #{trial}: {r['run_s']:.1f}s wall, {r['cpu_s']:.1f}s CPU, "
                  f"peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    results: dict[str, Any] = {}
    for name, rs in trials.items():
        outputs = {digest(work / f"{name}.{t}.negatives.jsonl") for t in range(len(rs))}
        results[name] = {
            "run_s": min(r["run_s"] for r in rs),  # min over trials: the least disturbed by the shared host
            "cpu_s": min(r["cpu_s"] for r in rs),
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rs),
            "rss_after_imports_bytes": max(r["rss_after_imports_bytes"] for r in rs),
            "identical_output_across_trials": len(outputs) == 1,
            "trials": rs,
        }
        if "tracemalloc_peak_bytes" in rs[0]:
            results[name]["tracemalloc_peak_bytes"] = max(r["tracemalloc_peak_bytes"] for r in rs)

    ref = work / "st_cold.0.negatives.jsonl"
    overlaps = {name: overlap(work / f"{name}.0.negatives.jsonl", ref) for name in results if name != "st_cold"}

    mib = 2**20
    header = f"{'run':<28}{'run_s':>8}{'cpu_s':>8}{'peak_rss_MiB':>14}{'rss_imports_MiB':>17}{'tracemalloc_MiB':>17}" \
             f"{'negatives':>11}{'jaccard_vs_st':>15}{'identical':>11}"
    print("\n" + header + "\n" + "-" * len(header))
    for name, r in results.items():
        ov = overlaps.get(name)
        tm = r.get("tracemalloc_peak_bytes")
        negs = ov["negatives"][0] if ov else overlap(ref, ref)["negatives"][0]
        tm_s = f"{tm / mib:.0f}" if tm else "-"
        jac_s = f"{ov['jaccard_mean']:.4f}" if ov else "(ref)"
        same_s = f"{ov['identical_lists']:.4f}" if ov else "-"
        print(f"{name:<28}{r['run_s']:>8.1f}{r['cpu_s']:>8.1f}{r['peak_rss_bytes'] / mib:>14.0f}"
              f"{r['rss_after_imports_bytes'] / mib:>17.0f}{tm_s:>17}{negs:>11}{jac_s:>15}{same_s:>11}")

    import faiss
    import numpy
    import sentence_transformers
    import torch

    def ratio(a: str, b: str, key: str) -> float | None:
        return results[a][key] / results[b][key] if a in results and b in results else None

    report = {
        "settings": {**default_params().negatives.model_dump(), "sampling_strategy": "top", "use_faiss": True,
                     "rank_window": "filtered (ours_warm_search_window: search)", "scope": "all (one corpus)"},
        "data": {"passages": args.passages, "queries": args.passages, "seed": args.seed,
                 "model": "random BERT, hidden 64, 2 layers, WordPiece 8000, mean pooling, e5 prompts"},
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "faiss": faiss.__version__,
                        "sentence_transformers": sentence_transformers.__version__, "numpy": numpy.__version__,
                        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "threads": 1,
                        "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg()},
        "runs": results,
        "overlap_vs_st_cold": overlaps,
        "summary": {
            "speedup_cold": ratio("st_cold", "ours_cold", "run_s"),
            "speedup_warm": ratio("st_warm", "ours_warm", "run_s"),
            "cpu_speedup_cold": ratio("st_cold", "ours_cold", "cpu_s"),
            "cpu_speedup_warm": ratio("st_warm", "ours_warm", "cpu_s"),
            "peak_rss_ratio_cold": ratio("ours_cold", "st_cold", "peak_rss_bytes"),
            "tracemalloc_peak_ratio_cold": ratio("ours_cold_tracemalloc", "st_cold_tracemalloc",
                                                 "tracemalloc_peak_bytes"),
            "jaccard_cold": overlaps["ours_cold"]["jaccard_mean"],
        },
    }
    write_json(args.out, report)
    print(f"\nwrote {args.out}")
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
