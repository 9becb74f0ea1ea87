"""MMTEB(Multilingual) retrieval's tasks offline: the paper's 18 tasks resolve through mteb, their statistics, and
shards that cover every task once."""

from __future__ import annotations

import pytest

from retrofit.config import ParamsError
from retrofit.eval.mmteb_tasks import mmteb_retrieval_tasks, mmteb_task_stats, mmteb_tasks, shard
from tests.paper import PAPER_TASKS


def test_mmteb_resolves_the_papers_18_tasks():
    names = mmteb_retrieval_tasks()
    assert len(names) == 18
    assert set(names) == PAPER_TASKS


def test_mmteb_stats_offline_for_every_task():
    stats = {t.metadata.name: mmteb_task_stats(t) for t in mmteb_tasks()}
    assert set(stats) == PAPER_TASKS
    for name, s in stats.items():
        assert s["documents"] > 0 and s["queries"] > 0, name
        assert s["document_chars"] > 0 and s["query_chars"] > 0, name
        assert s["dataset"].startswith("mteb/") and s["splits"], name
    assert (stats["ArguAna"]["documents"], stats["ArguAna"]["queries"]) == (8674, 1406)
    assert stats["MIRACLRetrievalHardNegatives"]["documents"] > 2_000_000  # the corpus that dominates encoding
    assert len(stats["LEMBPasskeyRetrieval"]["splits"]) == 8


def test_unknown_benchmark_or_task_names_the_problem():
    with pytest.raises(ParamsError, match="MTEB\\(Multilingual, v9\\)"):
        mmteb_tasks("MTEB(Multilingual, v9)")
    with pytest.raises(ParamsError, match="NoSuchRetrieval"):
        mmteb_tasks(names=["ArguAna", "NoSuchRetrieval"])
    assert [t.metadata.name for t in mmteb_tasks(names=["SCIDOCS", "ArguAna"])] == ["ArguAna", "SCIDOCS"]


def test_shard_covers_every_task_once_and_balances():
    names = mmteb_retrieval_tasks()
    weights = {n: 1.0 for n in names} | {"MIRACLRetrievalHardNegatives": 100.0}
    shards = [shard(names, k, 3, weights) for k in range(3)]
    assert sorted(n for s in shards for n in s) == sorted(names)
    assert ["MIRACLRetrievalHardNegatives"] in shards  # the heaviest task gets a GPU of its own
    with pytest.raises(ValueError, match="shard 3/3"):
        shard(names, 3, 3)
