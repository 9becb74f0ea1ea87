"""Evaluations with known answers for the report tests: every family gets its own level, so a report that mixed up
families (or averaged pooled into the primary metric) would show the wrong numbers."""

from __future__ import annotations

import numpy as np

from retrofit.eval.score import primary_per_question
from retrofit.eval.stats import task_score
from retrofit.report.evaluations import Evaluation

QUESTIONS = [f"{i:03d}" for i in range(60)]
LANGS = ("de", "en")
FAMILY_OFFSETS = {"mono": 0.10, "cross": 0.0, "pooled": -0.40}


def make_beyond(quality: float, seed: int) -> tuple[dict, dict]:
    """The beyond family's ``metrics.json`` and per-query values (:mod:`retrofit.eval.beyond_score`'s layout) for a
    model whose STS similarities track the gold scores with noise ``1 - quality`` and whose classification and
    bitext answers are right with probability ``quality`` (each subset draws its own noise)."""
    rng = np.random.default_rng(seed)
    gold = np.random.default_rng(99).integers(0, 26, 120) / 5  # the same pairs for every model
    pq = {
        "STSBenchmarkMultilingualSTS": {s: {f"stsb_multi_mt:{i}": [float(g + rng.normal(0, 3 * (1 - quality))),
                                                                   float(g)] for i, g in enumerate(gold)}
                                        for s in ("en", "fr")},
        "SIB200Classification": {s: {f"sib200:{i}": float(rng.random() < quality) for i in range(100)}
                                 for s in ("eng_Latn", "swh_Latn")},
        "SIB200ClusteringS2S": {s: {f"run{k}": float(quality / 2 + rng.normal(0, 0.01)) for k in range(10)}
                                for s in ("eng_Latn", "swh_Latn")},
        "Tatoeba (unseen)": {"fra-eng": {str(i): (i if rng.random() < quality else (i + 1) % 80) for i in range(80)}},
    }
    kinds = {"STSBenchmarkMultilingualSTS": ("STS", "spearman"), "SIB200Classification": ("Classification", "mean"),
             "SIB200ClusteringS2S": ("Clustering", "mean"), "Tatoeba (unseen)": ("BitextMining", "bitext_f1")}
    seen = {"en": "seen", "fr": "unseen", "eng_Latn": "seen", "swh_Latn": "unseen", "fra-eng": "unseen"}
    tasks = {t: {"type": kinds[t][0], "scores": {s: task_score({s: v}, kinds[t][1]) for s, v in d.items()},
                 "seen": {s: seen[s] for s in d}, "spread_std": {s: 0.01 for s in d}} for t, d in pq.items()}
    return {"tasks": tasks, "languages": ["en", "fr", "sw"]}, pq


def make_eval(name: str, level: float, *, noise: float = 0.05, seed: int = 0, official: float = 0.8,
              beyond: float | None = None) -> Evaluation:
    """An evaluation whose mono/cross/pooled queries score ``level`` + the family offset + seeded noise."""
    rng = np.random.default_rng(seed)
    q_noise = {q: rng.normal(0, noise) for q in QUESTIONS}  # shared by a question's subsets (parallel XQuAD)

    def family(fam: str, subsets: list[str]) -> dict[str, dict[str, float]]:
        return {s: {f"{s.split('-')[0]}:q:{q}": float(np.clip(level + FAMILY_OFFSETS[fam] + q_noise[q], 0, 1))
                    for q in QUESTIONS} for s in subsets}

    per_family = {"mono": family("mono", list(LANGS)), "cross": family("cross", ["de-en", "en-de"]),
                  "pooled": family("pooled", list(LANGS))}
    subsets = {f: {s: {"ndcg_at_10": float(np.mean(list(v.values())))} for s, v in d.items()}
               for f, d in per_family.items()}
    families = {f: {"ndcg_at_10": float(np.mean([x["ndcg_at_10"] for x in d.values()]))} for f, d in subsets.items()}
    primary = primary_per_question(per_family)  # the evaluate stage's own reduction
    metrics = {"primary": {"ndcg_at_10": float(np.mean(list(primary.values())))}, "families": families,
               "subsets": subsets, "max_seq_length": 512}
    correct = rng.random(50) < official  # bitext: sentence i's nearest neighbour is i with probability `official`
    preds = {str(i): (i if c else (i + 1) % 50) for i, c in enumerate(correct)}
    belebele = {s: {f"Q{i}": float(np.clip(official + rng.normal(0, 0.05), 0, 1)) for i in range(40)}
                for s in ("eng_Latn-eng_Latn", "deu_Latn-deu_Latn")}
    legal = {"default": {f"q{i}": float(np.clip(official + rng.normal(0, 0.05), 0, 1)) for i in range(40)}}
    off_pq = {"Tatoeba": {"deu-eng": preds}, "BelebeleRetrieval": belebele, "LegalBenchCorporateLobbying": legal}
    stat = {"Tatoeba": "bitext_f1"}
    tasks = {t: {"main_score": task_score(v, stat.get(t, "mean")), "main_score_name": "f1" if t == "Tatoeba" else
                 "ndcg_at_10", "subset_scores": {s: task_score({s: x}, stat.get(t, "mean")) for s, x in v.items()}}
             for t, v in off_pq.items()}
    bey, bey_pq = make_beyond(beyond, seed) if beyond is not None else ({}, {})
    return Evaluation(name, metrics, {"ndcg_at_10": per_family, "primary": primary}, {"tasks": tasks}, off_pq, bey,
                      bey_pq)
