"""The plot stage's fan-in: seed-and-question intervals, verdicts, the plateau by TOST, tidy tables, forest plots and
RESULTS.md.

Evaluations are built from per-query values with known answers: every family gets its own level, so a report that
mixed up families (or averaged pooled into the primary metric) would show the wrong numbers.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from retrofit.errors import InputError
from retrofit.eval.score import primary_per_question
from retrofit.eval.stats import QUERY_ONLY, SEEDS_AND_QUERIES
from retrofit.report import (
    ANCHORS,
    Comparer,
    Evaluation,
    build_report,
    load_evaluations,
    load_mmteb,
    mmteb_markdown,
)

QUESTIONS = [f"{i:03d}" for i in range(60)]
LANGS = ("de", "en")
FAMILY_OFFSETS = {"mono": 0.10, "cross": 0.0, "pooled": -0.40}


def make_eval(name: str, level: float, *, noise: float = 0.05, seed: int = 0, official: float = 0.8) -> Evaluation:
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
    from retrofit.eval.stats import task_score

    off_pq = {"Tatoeba": {"deu-eng": preds}, "BelebeleRetrieval": belebele, "LegalBenchCorporateLobbying": legal}
    stat = {"Tatoeba": "bitext_f1"}
    tasks = {t: {"main_score": task_score(v, stat.get(t, "mean")), "main_score_name": "f1" if t == "Tatoeba" else
                 "ndcg_at_10", "subset_scores": {s: task_score({s: x}, stat.get(t, "mean")) for s, x in v.items()}}
             for t, v in off_pq.items()}
    return Evaluation(name, metrics, {"ndcg_at_10": per_family, "primary": primary}, {"tasks": tasks}, off_pq)


@pytest.fixture
def evals() -> dict[str, Evaluation]:
    return {
        "base": make_eval("base", 0.70, seed=1),
        "scale_0": make_eval("scale_0", 0.72, seed=2),
        "scale_6": make_eval("scale_6", 0.80, seed=3),
        "scale_12": make_eval("scale_12", 0.801, seed=4),
        "seed2": make_eval("seed2", 0.799, seed=5),
        "seed3": make_eval("seed3", 0.803, seed=6),
        "nohard": make_eval("nohard", 0.802, seed=7),  # within the spread of scale_12
        "nohard_s2": make_eval("nohard_s2", 0.800, seed=17),
        "nohard_s3": make_eval("nohard_s3", 0.804, seed=27),
        "div_lang": make_eval("div_lang", 0.85, seed=8),  # div_task is clearly *worse*: opposite to the paper
        "div_task": make_eval("div_task", 0.70, seed=9),
    }


def test_families_and_primary_are_not_mixed_up(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md", resamples=200)
    models = json.loads((tmp_path / "r/models.json").read_text())
    base = evals["base"]
    assert models["base"]["mono"] == pytest.approx(base.metrics["families"]["mono"]["ndcg_at_10"])
    assert models["base"]["mono"] - models["base"]["cross"] == pytest.approx(0.10, abs=0.01)
    assert models["base"]["cross"] - models["base"]["pooled"] == pytest.approx(0.40, abs=0.02)
    # the primary metric (the evaluate stage's per-question reduction, averaged) is the mean of the mono and cross
    # family means only: pooled (0.40 lower) must not pull it down
    assert models["base"]["primary"] == pytest.approx((models["base"]["mono"] + models["base"]["cross"]) / 2, abs=1e-9)
    rows = list(csv.DictReader((tmp_path / "r/scores.csv").open()))
    mono_de = [r for r in rows if r["model"] == "base" and r["family"] == "mono" and r["subset"] == "de"]
    assert float(mono_de[0]["score"]) == pytest.approx(base.metrics["subsets"]["mono"]["de"]["ndcg_at_10"], abs=1e-5)


def test_verdicts_follow_the_interval_rule_and_say_what_noise_they_carry(evals: dict[str, Evaluation],
                                                                          tmp_path: Path) -> None:
    summary = build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md",
                           resamples=300, arm_seeds={"nohard": ["nohard_s2", "nohard_s3"]})
    f = summary["findings"]
    top = ("scale_12", "seed2", "seed3")
    sd = summary["seed_sd"]["primary"]
    assert sd == pytest.approx(statistics.stdev([evals[m].score("primary") for m in top]))  # an independent stdev
    assert f["gain_from_synthetic"]["verdict"] == "reproduced"  # +0.08, far beyond noise
    assert f["gain_from_synthetic"]["lo"] > 0
    assert f["gain_from_synthetic"]["noise"] == QUERY_ONLY  # scale_0 was trained once
    # the top arm's score is the mean over its 3 seeds
    assert f["gain_from_synthetic"]["score_a"] == pytest.approx(np.mean([evals[m].score("primary") for m in top]))
    assert f["plateau_last_step"]["verdict"] == "not resolved at this scale"  # +0.001
    # not resolved is not a plateau: the 90% interval (about +-0.015 here) is wider than the 0.5-point margin
    assert f["plateau"]["verdict"].startswith("gain reproduced; plateau not resolved at this scale")
    assert f["hard_negatives"]["verdict"] == "not resolved at this scale"  # -0.001: never "reversed"
    hard = f["hard_negatives"]
    assert hard["noise"] == SEEDS_AND_QUERIES and (hard["seeds_a"], hard["seeds_b"]) == (3, 3)
    assert hard["hi"] - hard["lo"] > 2 * 1.96 * hard["se_questions"]  # seeds widen the question interval
    assert f["task_over_language_diversity"]["verdict"] == "opposite to the paper"  # -0.15, resolved
    assert f["task_over_language_diversity"]["hi"] < 0
    vs = summary["versus_base"]["scale_12"]
    assert vs["primary"]["delta"] == pytest.approx(evals["scale_12"].score("primary") - evals["base"].score("primary"))
    assert vs["Tatoeba"]["delta"] == pytest.approx(evals["scale_12"].score("Tatoeba") - evals["base"].score("Tatoeba"))
    assert (vs["primary"]["a"], vs["primary"]["b"]) == ("scale_12", "base")  # names, not scores
    assert vs["primary"]["score_a"] == pytest.approx(evals["scale_12"].score("primary"))
    rows = list(csv.DictReader((tmp_path / "r/comparisons.csv").open()))
    gain = next(r for r in rows if (r["a"], r["b"], r["metric"]) == ("scale_12", "scale_0", "primary"))
    assert float(gain["delta"]) == pytest.approx(f["gain_from_synthetic"]["delta"], abs=1e-4)  # rounded in the CSV
    assert gain["noise"] == QUERY_ONLY


def test_plateau_is_reproduced_only_by_equivalence(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    # a margin wider than the last step's 90% interval: TOST passes; the default 0.5 points: it does not
    wide = build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "w", tmp_path / "W.md", resamples=300,
                        margin=5.0)["findings"]
    assert wide["plateau_last_step"]["equivalent"] and wide["plateau"]["verdict"].startswith("reproduced: ")
    narrow = build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "n", tmp_path / "N.md", resamples=300,
                          margin=0.5)["findings"]
    assert not narrow["plateau_last_step"]["equivalent"]
    assert "plateau not resolved at this scale" in (tmp_path / "N.md").read_text()


def test_results_md_and_plot_tables_carry_intervals(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md", resamples=200)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Seed spread" in text and "## Findings (primary metric)" in text
    assert "| 3. task diversity beats language diversity | `div_task` - `div_lang` | 1 vs 1 | -" in text
    assert "opposite to the paper" in text and "reversed" not in text
    scale = list(csv.DictReader((tmp_path / "r/scale.csv").open()))
    assert {r["family"] for r in scale} == {"primary", "mono", "cross", "pooled"}
    for r in scale:  # each point's gain over scale_0, inside its own interval; scale_0 itself is the zero
        assert float(r["lo"]) <= float(r["gain"]) <= float(r["hi"])
        if r["model"] == "scale_0":
            assert float(r["gain"]) == 0.0
    ablation = list(csv.DictReader((tmp_path / "r/ablation.csv").open()))
    assert [r["family"] for r in ablation] == ["primary", "mono", "cross", "pooled"]
    assert {r["comparison"] for r in ablation} == {"scale_12 - nohard"}
    assert all(float(r["margin_hi"]) == pytest.approx(0.005) and float(r["lo"]) <= float(r["delta"]) <= float(r["hi"])
               for r in ablation)
    for name in ("scale", "ablation", "diversity"):
        assert (tmp_path / "r" / "figures" / f"{name}.png").stat().st_size > 1000


def test_load_evaluations_round_trip_and_missing(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    ev = evals["base"]
    d = tmp_path / "eval" / "base"
    (d / "official" / "per_query").mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(ev.metrics))
    (d / "per_query.json").write_text(json.dumps(ev.per_query))
    (d / "official" / "metrics.json").write_text(json.dumps(ev.official))
    for task, values in ev.official_per_query.items():
        (d / "official" / "per_query" / f"{task}.json").write_text(json.dumps(values))
    loaded = load_evaluations(tmp_path / "eval", ["base"])["base"]
    assert loaded.score("primary") == ev.score("primary") and loaded.score("Tatoeba") == ev.score("Tatoeba")
    with pytest.raises(InputError, match="scale_0: no evaluation"):
        load_evaluations(tmp_path / "eval", ["base", "scale_0"])


def test_mmteb_section(tmp_path: Path) -> None:
    (tmp_path / "m" / "mmteb").mkdir(parents=True)
    (tmp_path / "m" / "mmteb" / "metrics.json").write_text(json.dumps(
        {"headline": {"main_score": 0.5, "ndcg_at_10": 0.49}, "tasks_done": 18, "tasks_expected": 18,
         "complete": True}))
    lines = mmteb_markdown(load_mmteb(tmp_path, ["m", "missing"]), {"paper": 60.56})
    assert "| m | 50.00 | 49.00 | 18/18 | yes |" in lines
    assert "| *paper* | *60.56* | | 18/18 | published |" in lines


def test_readme_block_is_regenerated_from_the_results(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    from retrofit.report import README_END, README_START, update_readme

    build_report(evals, [0, 6, 12], ["seed2", "seed3"], tmp_path / "r", tmp_path / "RESULTS.md", resamples=200)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nstale table\n{README_END}\noutro\n")
    assert update_readme(readme, tmp_path / "r")
    text = readme.read_text()
    assert "stale table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    models = json.loads((tmp_path / "r/models.json").read_text())
    assert f"| `base` | {100 * models['base']['primary']:.2f} | " in text
    assert "| 3. task diversity beats language diversity | -" in text and "opposite to the paper" in text
    assert not update_readme(readme, tmp_path / "r")  # idempotent
    readme.write_text("no block")
    with pytest.raises(InputError, match="no results block"):
        update_readme(readme, tmp_path / "r")


def test_mining_section_shows_positive_mined_and_random_scores():
    from retrofit.mine import score_summary
    from retrofit.report import mining_markdown

    report = {"hard": True, "corpus": {"partitions": 3, "passages": 40, "largest_partition": 20},
              "scores": {"positive": score_summary([0.8, 0.9]), "mined_negative": score_summary([0.7, 0.75]),
                         "random_negative": score_summary([0.2, 0.3])}}
    lines = mining_markdown(report)
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ") and "count" not in line}
    assert rows["positive"].startswith("| positive | 2 | 0.850 |")
    assert rows["random negative"].startswith("| random negative | 2 | 0.250 |")
    assert "40 passages" in "\n".join(lines)
    assert mining_markdown({"hard": False, "rows": {}}) == []


def test_anchor_table_is_the_readme_one():
    # the README's table of published MTEB(Multilingual) Retrieval means: the same numbers, in the same order
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    head = "| model | size | mean of the 18 MTEB(Multilingual) Retrieval tasks |"
    assert head in readme
    rows = readme.split(head, 1)[1].split("\n\n", 1)[0].strip().splitlines()[1:]  # after the |---| line
    published = [float(r.rstrip(" |").rsplit("|", 1)[1].strip(" *")) for r in rows]
    assert published == list(ANCHORS.values())
    assert ANCHORS["Tu et al. (2025), ~300M retrofitted"] == 60.56


def test_family_intervals_resample_questions_across_languages(evals: dict[str, Evaluation]) -> None:
    # the fixture's noise is per question, shared by its languages: drawn as rows, the family intervals come out
    # narrower than the primary's, which averages the same questions
    cmp = Comparer(evals, {}, "scale_12", resamples=400, seed=0)
    for name in ("base", "scale_12"):
        width = {m: (lambda iv: iv[1] - iv[0])(cmp.own_interval(name, m)) for m in ("primary", "mono", "cross")}
        assert width["primary"] <= max(width["mono"], width["cross"]) + 0.002, (name, width)
