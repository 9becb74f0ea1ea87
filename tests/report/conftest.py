"""The report tests' shared models: a base, a scale curve with three seeds at its top, and the ablation arms."""

from __future__ import annotations

import pytest

from retrofit.report.evaluations import Evaluation
from tests.report.evals import make_eval


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
