"""Tests for retrofit.report.figures: the scale curve and one forest plot per finding pair, as readable PNGs."""

from __future__ import annotations

from pathlib import Path

from retrofit.report.compare import Comparer
from retrofit.report.evaluations import Evaluation
from retrofit.report.figures import draw_figures
from retrofit.report.tables import plot_tables


def test_every_figure_is_drawn(evals: dict[str, Evaluation], tmp_path: Path) -> None:
    import matplotlib.image

    cmp = Comparer(evals, {"scale_12": ["seed2", "seed3"]}, "scale_12", resamples=100, seed=0)
    draw_figures(plot_tables(cmp, [0, 6, 12]), evals, cmp, [0, 6, 12], tmp_path / "figures")
    for name in ("scale", "ablation", "diversity"):
        image = matplotlib.image.imread(tmp_path / "figures" / f"{name}.png")
        assert image.shape[0] >= 400 and image.shape[1] >= 800  # 6.8 in wide at 120 dpi
        assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas
