"""The fan-in of every evaluation: differences with intervals, verdicts, tidy tables, figures and ``RESULTS.md``.

Inputs, per model, from ``reports/eval/<model>/`` (schemas in :mod:`retrofit.eval.xquad` and
:mod:`retrofit.eval.mmteb`):
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
