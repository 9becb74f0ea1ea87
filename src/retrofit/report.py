"""The fan-in of every evaluation: differences with intervals, verdicts, tidy tables, figures and ``RESULTS.md``.

Inputs, per model, from ``reports/eval/<model>/`` (schemas in :mod:`retrofit.eval.xquad` and :mod:`retrofit.eval.mmteb`):
``metrics.json`` and ``per_query.json`` (held-out XQuAD), ``official/metrics.json`` and ``official/per_query/``
(the official mteb tasks of :mod:`retrofit.eval.official`), and at paper scale ``mmteb/metrics.json``. Models are the
base model, every data-scale point (``scale_<n>``) and the named runs of ``params.yaml``. Runs with these roles
enter the paper's findings:

- the top scale point and ``plot.seed_runs`` (``seed2``, ``seed3``): one configuration under several training
  seeds; the sample standard deviation of their scores is the *seed sd*; ``plot.arm_seeds`` gives other arms'
  seed replicas;
- ``nohard``: the top scale point without mined hard negatives;
- ``div_lang`` and ``div_task``: one example budget spent on many languages with one task type, or on many task
  types in fewer languages;
- ``oracle``: the top scale point with human XQuAD questions in place of the generated queries
  (:mod:`retrofit.data.oracle`), reported beside the scale curve: the gap is the generator's;
- ``taskbatch``: the top scale point with languages mixed in a batch (``train.batch_groups: task``);
- ``crossling``: the top scale point with half its non-English synthetic rows paired with the English version of
  their passage (``train.mix.cross_lingual``, :mod:`retrofit.data.cross_lingual`), compared on the cross family too.

Every difference is ``A - B`` on the same queries (:func:`retrofit.eval.stats.seeded_difference`): the mean over
each arm's seeds, with one 95% interval for seeds and questions where both arms have 2 or more seeds, and a paired
bootstrap over questions, labelled "one seed: query noise only", where not. Questions are resampled as units: an XQuAD
question with its values in every language (:func:`retrofit.eval.xquad.question_of`), the same draws for the primary
metric and its families. A difference is resolved when its interval excludes zero
(:func:`retrofit.eval.stats.verdict`); a claim of no effect (the plateau) needs the 90% interval inside
``plot.equivalence_margin`` (TOST, :func:`retrofit.eval.stats.equivalent`). The primary metric is the mean of the mono
and cross families of held-out XQuAD (pooled is a diagnostic; see docs/evaluation.md).

Outputs (``out_dir``; every file is rewritten):

- ``scores.csv``: one tidy row per (model, benchmark, family or subset): ``model, scale, benchmark, family,
  subset, score``; scores in [0, 1] (nDCG@10; F1 for Tatoeba);
- ``comparisons.csv``: every compared pair: ``a, b`` (model names), ``metric, score_a, score_b, delta, lo, hi,
  lo90, hi90, noise, seeds_a, seeds_b, verdict``;
- ``scale.csv``: each scale point's gain over ``scale_0`` per metric with its 95% interval (``gain, lo, hi``);
  ``ablation.csv``, ``diversity.csv``: each comparison as its difference with its interval and the equivalence
  margin (a forest plot); drawn by ``dvc plots show`` with the templates in ``.dvc/plots/``;
- ``models.json``: ``{model: {metric: score}}`` (a DVC metric: ``dvc exp show`` compares every model);
- ``findings.json``: seed sd per metric, the findings and every model against the base, with intervals;
- ``figures/*.png``: the same with error bars and bands;
- ``results_md`` (``reports/RESULTS.md``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrofit.errors import InputError
from retrofit.eval import stats
from retrofit.eval.official import published_markdown
from retrofit.eval.xquad import question_of
from retrofit.schema import EVAL_FAMILIES, OFFICIAL_TASK_NAMES

#: Mean main score (x100) over the 18 Retrieval tasks of MTEB(Multilingual), as the README's anchor table quotes it.
ANCHORS: dict[str, float] = {
    "Qwen3-Embedding-0.6B": 64.65,
    "EmbeddingGemma-300M": 62.49,
    "Tu et al. (2025), ~300M retrofitted": 60.56,
    "gte-Qwen2-7B-instruct": 60.08,
    "SFR-Embedding-Mistral": 59.44,
    "gte-multilingual-base": 57.11,
    "multilingual-e5-base": 52.72,
}

#: The held-out XQuAD metrics: the primary metric and the three families.
XQUAD_METRICS = ("primary", *EVAL_FAMILIES)
#: Official tasks reported for every model (XQuADRetrieval is the base model's only).
OFFICIAL = tuple(t for t in OFFICIAL_TASK_NAMES if t != "XQuADRetrieval")
#: The named run whose synthetic slots hold the human XQuAD twins (params.yaml runs; retrofit.data.oracle).
ORACLE_RUN = "oracle"
#: The named run that mixes languages in a batch (``train.batch_groups: task``), against the top scale point.
BATCH_ABLATION_RUN = "taskbatch"
#: The named run with cross-lingual pairs (``train.mix.cross_lingual``), against the top scale point.
CROSS_RUN = "crossling"
#: How each official task's per-query values are resampled (see retrofit.eval.stats).
_STATISTIC = {"Tatoeba": "bitext_f1"}
#: The resampling unit of each official task (absent: each subset on its own, as Tatoeba's languages hold different
#: sentences); Belebele's subsets ask the same questions (parallel eng/deu) under the same ids.
_UNIT: dict[str, stats.Unit] = {"BelebeleRetrieval": lambda query_id: query_id}
_LABELS = {"primary": "primary (mono+cross)", "BelebeleRetrieval": "Belebele",
           "LegalBenchCorporateLobbying": "LegalBench"}


@dataclass
class Evaluation:
    """One model's evaluation outputs, as read from ``reports/eval/<model>/``."""

    name: str
    metrics: dict[str, Any]
    per_query: dict[str, Any]
    official: dict[str, Any] = field(default_factory=dict)
    official_per_query: dict[str, Any] = field(default_factory=dict)

    def score(self, metric: str) -> float | None:
        """The model's score for ``metric`` (a name of :data:`XQUAD_METRICS` or an official task)."""
        if metric == "primary":
            return float(self.metrics["primary"]["ndcg_at_10"])
        if metric in self.metrics["families"]:
            return float(self.metrics["families"][metric]["ndcg_at_10"])
        task = self.official.get("tasks", {}).get(metric)
        return None if task is None else float(task["main_score"])

    def values(self, metric: str) -> tuple[dict[str, Any], stats.Unit | None]:
        """Per-query values of ``metric`` as ``({subset: {id: value}}, resampling unit)``."""
        if metric == "primary":
            return {"all": self.per_query["primary"]}, question_of  # keyed by the bare question id
        if metric in self.per_query["ndcg_at_10"]:
            return self.per_query["ndcg_at_10"][metric], question_of  # "<lang>:q:<question>" in every language
        return self.official_per_query[metric], _UNIT.get(metric)


