"""Tests for retrofit.report.markdown: RESULTS.md and its MMTEB, mining and anchor sections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retrofit.mine_report import score_summary
from retrofit.report.compare import Comparer, findings
from retrofit.report.evaluations import Evaluation, load_mmteb
from retrofit.report.markdown import ANCHORS, mining_markdown, mmteb_markdown, results_markdown, training_markdown


def test_mmteb_section(tmp_path: Path) -> None:
    (tmp_path / "m" / "mmteb").mkdir(parents=True)
    (tmp_path / "m" / "mmteb" / "metrics.json").write_text(json.dumps(
        {"headline": {"main_score": 0.5, "ndcg_at_10": 0.49}, "tasks_done": 18, "tasks_expected": 18,
         "complete": True}))
    lines = mmteb_markdown(load_mmteb(tmp_path, ["m", "missing"]), {"paper": 60.56})
    assert "| m | 50.00 | 49.00 | 18/18 | yes |" in lines
    assert "| *paper* | *60.56* | | 18/18 | published |" in lines


def test_mining_section_shows_positive_mined_and_random_scores():
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
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    head = "| model | size | mean of the 18 MTEB(Multilingual) Retrieval tasks |"
    assert head in readme
    rows = readme.split(head, 1)[1].split("\n\n", 1)[0].strip().splitlines()[1:]  # after the |---| line
    published = [float(r.rstrip(" |").rsplit("|", 1)[1].strip(" *")) for r in rows]
    assert published == list(ANCHORS.values())
    assert ANCHORS["Tu et al. (2025), ~300M retrofitted"] == 60.56


def test_results_md_carries_the_findings_with_their_noise(evals: dict[str, Evaluation]) -> None:
    cmp = Comparer(evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", resamples=200, seed=0)
    found = findings(cmp, [0, 6, 12])
    text = results_markdown(evals, cmp, [0, 6, 12], found, {})
    assert "## Seed spread" in text and "## Findings (primary metric)" in text
    assert "| 3. task diversity beats language diversity | `div_task` - `div_lang` | 1 vs 1 | -" in text
    assert "opposite to the paper" in text and "reversed" not in text
    assert "(`scale_12`, `seed2`, `seed3`)" in text
    assert json.dumps(found["plateau"]["verdict"])[1:-1] in text


def test_seed_spread_shows_every_seeded_arm(evals: dict[str, Evaluation]) -> None:
    cmp = Comparer(evals, {"scale_12": ["seed2", "seed3"], "nohard": ["nohard_s2", "nohard_s3"]}, "scale_12",
                   resamples=200, seed=0)
    text = results_markdown(evals, cmp, [0, 6, 12], findings(cmp, [0, 6, 12]), {})
    scores = [evals[m].score("primary") for m in ("nohard", "nohard_s2", "nohard_s3")]
    sd = np.std(scores, ddof=1)
    row = (f"| `nohard` | `nohard`, `nohard_s2`, `nohard_s3` | {', '.join(f'{100 * v:.2f}' for v in scores)} | "
           f"{100 * sd:.2f} |")
    assert row in text
    plain = Comparer(evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", resamples=200, seed=0)
    assert "Other arms" not in results_markdown(evals, plain, [0, 6, 12], findings(plain, [0, 6, 12]), {})


def test_training_section_states_languages_and_sources() -> None:
    mixture = {"rows": 6, "by_source_lang": {"qed_nq": {"en": 2}, "stsb_multi_mt": {"en": 1},
                                             "synthetic": {"de": 2, "zh": 1}}}
    oracle = {"rows": 3, "by_source_lang": {"qed_nq": {"en": 2}, "oracle": {"de": 1}}}
    text = "\n".join(training_markdown({"scale_6": mixture, "oracle": oracle}))
    assert "| `scale_6` | 6 | 2: qed_nq, stsb_multi_mt | en | de zh | - | - |" in text
    assert "| `oracle` | 3 | 1: qed_nq | en | - | de | - |" in text
    assert training_markdown({}) == []


def test_corpus_sentence_reads_every_models_corpus_size(evals: dict[str, Evaluation]) -> None:
    cmp = Comparer(evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", resamples=50, seed=0)

    def text() -> str:
        return results_markdown(evals, cmp, [0, 6, 12], findings(cmp, [0, 6, 12]), {})

    assert "are what `evaluate.corpus` and `evaluate.distractors` set" in text()  # no sizes recorded
    for ev in evals.values():
        for family in ("mono", "cross"):
            for sub in ev.metrics["subsets"][family].values():
                sub["n_documents"] = 160
    assert "the mono and cross corpora hold 160 paragraphs of a language" in text()
    evals["nohard"].metrics["subsets"]["cross"]["en-de"]["n_documents"] = 240  # one model, one subset
    assert "**the mono and cross corpora differ between subsets or models ([160, 240] paragraphs)**" in text()


def test_scale_curve_gives_each_points_seed_mean(evals: dict[str, Evaluation]) -> None:
    cmp = Comparer(evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", resamples=50, seed=0)
    text = results_markdown(evals, cmp, [0, 6, 12], findings(cmp, [0, 6, 12]), {})
    section = text.split("## Data-scale curve")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0]: line for line in section.splitlines() if line.startswith("| ") and "[" in line}
    mean = np.mean([evals[m].score("primary") for m in ("scale_12", "seed2", "seed3")])
    assert rows["| 12"].endswith(f" | {100 * mean:.2f} (3) |")
    assert rows["| 0"].endswith(f" | {100 * evals['scale_0'].score('primary'):.2f} (1) |")
