"""``dvc plots show`` renders offline: the inlined template draws charts in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retrofit.plots_html import (
    build_template,
    chromium,
    fetch_scripts,
    ink_fraction,
    screenshot,
)

DVC_YAML = """\
plots:
  - Data scale:
      template: linear
      x: scale
      y:
        curve.csv: ndcg_at_10
"""


def _need(tool_ok: bool, what: str) -> None:
    if not tool_ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing in CI: `make test-deps` should have installed it")
        pytest.skip(f"{what} not installed (make test-deps)")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need(shutil.which("npm") is not None, "npm")
    path = tmp_path_factory.mktemp("tpl") / "offline.html"
    path.write_text(build_template(fetch_scripts()), encoding="utf-8")
    return path


def _render(project: Path, template: Path | None) -> Path:
    out = project / ("offline" if template else "default")
    cmd = [sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)]
    if template:
        cmd += ["--html-template", str(template)]
    res = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out / "index.html"


def test_offline_template_renders_charts_in_chromium(template: Path, tmp_path: Path):
    _need(chromium() is not None, "chromium")
    proj = tmp_path / "proj"
    proj.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=proj, check=True)
    (proj / "dvc.yaml").write_text(DVC_YAML)
    (proj / "curve.csv").write_text("scale,ndcg_at_10\n0,0.70\n8,0.74\n16,0.75\n32,0.751\n")

    offline = _render(proj, template)
    html = offline.read_text()
    assert "cdn.jsdelivr" not in html and "vegaEmbed" in html
    shot = screenshot(offline, tmp_path / "offline.png", height=600)
    default_shot = screenshot(_render(proj, None), tmp_path / "default.png", height=600)
    # The default page loads vega from a CDN and stays blank offline; the inlined page draws the chart.
    assert ink_fraction(shot) > 0.005
    assert ink_fraction(shot) > 5 * ink_fraction(default_shot)