def load_evaluations(eval_dir: Path, names: Sequence[str]) -> dict[str, Evaluation]:
    """Read every named model's evaluation.

    Raises:
        FileNotFoundError: A model has no held-out XQuAD ``metrics.json`` or ``per_query.json``; the message names
            the model and the stage to run.
    """
    out = {}
    for name in names:
        d = Path(eval_dir) / name
        need = [d / "metrics.json", d / "per_query.json"]
        missing = [str(p) for p in need if not p.is_file()]
        if missing:
            raise InputError(f"{name}: no evaluation ({', '.join(missing)}); run its evaluate stage first")
        official = d / "official" / "metrics.json"
        off = json.loads(official.read_text(encoding="utf-8")) if official.is_file() else {}
        per_task = {
            p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((d / "official" / "per_query").glob("*.json"))
        }
        out[name] = Evaluation(name, json.loads(need[0].read_text(encoding="utf-8")),
                               json.loads(need[1].read_text(encoding="utf-8")), off, per_task)
    return out


def load_mmteb(eval_dir: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{model: mmteb/metrics.json}`` for every name evaluated on MMTEB (``evaluate.benchmarks`` with ``mmteb``)."""
    out = {}
    for name in names:
        path = eval_dir / name / "mmteb" / "metrics.json"
        if path.is_file():
            out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def mining_markdown(mined: Mapping[str, Any]) -> list[str]:
    """The RESULTS.md section that shows the mined negatives are hard: teacher scores of positives, mined negatives
    and random negatives (the mine stage's report, :mod:`retrofit.mine`)."""
    scores = mined.get("scores") or {}
    if not mined.get("hard") or not scores:
        return []
    lines = ["## Hard negatives: teacher scores (cosine)", "",
             "The mine stage's `data/mined/report.json`: each query against its positive, its mined negatives and one",
             "passage drawn at random from the same candidate corpus (its language's pool and rows).", "",
             "| candidates | count | mean | 5% | median | 95% |", "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("positive", "positive"), ("mined_negative", "mined negative"),
                       ("random_negative", "random negative")):
        s = scores.get(key)
        if s and s.get("count"):
            lines.append(f"| {label} | {s['count']} | {s['mean']:.3f} | {s['q05']:.3f} | {s['q50']:.3f} | {s['q95']:.3f} |")
    corpus = mined.get("corpus") or {}
    lines += ["", f"Candidate corpora: {corpus.get('partitions')} partitions, {corpus.get('passages')} passages "
              f"(largest {corpus.get('largest_partition')}).", ""]
    return lines


def mmteb_markdown(mmteb: Mapping[str, Mapping[str, Any]], anchors: Mapping[str, float]) -> list[str]:
    """The RESULTS.md section for MMTEB(Multilingual) retrieval: every model's mean main score beside the anchors.

    The leaderboard's Retrieval column (and the paper's 60.56) is the mean *main score*; a model with missing tasks
    is marked incomplete, since its mean is not comparable.
    """
    if not mmteb:
        return []
    lines = ["## MMTEB(Multilingual) retrieval (paper scale)", "",
             "Mean main score x100 over the benchmark's Retrieval tasks (nDCG@10 for 16 of the 18), as the paper and",
             "the MMTEB leaderboard report it; published anchors in italics.", "",
             "| model | mean main score | mean nDCG@10 | tasks | complete |", "|---|---:|---:|---:|---|"]
    for name, m in mmteb.items():
        h = m.get("headline", {})
        lines.append(f"| {name} | {_pct(h.get('main_score'))} | {_pct(h.get('ndcg_at_10'))} | "
                     f"{m.get('tasks_done')}/{m.get('tasks_expected')} | {'yes' if m.get('complete') else 'no'} |")
    lines += [f"| *{k}* | *{v:.2f}* | | 18/18 | published |" for k, v in anchors.items()]
    return [*lines, ""]


class Comparer:
    """Comparisons between loaded evaluations: seed-and-question intervals, verdicts and the equivalence margin."""

    def __init__(self, evals: Mapping[str, Evaluation], seeds: Mapping[str, Sequence[str]], top: str, resamples: int,
                 seed: int, margin: float = 0.005):
        """Args:
            evals: Every model.
            seeds: Each arm's seed replicas ``{arm: [run, ...]}`` (the top point's ``plot.seed_runs`` among them).
            top: The top scale point, whose seeds give the seed spread section.
            resamples, seed: The bootstrap's.
            margin: ``plot.equivalence_margin`` as a fraction (x100 in params).
        """
        self.evals = evals
        self.resamples = resamples
        self.seed = seed
        self.margin = margin
        self.arms = {arm: [m for m in (arm, *runs) if m in evals] for arm, runs in seeds.items()}
        self.seed_models = self.arms.get(top, [top] if top in evals else [])
        self.seed_sd = {m: stats.seed_sd([s for s in (evals[x].score(m) for x in self.seed_models) if s is not None])
                        for m in (*XQUAD_METRICS, *OFFICIAL)}
        self._own: dict[tuple[str, str], tuple[float, float]] = {}  # the plot tables and RESULTS.md both ask

    def runs(self, arm: str, metric: str) -> list[str]:
        """The models of ``arm`` (itself and its seed replicas) that have ``metric``."""
        return [m for m in self.arms.get(arm, [arm]) if m in self.evals and self.evals[m].score(metric) is not None]

    def compare(self, a: str, b: str, metric: str = "primary", expected_sign: int = 1,
                arms: bool = True) -> dict[str, Any] | None:
        """``score(a) - score(b)`` with its interval and verdict; ``None`` when either model lacks the metric.

        With ``arms`` each side is its arm (the model and its seed replicas, scores averaged); without, the two
        models alone (the every-model table).
        """
        if a not in self.evals or b not in self.evals or None in (self.evals[a].score(metric),
                                                                  self.evals[b].score(metric)):
            return None
        unit = self.evals[a].values(metric)[1]
        runs_a, runs_b = (self.runs(a, metric), self.runs(b, metric)) if arms else ([a], [b])
        c = stats.seeded_difference([self.evals[m].values(metric)[0] for m in runs_a],
                                    [self.evals[m].values(metric)[0] for m in runs_b],
                                    statistic=_STATISTIC.get(metric, "mean"), unit=unit, resamples=self.resamples,
                                    seed=self.seed)
        # the interval's own "a"/"b" are the two scores: kept as score_a/score_b, the names stay the models'
        return {**c, "a": a, "b": b, "score_a": c["a"], "score_b": c["b"], "metric": metric,
                "runs_a": runs_a, "runs_b": runs_b,
                "verdict": stats.verdict(c, expected_sign), "equivalent": stats.equivalent(c, self.margin)}

    def own_interval(self, model: str, metric: str) -> tuple[float, float]:
        """The 95% bootstrap interval of one model's own XQuAD score (a difference against zero), computed once."""
        if (model, metric) not in self._own:
            values, unit = self.evals[model].values(metric)
            zero = {s: dict.fromkeys(v, 0.0) for s, v in values.items()}
            r = stats.paired_bootstrap(values, zero, unit=unit, resamples=self.resamples, seed=self.seed)
            self._own[(model, metric)] = (r["lo"], r["hi"])
        return self._own[(model, metric)]


def findings(cmp: Comparer, points: Sequence[int]) -> dict[str, dict[str, Any] | None]:
    """The paper's three findings on the primary metric, plus the composite plateau verdict.

    The plateau is a claim of no effect, so it is reproduced only by equivalence: a resolved gain from synthetic data,
    and the last step's 90% interval inside ``+-margin`` (TOST). A last step that is merely not resolved is *not* a
    plateau: "gain reproduced; plateau not resolved at this scale".
    """
    top, first = f"scale_{points[-1]}", f"scale_{points[0]}"
    out: dict[str, dict[str, Any] | None] = {
        "gain_from_synthetic": cmp.compare(top, first),
        "plateau_last_step": cmp.compare(top, f"scale_{points[-2]}") if len(points) > 1 else None,
        "hard_negatives": cmp.compare(top, "nohard"),
        "task_over_language_diversity": cmp.compare("div_task", "div_lang"),
        "generated_vs_oracle": cmp.compare(top, ORACLE_RUN),
    }
    gain, last = out["gain_from_synthetic"], out["plateau_last_step"]
    margin = f"+-{100 * cmp.margin:.2f}"
    if gain is None or last is None:
        plateau = "not run"
    elif gain["verdict"] == "opposite to the paper":
        plateau = "opposite to the paper: synthetic data lowers the primary metric, so there is no gain to plateau"
    elif gain["verdict"] != "reproduced":
        plateau = f"{gain['verdict']}: no resolved gain from synthetic data, so no plateau can be shown"
    elif last["equivalent"]:
        plateau = (f"reproduced: a resolved gain, and the last step's 90% interval [{100 * last['lo90']:+.2f}, "
                   f"{100 * last['hi90']:+.2f}] lies inside the margin {margin} (TOST; {last['noise']})")
    elif last["verdict"] == "not resolved at this scale":
        plateau = (f"gain reproduced; plateau not resolved at this scale: the last step's 90% interval "
                   f"[{100 * last['lo90']:+.2f}, {100 * last['hi90']:+.2f}] is not inside the margin {margin} "
                   f"({last['noise']})")
    else:
        plateau = "not reproduced: the last step still changes the score (" + last["verdict"] + ")"
    out["plateau"] = {"verdict": plateau, "margin": cmp.margin}
    return out


def build_report(
    evals: Mapping[str, Evaluation], scale_points: Sequence[int], seed_runs: Sequence[str], out_dir: Path,
    results_md: Path, *, resamples: int = 1000, seed: int = 0, extra_sections: list[str] | None = None,
    arm_seeds: Mapping[str, Sequence[str]] | None = None, margin: float = 0.5,
) -> dict[str, Any]:
    """Write every output listed in the module docstring and return ``findings.json``'s content.

    Args:
        evals: From :func:`load_evaluations` (``base`` and ``scale_<n>`` for each point at least).
        scale_points: ``scale.per_language``; sweep models are named ``scale_<n>``.
        seed_runs: ``plot.seed_runs``: the top scale point retrained under other seeds.
        out_dir: Output directory for tables and figures.
        results_md: Where ``RESULTS.md`` goes (``reports/RESULTS.md``, committed to git).
        resamples: Bootstrap resamples per comparison.
        seed: Bootstrap seed.
        extra_sections: Markdown lines appended to ``RESULTS.md`` (the MMTEB table, :func:`mmteb_markdown`).
        arm_seeds: ``plot.arm_seeds``: other arms' seed replicas.
        margin: ``plot.equivalence_margin`` (nDCG@10 x100).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    points = sorted(scale_points)
    top = f"scale_{points[-1]}"
    cmp = Comparer(evals, {**(arm_seeds or {}), top: list(seed_runs)}, top, resamples, seed, margin / 100)
    metrics = [*XQUAD_METRICS, *OFFICIAL]
    versus_base = {m: {k: cmp.compare(m, "base", k, arms=False) for k in metrics} for m in evals if m != "base"}
    found = findings(cmp, points)
    summary = {"seed_models": cmp.seed_models, "seed_sd": cmp.seed_sd, "arms": cmp.arms, "margin": cmp.margin,
               "findings": found, "versus_base": versus_base}
    (out_dir / "findings.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    models = {m: {k: ev.score(k) for k in metrics} for m, ev in evals.items()}
    (out_dir / "models.json").write_text(json.dumps(models, indent=2) + "\n", encoding="utf-8")
    _write_csv(out_dir / "scores.csv", tidy_rows(evals, points), ["model", "scale", "benchmark", "family", "subset",
                                                                   "score"])
    rows = [c for c in [*found.values(), *(c for v in versus_base.values() for c in v.values())] if c and "a" in c]
    _write_csv(out_dir / "comparisons.csv", rows,
               ["a", "b", "metric", "score_a", "score_b", "delta", "lo", "hi", "lo90", "hi90", "noise", "seeds_a",
                "seeds_b", "verdict"])
    plots = plot_tables(cmp, points)
    for name, table in plots.items():
        _write_csv(out_dir / f"{name}.csv", table, list(table[0]) if table else ["label"])
    _figures(plots, evals, cmp, points, out_dir / "figures")
    text = results_markdown(evals, cmp, points, found, versus_base)
    results_md.write_text(text + ("\n".join(extra_sections) + "\n" if extra_sections else ""), encoding="utf-8")
    return summary


def tidy_rows(evals: Mapping[str, Evaluation], points: Sequence[int]) -> list[dict[str, Any]]:
    """The rows of ``scores.csv``: every family and subset of held-out XQuAD and every official task subset."""
    scales = {f"scale_{n}": n for n in points}
    rows = []
    for model, ev in evals.items():
        base = {"model": model, "scale": scales.get(model, "")}
        rows.append({**base, "benchmark": "xquad", "family": "primary", "subset": "all", "score": ev.score("primary")})
        for fam, subsets in ev.metrics["subsets"].items():
            rows.append({**base, "benchmark": "xquad", "family": fam, "subset": "all", "score": ev.score(fam)})
            rows += [{**base, "benchmark": "xquad", "family": fam, "subset": s, "score": v["ndcg_at_10"]}
                     for s, v in subsets.items()]
        for task, t in ev.official.get("tasks", {}).items():
            rows.append({**base, "benchmark": task, "family": t["main_score_name"], "subset": "all",
                         "score": t["main_score"]})
            rows += [{**base, "benchmark": task, "family": t["main_score_name"], "subset": s, "score": v}
                     for s, v in t["subset_scores"].items()]
    return rows


def forest_pairs(top: str) -> dict[str, tuple[str, str, str]]:
    """The forest plots: ``{table: (title, arm A, arm B)}``, each drawn as ``A - B`` on every XQuAD metric."""
    return {"ablation": ("Hard negatives: top scale point - in-batch negatives only", top, "nohard"),
            "diversity": ("Task diversity (T) - language diversity (L)", "div_task", "div_lang")}


def plot_tables(cmp: Comparer, points: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """The plots' data: the scale curve as each point's gain over the first, and each finding as a difference.

    Every row carries its 95% interval (``lo``, ``hi``); the forest rows also the equivalence margin
    (``margin_lo``, ``margin_hi``), the noise the interval carries and the verdict.
    """
    first = f"scale_{points[0]}"
    scale = []
    for metric in XQUAD_METRICS:
        for n in points:
            model = f"scale_{n}"
            c = cmp.compare(model, first, metric) if model != first else None
            if model == first and model in cmp.evals:
                scale.append({"scale": n, "model": model, "family": metric, "gain": 0.0, "lo": 0.0, "hi": 0.0})
            elif c is not None:
                scale.append({"scale": n, "model": model, "family": metric, "gain": c["delta"], "lo": c["lo"],
                              "hi": c["hi"], "noise": c["noise"]})
    tables: dict[str, list[dict[str, Any]]] = {"scale": scale}
    for name, (_, a, b) in forest_pairs(f"scale_{points[-1]}").items():
        rows = []
        for metric in XQUAD_METRICS:
            c = cmp.compare(a, b, metric)
            if c is not None:
                rows.append({"label": _LABELS.get(metric, metric), "comparison": f"{a} - {b}", "family": metric,
                             "delta": c["delta"], "lo": c["lo"], "hi": c["hi"], "margin_lo": -cmp.margin,
                             "margin_hi": cmp.margin, "noise": c["noise"], "verdict": c["verdict"]})
        tables[name] = rows
    return tables


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fields: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()})


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def format_diff(c: Mapping[str, Any] | None) -> str:
    """A comparison (:meth:`Comparer.compare`) as ``+1.23 [+0.40, +2.10]`` (x100), or ``-``."""
    if c is None:
        return "-"
    return f"{100 * c['delta']:+.2f} [{100 * c['lo']:+.2f}, {100 * c['hi']:+.2f}]"


def _figures(plots: Mapping[str, list[dict[str, Any]]], evals: Mapping[str, Evaluation], cmp: Comparer,
             points: Sequence[int], fig_dir: Path) -> None:
    """``scale.png`` (each point's gain over the first, with bands) and one forest plot per finding pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    first = f"scale_{points[0]}"
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for metric, style in zip(XQUAD_METRICS, ("-o", "--s", "--^", ":d"), strict=True):
        pts = [r for r in plots["scale"] if r["family"] == metric]
        if not pts:
            continue
        xs = [r["scale"] for r in pts]
        line, = ax.plot(xs, [100 * r["gain"] for r in pts], style, label=_LABELS.get(metric, metric),
                        lw=2 if metric == "primary" else 1)
        ax.fill_between(xs, [100 * r["lo"] for r in pts], [100 * r["hi"] for r in pts], color=line.get_color(),
                        alpha=0.15)
    if first in evals and len(cmp.seed_models) > 1:
        ref = evals[first].score("primary")
        ax.plot([points[-1]] * len(cmp.seed_models), [100 * (evals[m].score("primary") - ref) for m in cmp.seed_models],
                "k_", ms=12, label="primary, each training seed")
    if "base" in evals and first in evals:
        ax.axhline(100 * (evals["base"].score("primary") - evals[first].score("primary")), color="grey", ls=":",
                   lw=1.5, label="primary, base model")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("synthetic examples per language")
    ax.set_ylabel(f"gain over {first}, nDCG@10 x100 (held-out XQuAD)")
    ax.set_title("Data scale: gain over English-only training (bands: 95% intervals)", fontsize=10)
    ax.set_xticks(list(points))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(fig_dir / "scale.png", dpi=120)
    plt.close(fig)
    for name, (title, a, b) in forest_pairs(f"scale_{points[-1]}").items():
        rows = plots.get(name) or []
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6.8, 3.6))
        ys = list(range(len(rows)))[::-1]
        ax.axvspan(-100 * cmp.margin, 100 * cmp.margin, color="green", alpha=0.1,
                   label=f"equivalence margin +-{100 * cmp.margin:.2f}")
        ax.axvline(0, color="grey", ls="--", lw=1)
        for y, r in zip(ys, rows, strict=True):
            ax.plot([100 * r["lo"], 100 * r["hi"]], [y, y], color="C0", lw=2)
            ax.plot(100 * r["delta"], y, "o", color="C0", ms=7)
            b_mean = sum(evals[m].score(r["family"]) for m in cmp.runs(b, r["family"])) / len(cmp.runs(b, r["family"]))
            seeds = [100 * (evals[m].score(r["family"]) - b_mean) for m in cmp.runs(a, r["family"])]
            ax.plot(seeds, [y + 0.18] * len(seeds), "|", color="black", ms=8)
        ax.plot([], [], "|", color="black", ms=8, label=f"each seed of {a} against {b}'s mean")
        ax.set_yticks(ys, [f"{r['label']}\n({r['noise']})" for r in rows], fontsize=7)
        ax.set_xlabel(f"{a} - {b}, nDCG@10 x100 (95% interval)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="best")
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(fig_dir / f"{name}.png", dpi=120)
        plt.close(fig)


def results_markdown(evals: Mapping[str, Evaluation], cmp: Comparer, points: Sequence[int],
                     found: Mapping[str, Any], versus_base: Mapping[str, Mapping[str, Any]]) -> str:
    """``RESULTS.md``: the instrument check, the seed spread, the findings and every model, all with intervals."""
    top = f"scale_{points[-1]}"
    base = evals.get("base")
    lengths = sorted({ev.metrics.get("max_seq_length") for ev in evals.values()}, key=str)
    condition = (f"Every model is evaluated at {lengths[0]} tokens per text on the same queries and corpora (every "
                 "comparison checks that both asked the same queries)." if len(lengths) == 1 else
                 f"**Models were evaluated at different lengths ({lengths} tokens per text)**: their differences mix "
                 "the models with the condition.")
    lines = [
        "# Results on the embedded default",
        "",
        "Generated by the `plot` stage from `reports/eval/*/`; do not edit by hand. Scores are x100.",
        condition,
        "**Primary metric**: the mean of the mono and cross family means of held-out XQuAD (nDCG@10); the mono",
        "and cross corpora are a language's paragraphs as `evaluate.corpus` sets them, and the queries come from "
        "held-out articles only.",
        "Pooled is a diagnostic family outside the primary metric.",
        "",
        "Every difference is `A - B`, each arm's score the mean over its training seeds. Its 95% interval carries",
        "both sources of noise where both arms were trained under 2 or more seeds (questions by a bootstrap, "
        f"{cmp.resamples} resamples,",
        "seeds by each arm's seed variance; `retrofit.eval.stats.seeded_difference`), and questions only where not:",
        f"those rows say *{stats.QUERY_ONLY}*. Questions are resampled as units: an XQuAD question brings its values",
        "in every language and direction, with the same draws for the primary metric and its families.",
        "A difference is resolved when its interval excludes zero; otherwise it is *not resolved at this scale*. A",
        f"claim of no effect (the plateau) needs the 90% interval inside +-{100 * cmp.margin:.2f} "
        "(`plot.equivalence_margin`, TOST).",
        "",
    ]
    lines += _instrument_section(base, published_markdown)
    lines += _seed_section(cmp, top)
    lines += _findings_section(found, cmp, points)
    lines += _models_section(evals, versus_base)
    lines += _scale_section(cmp, points)
    lines += _pair_section(cmp, top, ORACLE_RUN, "Oracle: human questions at the same counts", [
        f"`{ORACLE_RUN}` trains on the rows of `{top}` with each generated query replaced by a human XQuAD",
        "training-pool question on the same passage (`retrofit.data.oracle`): a negative Δ is what a better generator",
        "could still gain."])
    lines += _pair_section(cmp, top, BATCH_ABLATION_RUN, "Batches: one language per batch against languages mixed", [
        f"`{BATCH_ABLATION_RUN}` draws each synthetic batch from one task type across languages "
        "(`train.batch_groups: task`),", f"`{top}` from one language (`language`); both keep `source_id`s apart."])
    lines += _pair_section(cmp, top, CROSS_RUN, "Cross-lingual pairs: a query with the English version of its passage", [
        f"`{CROSS_RUN}` replaces half of `{top}`'s non-English synthetic rows by their twins whose positive is the",
        "English passage of the same `source_id` (`retrofit.data.cross_lingual`): a negative Δ on `cross` is what",
        "the lever gains on the cross family."], metrics=("primary", "mono", "cross", *OFFICIAL))
    lines += _language_section(evals, top)
    lines += ["Figures: `reports/results/figures/scale.png`, `ablation.png`, `diversity.png` (with intervals); "
              "interactive: `dvc plots show` (`make plots` offline).", ""]
    return "\n".join(lines)


def _instrument_section(base: Evaluation | None, published_markdown: Any) -> list[str]:
    if base is None or not base.official:
        return []
    scores = {t: v["subset_scores"] for t, v in base.official["tasks"].items()}
    return ["## The instrument: the converted base model against published multilingual-e5-small scores", "",
            "mteb's own task classes on pinned local copies of their data (`retrofit.eval.official`); published numbers",
            "from the MTEB results repository (nDCG@10; F1 for Tatoeba).", "", *published_markdown(scores), ""]


def _seed_section(cmp: Comparer, top: str) -> list[str]:
    lines = ["## Seed spread", "", f"The top configuration (`{top}`) trained under {len(cmp.seed_models)} seeds "
             f"({', '.join(f'`{m}`' for m in cmp.seed_models)}):", "",
             "| metric | " + " | ".join(cmp.seed_models) + " | seed sd |", "|---|" + "---:|" * (len(cmp.seed_models) + 1)]
    for metric in (*XQUAD_METRICS, *OFFICIAL):
        vals = [cmp.evals[m].score(metric) for m in cmp.seed_models]
        lines.append(f"| {_LABELS.get(metric, metric)} | " + " | ".join(_pct(v) for v in vals)
                     + f" | {_pct(cmp.seed_sd.get(metric))} |")
    return [*lines, ""]


def _findings_section(found: Mapping[str, Any], cmp: Comparer, points: Sequence[int]) -> list[str]:
    top = f"scale_{points[-1]}"
    rows = [
        ("1. synthetic data helps", f"`{top}` - `scale_{points[0]}`", found["gain_from_synthetic"]),
        ("1. gains plateau (last step)", f"`{top}` - `scale_{points[-2] if len(points) > 1 else points[0]}`",
         found["plateau_last_step"]),
        ("2. hard negatives are essential", f"`{top}` - `nohard`", found["hard_negatives"]),
        ("3. task diversity beats language diversity", "`div_task` - `div_lang`",
         found["task_over_language_diversity"]),
    ]
    lines = ["## Findings (primary metric)", "",
             "| finding (paper) | comparison | seeds | Δ [95% interval] | 90% interval | noise | verdict |",
             "|---|---|---|---:|---:|---|---|"]
    for n, c, f in rows:
        if f is None:
            lines.append(f"| {n} | {c} | - | - | - | - | not run |")
            continue
        lines.append(f"| {n} | {c} | {f['seeds_a']} vs {f['seeds_b']} | {format_diff(f)} | "
                     f"[{100 * f['lo90']:+.2f}, {100 * f['hi90']:+.2f}] | {f['noise']} | {f['verdict']} |")
    lines += ["", f"Plateau (finding 1): {found['plateau']['verdict']}.", ""]
    return lines


def _models_section(evals: Mapping[str, Evaluation], versus_base: Mapping[str, Mapping[str, Any]]) -> list[str]:
    metrics = [*XQUAD_METRICS, *OFFICIAL]
    lines = ["## Every model", "", "| model | " + " | ".join(_LABELS.get(m, m) for m in metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    lines += [f"| {m} | " + " | ".join(_pct(ev.score(k)) for k in metrics) + " |" for m, ev in evals.items()]
    lines += ["", "### Against the base model (Δ [95% interval]; verdict by the rule above)", "",
              "| model | primary | verdict | Tatoeba | Belebele | LegalBench |", "|---|---:|---|---:|---:|---:|"]
    for m, c in versus_base.items():
        verdict = c["primary"]["verdict"] if c.get("primary") else "not run"
        verdict = {"reproduced": "beats the base", "opposite to the paper": "below the base"}.get(verdict, verdict)
        lines.append(f"| {m} | {format_diff(c.get('primary'))} | {verdict} | "
                     + " | ".join(format_diff(c.get(t)) for t in OFFICIAL) + " |")
    return [*lines, ""]


def _scale_section(cmp: Comparer, points: Sequence[int]) -> list[str]:
    lines = ["## Data-scale curve", "", "Each point's score with its own 95% interval over queries.", "",
             "| synthetic / language | " + " | ".join(_LABELS.get(m, m) for m in XQUAD_METRICS) + " |",
             "|---:|" + "---:|" * len(XQUAD_METRICS)]
    for n in points:
        model = f"scale_{n}"
        if model not in cmp.evals:
            continue
        cells = []
        for metric in XQUAD_METRICS:
            lo, hi = cmp.own_interval(model, metric)
            cells.append(f"{_pct(cmp.evals[model].score(metric))} [{_pct(lo)}, {_pct(hi)}]")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _pair_section(cmp: Comparer, top: str, other: str, title: str, note: list[str],
                  metrics: Sequence[str] = ("primary", *OFFICIAL)) -> list[str]:
    """``top - other`` on ``metrics`` (the primary metric and the official tasks), under ``title``."""
    if other not in cmp.evals or top not in cmp.evals:
        return []
    lines = [f"## {title} (`{top}` - `{other}`)", "", *note, "",
             f"| metric | `{top}` | `{other}` | Δ [95% interval] | noise | verdict |", "|---|---:|---:|---:|---|---|"]
    words = {"reproduced": f"`{top}` higher", "opposite to the paper": f"`{other}` higher"}
    for metric in metrics:
        c = cmp.compare(top, other, metric)
        if c is not None:
            lines.append(f"| {_LABELS.get(metric, metric)} | {_pct(c['score_a'])} | {_pct(c['score_b'])} | "
                         f"{format_diff(c)} | {c['noise']} | {words.get(c['verdict'], c['verdict'])} |")
    return [*lines, ""]


def _language_section(evals: Mapping[str, Evaluation], top: str) -> list[str]:
    if "base" not in evals or top not in evals:
        return []

    def by_lang(ev: Evaluation, family: str) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for subset, v in ev.metrics["subsets"].get(family, {}).items():
            lang = next((x for x in subset.split("-") if x != "en"), "en") if family == "cross" else subset
            out.setdefault(lang, []).append(v["ndcg_at_10"])
        return {k: sum(v) / len(v) for k, v in out.items()}

    fams = ("mono", "cross", "pooled")
    ours = {f: by_lang(evals[top], f) for f in fams}
    theirs = {f: by_lang(evals["base"], f) for f in fams}
    lines = [f"## Per language: `{top}` against the base model (Δ nDCG@10 x100)", "",
             "| language | mono | cross | pooled |", "|---|---:|---:|---:|"]
    for lang in sorted(set(ours["mono"]) | set(ours["pooled"])):
        cells = [f"{100 * (ours[f][lang] - theirs[f][lang]):+.2f}" if lang in ours[f] and lang in theirs[f] else "-"
                 for f in fams]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    return [*lines, ""]


README_START, README_END = "<!-- results:start (python -m retrofit.report readme) -->", "<!-- results:end -->"


def readme_table(results_dir: Path) -> str:
    """The README's results block, from the plot stage's ``models.json`` and ``findings.json``.

    Returns:
        Markdown: every model's scores (x100) with its primary-metric difference from the base model and interval,
        then the seed sd and each finding's verdict.
    """
    models = json.loads((Path(results_dir) / "models.json").read_text(encoding="utf-8"))
    summary = json.loads((Path(results_dir) / "findings.json").read_text(encoding="utf-8"))
    cols = [*XQUAD_METRICS, *OFFICIAL]
    lines = ["| model | " + " | ".join(_LABELS.get(c, c) for c in cols) + " | primary Δ vs base [95%] |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for name, scores in models.items():
        vs = summary["versus_base"].get(name, {}).get("primary")
        lines.append(f"| `{name}` | " + " | ".join(_pct(scores.get(c)) for c in cols) + f" | {format_diff(vs)} |")
    sd = summary["seed_sd"].get("primary")
    lines += ["", f"Seed sd of the primary metric over {', '.join(f'`{m}`' for m in summary['seed_models'])}: "
              f"{_pct(sd)}. A finding is resolved when its 95% interval excludes zero; the interval carries seed noise "
              "only where both arms have 2 or more seeds (the noise column).", "",
              "| finding | Δ primary [95%] | noise | verdict |", "|---|---:|---|---|"]
    names = {"gain_from_synthetic": "1. synthetic data helps", "plateau_last_step": "1. plateau (last step)",
             "hard_negatives": "2. hard negatives are essential",
             "task_over_language_diversity": "3. task diversity beats language diversity"}
    for key, label in names.items():
        f = summary["findings"].get(key)
        lines.append(f"| {label} | {format_diff(f)} | {f['noise'] if f else '-'} | {f['verdict'] if f else 'not run'} |")
    lines.append(f"| 1. plateau (overall) | | | {summary['findings']['plateau']['verdict']} |")
    return "\n".join(lines)


def update_readme(readme: Path, results_dir: Path) -> bool:
    """Replace the block between :data:`README_START` and :data:`README_END` with :func:`readme_table`.

    Returns:
        Whether the file changed.

    Raises:
        ValueError: The README has no such block.
    """
    text = Path(readme).read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise InputError(f"{readme}: no results block; add the lines {README_START!r} and {README_END!r}")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{readme_table(results_dir)}\n{README_END}{tail}"
    Path(readme).write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["readme"]:
        sys.exit("usage: python -m retrofit.report readme [README.md] [reports/results]")
    target = Path(sys.argv[2] if len(sys.argv) > 2 else "README.md")
    changed = update_readme(target, Path(sys.argv[3] if len(sys.argv) > 3 else "reports/results"))
    print(f"{target}: results block {'updated' if changed else 'already current'}")
