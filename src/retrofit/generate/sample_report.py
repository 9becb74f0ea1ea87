"""A Markdown sample of the generate stage's output, for people to judge its quality (``reports/generate/sample.md``).

It reads the stage's ``examples.jsonl``, ``rejected.jsonl`` and ``metrics.json``, whose schemas
:mod:`retrofit.generate.pipeline` documents.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from retrofit.io import iter_jsonl


def markdown_cell(text: str, limit: int | None = None) -> str:
    """``text`` as one Markdown table cell: cut to ``limit`` characters (with "…"), pipes escaped, newlines spaced."""
    text = text if limit is None or len(text) <= limit else text[:limit] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


def write_sample(examples: Path, out: Path, per_language: int = 5, rejected: Path | None = None,
                 metrics: Path | None = None, rejected_per_language: int = 3) -> None:
    """Write a Markdown sample for people to judge quality: per-language pass rates and round-trip ranks, then the
    first ``per_language`` accepted rows and ``rejected_per_language`` rejected ones (with their reason) per language.

    Args:
        examples: The stage's ``examples.jsonl``.
        out: The Markdown file.
        per_language: Accepted rows shown per language.
        rejected: The stage's ``rejected.jsonl`` (``None``: no rejected rows shown).
        metrics: The stage's ``metrics.json`` (``None``: no pass-rate table).
        rejected_per_language: Rejected rows shown per language.
    """

    rows = list(iter_jsonl(examples))
    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_lang[r["lang"]].append(r)
    dropped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in iter_jsonl(rejected) if rejected is not None and rejected.is_file() else []:
        if len(dropped[r["lang"]]) < rejected_per_language:
            dropped[r["lang"]].append(r)
    lines = ["# Generated examples: a sample", "",
             ("Written by the `generate` stage: pass rates and round-trip ranks per language, then the first accepted "
              "and rejected rows of each language. `rt rank`: the rank of the row's own passage for its query among "
              "every candidate of the language under the base model (0 = first)."), ""]
    if metrics is not None and metrics.is_file():
        per = json.loads(metrics.read_text(encoding="utf-8"))["per_language"]
        lines += [("| language | requested | accepted | validation pass | round-trip pass | accepted rt rank 0 / 1-2 / 3+ "
                   "| rejections |"), "|---|---:|---:|---:|---:|---|---|"]
        for lang in sorted(per):
            m = per[lang]
            ranks = [r["roundtrip_rank"] for r in by_lang.get(lang, [])]
            bands = f"{sum(r == 0 for r in ranks)} / {sum(1 <= r <= 2 for r in ranks)} / {sum(r >= 3 for r in ranks)}"
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(m["rejected"].items(), key=lambda kv: -kv[1])) or "-"
            lines.append(f"| {lang} | {m['requested']} | {m['accepted']} | {m['validation_pass_rate']} | "
                         f"{m.get('roundtrip_pass_rate', '-')} | {bands} | {reasons} |")
        lines.append("")
    for lang in sorted(set(by_lang) | set(dropped)):
        lines += [f"## {lang}", "", "| task | query | positive (start) | rt rank |", "|---|---|---|---|"]
        for r in by_lang.get(lang, [])[:per_language]:
            lines.append(f"| {r['task_type']} | {markdown_cell(r['query'])} | {markdown_cell(r['positive'], 160)} | "
                         f"{r['roundtrip_rank']} |")
        if dropped.get(lang):
            lines += ["", "Rejected:", "", "| reason | query | passage (start) | rt rank |", "|---|---|---|---|"]
            for r in dropped[lang]:
                lines.append(f"| {r['reason']} | {markdown_cell(r['query'], 200)} | "
                             f"{markdown_cell(r['target'], 160)} | {r.get('roundtrip_rank', '-')} |")
        lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
