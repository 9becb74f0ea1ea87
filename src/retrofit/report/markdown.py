"""``RESULTS.md``: the instrument check, the seed spread, the findings and every model, all with intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from retrofit.eval import stats
from retrofit.eval.official import published_markdown
from retrofit.report.compare import BATCH_ABLATION_RUN, CROSS_RUN, ORACLE_RUN, Comparer
from retrofit.report.evaluations import LABELS, OFFICIAL, XQUAD_METRICS, Evaluation
from retrofit.schema import CROSS, HUMAN, ORACLE, SYNTHETIC

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


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def format_diff(c: Mapping[str, Any] | None) -> str:
    """A comparison (:meth:`Comparer.compare`) as ``+1.23 [+0.40, +2.10]`` (x100), or ``-``."""
    if c is None:
        return "-"
    return f"{100 * c['delta']:+.2f} [{100 * c['lo']:+.2f}, {100 * c['hi']:+.2f}]"


#: How RESULTS.md names the row sources that are not English datasets.
MULTILINGUAL_SOURCES = {SYNTHETIC: "generated queries", ORACLE: "human XQuAD questions", CROSS: "cross-lingual twins",
                        HUMAN: "all human XQuAD questions"}


def training_rows(training: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per model: its training rows, the English datasets and their languages, and the languages of its generated
    (or human, or cross-lingual) rows, from :func:`retrofit.report.evaluations.load_training`."""
    rows = []
    for model, mix in training.items():
        by = mix.get("by_source_lang", {})
        english = sorted(s for s in by if s not in MULTILINGUAL_SOURCES)
        multilingual = {label.replace(" ", "_"): sorted(by[s]) for s, label in MULTILINGUAL_SOURCES.items() if s in by}
        rows.append({"model": model, "rows": mix["rows"], "english_datasets": english,
                     "english_languages": sorted({lang for s in english for lang in by[s]}), **multilingual})
    return rows


