"""retrofit.eval.beyond_score: mteb's scores with the per-unit values behind them, their ids, and the family's run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ScoringFunction

from retrofit.eval import beyond, beyond_score
from retrofit.eval.stats import task_score
from tests.mirror import mirror_or_skip


class _CharCounts(AbsEncoder):
    """A model-free mteb encoder: normalised character-bucket counts (tests that no project wrapper is needed)."""

    def __init__(self) -> None:
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites={"name": "test/char-counts", "revision": "0", "similarity_fn_name": ScoringFunction.COSINE})

    def encode(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        texts = [t for batch in inputs for t in batch["text"]]
        out = np.zeros((len(texts), 64), dtype=np.float32)  # (n, 64)
        for i, text in enumerate(texts):
            for ch in text:
                out[i, ord(ch) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _load(name: str, subsets: list[str]) -> Any:
    task = beyond.load_beyond_task(name, mirror_or_skip())
    task.hf_subsets = subsets  # two or fewer subsets keep the test short
    return task


@pytest.mark.parametrize(("name", "subsets", "unit", "n"), [
    ("STSBenchmarkMultilingualSTS", ["en", "fr"], "pair", 1379),
    ("JSTS", ["default"], "pair", 1457),
    ("SIB200Classification", ["eng_Latn", "zho_Hans"], "example", 204),
    ("Tatoeba (unseen)", ["fra-eng"], "sentence", 1000),
])
def test_per_unit_values_reproduce_mteb_on_any_encoder(name: str, subsets: list[str], unit: str, n: int) -> None:
    result = beyond_score.score_beyond_task(_load(name, subsets), _CharCounts(), batch_size=256)  # checks 1e-6 itself
    assert result["unit"] == unit and set(result["scores"]) == set(subsets)
    for subset in subsets:
        units = result["subsets"][subset]["units"]
        values = next(iter(units.values()))
        assert len(values) == n
        if unit == "pair":
            assert len(units["gold"]) == n and 0 <= min(units["gold"]) <= max(units["gold"]) <= 5
        if unit == "example":
            assert all(0.0 <= v <= 1.0 for v in values)
            assert np.mean(values) == pytest.approx(result["scores"][subset], abs=1e-9)
    assert result["texts_requested"] > 0 and result["encode_s"] >= 0


def test_scoring_with_the_project_encoder(tiny_model_dir: Path) -> None:
    from retrofit.eval.encoder import load_encoder

    encoder = load_encoder(tiny_model_dir, "tiny", batch_size=64, max_seq_length=64)
    encoder.show_progress_bar = False
    clustering = beyond_score.score_beyond_task(_load("SIB200ClusteringS2S", ["eng_Latn", "arb_Arab"]), encoder)
    assert clustering["unit"] is None and clustering["main_score_name"] == "v_measure"
    spread = clustering["subsets"]["arb_Arab"]["spread"]
    assert len(spread["v_measures"]) == 10 and np.mean(spread["v_measures"]) == pytest.approx(
        clustering["scores"]["arb_Arab"])
    assert spread["std"] == pytest.approx(np.std(spread["v_measures"]))
    korsts = beyond_score.score_beyond_task(_load("KorSTS", ["default"]), encoder)
    assert len(korsts["subsets"]["default"]["units"]["cosine"]) == 1376


def test_per_query_values_reproduce_each_score_with_shared_ids_where_rows_are_parallel() -> None:
    result = beyond_score.score_beyond_task(_load("STSBenchmarkMultilingualSTS", ["en", "fr"]), _CharCounts(),
                                            batch_size=256)
    values = beyond_score.per_query_values("STSBenchmarkMultilingualSTS", result)
    assert set(values["en"]) == set(values["fr"]) and "stsb_multi_mt:0" in values["en"]  # one id per parallel row
    for subset in ("en", "fr"):
        assert task_score({subset: values[subset]}, "spearman") == pytest.approx(result["scores"][subset], abs=1e-9)
    bitext = beyond_score.score_beyond_task(_load("Tatoeba (unseen)", ["fra-eng"]), _CharCounts(), batch_size=256)
    ids = beyond_score.per_query_values("Tatoeba (unseen)", bitext)["fra-eng"]
    assert list(ids)[:3] == ["0", "1", "2"]  # sentence indices: bitext F1 reads them in order
    assert task_score({"fra-eng": ids}, "bitext_f1") == pytest.approx(bitext["scores"]["fra-eng"], abs=1e-9)


def test_evaluate_beyond_writes_the_family_for_the_stage(tiny_model_dir: Path, tmp_path: Path) -> None:
    from retrofit.eval.encoder import load_encoder

    encoder = load_encoder(tiny_model_dir, "tiny", batch_size=64, max_seq_length=64,
                           symmetric_prompts=beyond.SYMMETRIC_PROMPTS)
    encoder.show_progress_bar = False
    metrics = beyond_score.evaluate_beyond(["KorSTS", "SIB200Classification"], mirror_or_skip(), ["ko", "de", "sw"],
                                           encoder, tmp_path / "beyond")
    assert list(metrics["tasks"]) == ["KorSTS", "SIB200Classification"]
    sib = metrics["tasks"]["SIB200Classification"]
    assert sib["seen"] == {"deu_Latn": "seen", "kor_Hang": "unseen", "swh_Latn": "unseen"}
    assert sib["type"] == "Classification" and list(metrics["tasks"]["KorSTS"]["seen"]) == ["default"]
    assert json.loads((tmp_path / "beyond" / "metrics.json").read_text()) == metrics
    stored = json.loads((tmp_path / "beyond" / "per_query" / "SIB200Classification.json").read_text())
    assert task_score(stored) == pytest.approx(np.mean(list(sib["scores"].values())), abs=1e-9)
    spread = json.loads((tmp_path / "beyond" / "spread.json").read_text())
    assert len(spread["SIB200Classification"]["deu_Latn"]["accuracy_per_draw"]) == 10
    assert sib["spread_std"]["deu_Latn"] == pytest.approx(np.std(spread["SIB200Classification"]["deu_Latn"][
        "accuracy_per_draw"]))
    assert beyond_score.task_file("Tatoeba (unseen)") == "Tatoeba_unseen"
