"""Comparisons between models: differences with seed-and-question intervals, verdicts and the paper's findings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from retrofit.eval import stats
from retrofit.report.evaluations import OFFICIAL, XQUAD_METRICS, Evaluation, statistic_of

#: The named run whose synthetic slots hold the human XQuAD twins (params.yaml runs; retrofit.data.oracle).
ORACLE_RUN = "oracle"

#: The named run that mixes languages in a batch (``train.batch_groups: task``), against the top scale point.
BATCH_ABLATION_RUN = "taskbatch"

#: The named run with cross-lingual pairs (``train.mix.cross_lingual``), against the top scale point.
CROSS_RUN = "crossling"


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
        cells = evals["base"].beyond_cells() if "base" in evals else []
        self.seed_sd = {m: stats.seed_sd([s for s in (evals[x].score(m) for x in self.seed_models) if s is not None])
                        for m in (*XQUAD_METRICS, *OFFICIAL, *cells)}
        self._own: dict[tuple[str, str], tuple[float, float]] = {}  # the plot tables and RESULTS.md both ask

    def runs(self, arm: str, metric: str) -> list[str]:
        """The models of ``arm`` (itself and its seed replicas) that have ``metric``."""
        return [m for m in self.arms.get(arm, [arm]) if m in self.evals and self.evals[m].score(metric) is not None]

    def compare(self, a: str, b: str, metric: str = "primary", expected_sign: int = 1,
                arms: bool = True) -> dict[str, Any] | None:
        """``score(a) - score(b)`` with its interval and verdict; ``None`` when either model lacks the metric.

        With ``arms`` each side is its arm (the model and its seed replicas, scores averaged); without, the two
        models alone (the every-model table). The base model, which no seed trained, has no seed variance: a seeded
        arm against it carries its own seed noise.
        """
        if a not in self.evals or b not in self.evals or None in (self.evals[a].score(metric),
                                                                  self.evals[b].score(metric)):
            return None
        unit = self.evals[a].values(metric)[1]
        runs_a, runs_b = (self.runs(a, metric), self.runs(b, metric)) if arms else ([a], [b])
        c = stats.seeded_difference([self.evals[m].values(metric)[0] for m in runs_a],
                                    [self.evals[m].values(metric)[0] for m in runs_b],
                                    statistic=statistic_of(metric), unit=unit, resamples=self.resamples,
                                    seed=self.seed, fixed_b=b == "base")
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


def forest_pairs(top: str) -> dict[str, tuple[str, str, str]]:
    """The forest plots: ``{table: (title, arm A, arm B)}``, each drawn as ``A - B`` on every XQuAD metric."""
    return {"ablation": ("Hard negatives: top scale point - in-batch negatives only", top, "nohard"),
            "diversity": ("Task diversity (T) - language diversity (L)", "div_task", "div_lang")}