def training_markdown(training: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The section that states which languages each model saw in training, and from which source."""
    if not training:
        return []
    lines = ["## What each model saw in training", "",
             "Languages of each model's training rows by source (`reports/train/<model>/info.json`). The English",
             "task data is English only (stsb_multi_mt enters as its English train split), and no row overlaps a text",
             "of any evaluation task (the dedupe stage's decontamination against `data/prepared/heldout.jsonl`). The",
             "base model is not trained here.", "",
             "| model | rows | English task datasets | their languages | "
             + " | ".join(MULTILINGUAL_SOURCES.values()) + " |",
             "|---|---:|---|---|" + "---|" * len(MULTILINGUAL_SOURCES)]
    for r in training_rows(training):
        cells = [" ".join(r.get(v.replace(" ", "_"), [])) or "-" for v in MULTILINGUAL_SOURCES.values()]
        datasets = f"{len(r['english_datasets'])}: {', '.join(r['english_datasets'])}"
        lines.append(f"| `{r['model']}` | {r['rows']} | {datasets} | {' '.join(r['english_languages']) or '-'} | "
                     + " | ".join(cells) + " |")
    return [*lines, ""]


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
        lines.append(f"| {name} | {pct(h.get('main_score'))} | {pct(h.get('ndcg_at_10'))} | "
                     f"{m.get('tasks_done')}/{m.get('tasks_expected')} | {'yes' if m.get('complete') else 'no'} |")
    lines += [f"| *{k}* | *{v:.2f}* | | 18/18 | published |" for k, v in anchors.items()]
    return [*lines, ""]


def _corpus_sentence(evals: Mapping[str, Evaluation]) -> str:
    """What the mono and cross corpora held, read from every model's ``metrics.json`` (``evaluate.corpus`` and
    ``evaluate.distractors`` set it)."""
    sizes = sorted({sub["n_documents"] for ev in evals.values() for family in ("mono", "cross")
                    for sub in ev.metrics.get("subsets", {}).get(family, {}).values() if "n_documents" in sub})
    if len(sizes) == 1:
        return (f"the mono and cross corpora hold {sizes[0]} paragraphs of a language for every model (its held-out "
                "ones, and the training-pool distractors `evaluate.corpus` and `evaluate.distractors` add).")
    if not sizes:
        return "the mono and cross corpora are what `evaluate.corpus` and `evaluate.distractors` set."
    return (f"**the mono and cross corpora differ between subsets or models ({sizes} paragraphs)**: "
            "`evaluate.corpus` and `evaluate.distractors` set them.")


def results_markdown(evals: Mapping[str, Evaluation], cmp: Comparer, points: Sequence[int],
                     found: Mapping[str, Any], versus_base: Mapping[str, Mapping[str, Any]],
                     training: Mapping[str, Mapping[str, Any]] | None = None, cost: Sequence[str] = ()) -> str:
    """``RESULTS.md``: the instrument check, the seed spread, the findings, every model and the cost of
    retrofitting (``cost``: :func:`retrofit.report.cost.cost_markdown`'s lines), all with intervals."""
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
        "**Primary metric**: the mean of the mono and cross family means of held-out XQuAD (nDCG@10); "
        f"{_corpus_sentence(evals)} The queries come from held-out articles only.",
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
    lines += list(cost)
    lines += training_markdown(training or {})
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
    lines += ["Figures: `reports/results/figures/scale.png`, `ablation.png`, `diversity.png`, `cost.png` (with intervals); "
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
        lines.append(f"| {LABELS.get(metric, metric)} | " + " | ".join(pct(v) for v in vals)
                     + f" | {pct(cmp.seed_sd.get(metric))} |")
    others = {arm: runs for arm, runs in cmp.arms.items() if arm != top and len(runs) > 1}
    if others:  # plot.arm_seeds: each arm's own spread, which its comparisons carry (not the top point's)
        lines += ["", "Other arms trained under several seeds (`plot.arm_seeds`), primary metric:", "",
                  "| arm | models | primary, each seed | seed sd |", "|---|---|---|---:|"]
        for arm, runs in others.items():
            vals = [cmp.evals[m].score("primary") for m in runs]
            lines.append(f"| `{arm}` | {', '.join(f'`{m}`' for m in runs)} | {', '.join(pct(v) for v in vals)} | "
                         f"{pct(stats.seed_sd(vals))} |")
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
    lines = ["## Every model", "", "| model | " + " | ".join(LABELS.get(m, m) for m in metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    lines += [f"| {m} | " + " | ".join(pct(ev.score(k)) for k in metrics) + " |" for m, ev in evals.items()]
    lines += ["", "### Against the base model (Δ [95% interval]; verdict by the rule above)", "",
              "| model | primary | verdict | Tatoeba | Belebele | LegalBench |", "|---|---:|---|---:|---:|---:|"]
    for m, c in versus_base.items():
        verdict = c["primary"]["verdict"] if c.get("primary") else "not run"
        verdict = {"reproduced": "beats the base", "opposite to the paper": "below the base"}.get(verdict, verdict)
        lines.append(f"| {m} | {format_diff(c.get('primary'))} | {verdict} | "
                     + " | ".join(format_diff(c.get(t)) for t in OFFICIAL) + " |")
    return [*lines, ""]


def _scale_section(cmp: Comparer, points: Sequence[int]) -> list[str]:
    """Each point's first-seed model (``scale_<n>``) with its own query intervals, and its arm's seed mean."""
    lines = ["## Data-scale curve", "",
             "Each point's first-seed model (`scale_<n>`) with its own 95% interval over queries, and the primary "
             "metric's mean over the point's training seeds (the score its findings compare).", "",
             "| synthetic / language | " + " | ".join(LABELS.get(m, m) for m in XQUAD_METRICS)
             + " | primary, mean over seeds (seeds) |", "|---:|" + "---:|" * (len(XQUAD_METRICS) + 1)]
    for n in points:
        model = f"scale_{n}"
        if model not in cmp.evals:
            continue
        cells = []
        for metric in XQUAD_METRICS:
            lo, hi = cmp.own_interval(model, metric)
            cells.append(f"{pct(cmp.evals[model].score(metric))} [{pct(lo)}, {pct(hi)}]")
        runs = cmp.runs(model, "primary")
        mean = sum(cmp.evals[m].score("primary") for m in runs) / len(runs)  # runs() keeps models with a score
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {pct(mean)} ({len(runs)}) |")
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
            lines.append(f"| {LABELS.get(metric, metric)} | {pct(c['score_a'])} | {pct(c['score_b'])} | "
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
