"""Mined training rows for the train tests: two English datasets and two languages of synthetic rows."""

from __future__ import annotations


def rows(n_syn: int = 6) -> list[dict]:
    """Five rows of each English dataset (with a negative), ``n_syn`` synthetic rows per language (none)."""
    out = []
    for src in ("qed_nq", "fever_symmetric"):
        out += [{"id": f"{src}-{i}", "source": src, "lang": "en", "task_type": "qa", "query": f"q {src} {i}",
                 "positive": f"p {src} {i}", "negatives": [{"text": f"n {src} {i}", "score": 0.5}]} for i in range(5)]
    for lang in ("de", "zh"):
        out += [{"id": f"syn-{lang}-{i:06d}", "source": "synthetic", "lang": lang,
                 "task_type": "short_query" if i % 2 else "title", "query": f"q {lang} {i}",
                 "positive": f"p {lang} {i}", "negatives": []} for i in range(n_syn)]
    return out
