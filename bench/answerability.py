"""Are the accepted queries answerable from their passage? A read, not a proxy (issue 13, Done-when 3).

The round-trip filter checks that the base model finds a query's passage; it cannot check that the passage answers
the query ("Was ist ein "Cofer" oder einen "Bar"?" finds its pub-revenue passage on a shared keyword). Only reading
can. ``reports/bench/answerability_labels.json`` holds one reader's label for each of the first 24 accepted rows of
the generate stage in de, zh, hi and th (the languages the issue names), and for each query that best-of-n sampling
adds (``bench/best_of.py``), and for each valid query that a pivot through English writes (``bench/pivot.py``, sets
``pivot:<method>``):

- **yes**: a question the passage answers, a title that fits it, or a paraphrase that says what the sentence says;
- **partial**: on the passage's topic, but the passage does not answer it (a shared keyword, an invented fact);
- **no**: unrelated, garbled, or contradicting the passage.

Each label carries an English gloss of the query and of its passage, so a reader of neither language can check it.
Labels are keyed by row id and the sha256 of the query, so a label whose row changed (a new generator, prompt or
filter) is reported as stale instead of being counted, and a row that should have been read and has no label is
reported as unread. This script tallies the labels against the current
``data/generated/examples.jsonl``, ``reports/bench/best_of.json`` and ``reports/bench/pivot.json``, and writes
``reports/bench/answerability.md``;
it changes no pipeline output.

Usage::

    python bench/answerability.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

from retrofit.config import load_params
from retrofit.generate.pipeline import EXAMPLE_ROW
from retrofit.io import read_jsonl

LABELS = ("yes", "partial", "no")
#: Accepted rows read per language: the first of each, in plan order.
FIRST = 24


def query_hash(query: str) -> str:
    """The label file's key for a query: the first 16 hex digits of its UTF-8 sha256."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()[:16]


def current_queries(examples: Path, best_of: Path, pivot: Path | None = None) -> dict[tuple[str, str], dict]:
    """``(set, id)`` -> ``{"query", "rank"}`` for every row a label can name: stage rows, best-of additions and
    valid pivot queries."""
    out = {("stage", r["id"]): {"query": r["query"], "rank": r["roundtrip_rank"]}
           for r in read_jsonl(examples, EXAMPLE_ROW)}
    if best_of.is_file():
        result = json.loads(best_of.read_text(encoding="utf-8"))
        k = result["settings"]["roundtrip_top_k"]
        for lang, m in result["languages"].items():
            for r in m["rows"]:
                best, greedy = r["best"], r["greedy"]
                if best and best["rank"] < k and best["sample"] and not (greedy and greedy["rank"] < k):
                    out[("best_of", f"plan-{lang}-{r['index']}")] = {"query": best["query"], "rank": best["rank"]}
    if pivot is not None and pivot.is_file():
        for rows in json.loads(pivot.read_text(encoding="utf-8"))["languages"].values():
            for r in rows:
                if r["reason"] is None:  # valid: validation passed, so the round trip ranked it
                    out[(f"pivot:{r['method']}", r["id"])] = {"query": r["query"], "rank": r["rank"]}
    return out


def tally(labels: list[dict], current: dict[tuple[str, str], dict]) -> tuple[list[dict], list[dict]]:
    """Split ``labels`` into those whose row still holds the labelled query (with its text and rank) and stale ones.

    Raises:
        ValueError: A label outside :data:`LABELS`.
    """
    live, stale = [], []
    for lab in labels:
        if lab["label"] not in LABELS:
            raise ValueError(f"label {lab['label']!r} of {lab['id']} is not one of {LABELS}")
        row = current.get((lab["set"], lab["id"]))
        if row is None or query_hash(row["query"]) != lab["query_sha256"]:
            stale.append(lab)
        else:
            live.append({**lab, **row})
    return live, stale


def unread(live: list[dict], current: dict[tuple[str, str], dict], first: int = FIRST) -> list[str]:
    """What should have been read and was not: every best-of-n addition and valid pivot query, and the first
    ``first`` accepted rows of each language that has stage labels, without a live label."""
    read = {(lab["set"], lab["id"]) for lab in live}
    langs = {lab["lang"] for lab in live if lab["set"] == "stage"}
    want = [key for key in current if key[0] == "best_of" or key[0].startswith("pivot:")]
    for lang in sorted(langs):
        ids = sorted(i for s, i in current if s == "stage" and i.startswith(f"syn-{lang}-"))  # plan order
        want += [("stage", i) for i in ids[:first]]
    return [i for key in want if key not in read for i in [key[1]]]


def counts_table(live: list[dict], which: str, below: int | None = None) -> list[str]:
    """Per-language yes / partial / no counts of one label set, with the share answerable; ``below``: only rows
    whose round-trip rank is below it (what the stage would accept)."""
    by_lang: dict[str, Counter] = {}
    for lab in live:
        if lab["set"] == which and (below is None or lab["rank"] < below):
            by_lang.setdefault(lab["lang"], Counter())[lab["label"]] += 1
    lines = ["| language | read | yes | partial | no | answerable |", "|---|---:|---:|---:|---:|---:|"]
    total: Counter = Counter()
    for lang, c in by_lang.items():
        total += c
        n = sum(c.values())
        lines.append(f"| {lang} | {n} | {c['yes']} | {c['partial']} | {c['no']} | {c['yes'] / n:.0%} |")
    n = sum(total.values())
    if n:
        lines.append(f"| **all** | {n} | {total['yes']} | {total['partial']} | {total['no']} | "
                     f"{total['yes'] / n:.0%} |")
    return lines


def write_markdown(doc: dict, live: list[dict], stale: list[dict], missing: list[str], out: Path, k: int) -> None:
    """``answerability.md``: the criterion, the tallies, the labels by round-trip rank, then every labelled row;
    ``k`` is ``generate.roundtrip_top_k``, the rank the stage accepts below."""
    crit = doc["criterion"]
    lines = ["# Are the accepted queries answerable? (`bench/answerability.py`)", "",
             (f"Read by {doc['reader']}. Labels: **yes**, {crit['yes']}; **partial**, {crit['partial']}; **no**, "
              f"{crit['no']}. Labels in `reports/bench/answerability_labels.json`, each with an English gloss."), "",
             "## The generate stage's accepted rows (the first of each language)", ""]
    lines += counts_table(live, "stage") + [""]
    ranks: dict[str, Counter] = {"0": Counter(), "1-2": Counter()}
    for lab in live:
        if lab["set"] == "stage":
            ranks["0" if lab["rank"] == 0 else "1-2"][lab["label"]] += 1
    lines += ["By round-trip rank (rank 0 is not answerability):", "",
              "| rank | yes | partial | no |", "|---|---:|---:|---:|"]
    lines += [f"| {r} | {c['yes']} | {c['partial']} | {c['no']} |" for r, c in ranks.items()] + [""]
    lines += ["## Queries best-of-n adds (`reports/bench/best_of.md`)", ""]
    lines += counts_table(live, "best_of") + [""]
    pivots = sorted({lab["set"] for lab in live if lab["set"].startswith("pivot:")})
    if pivots:
        lines += ["## Through English: valid queries of `bench/pivot.py` (`reports/bench/pivot.md`)", "",
                  (f"Every valid query, then only those the stage would accept (round-trip rank below {k}); "
                   "`qwen_direct` is Qwen asked in the language itself."), ""]
        for which in pivots:
            lines += [f"### `{which}`", "", "All valid:", ""] + counts_table(live, which)
            lines += ["", f"Accepted (rank below {k}):", ""] + counts_table(live, which, k) + [""]
    if stale:
        lines += [f"**{len(stale)} labels are stale** (their row changed since it was read): "
                  + ", ".join(lab["id"] for lab in stale), ""]
    if missing:
        lines += [f"**{len(missing)} rows are unread**: " + ", ".join(missing), ""]
    lines += ["## Every label", "", "| set | id | rt rank | label | query (start) | gloss |", "|---|---|---:|---|---|---|"]
    for lab in live:
        q = lab["query"] if len(lab["query"]) <= 80 else lab["query"][:80] + "…"
        cells = [lab["set"], lab["id"], str(lab["rank"]), lab["label"], q, lab["gloss"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, default=Path("reports/bench/answerability_labels.json"))
    ap.add_argument("--examples", type=Path, default=Path("data/generated/examples.jsonl"))
    ap.add_argument("--best-of", type=Path, default=Path("reports/bench/best_of.json"))
    ap.add_argument("--pivot", type=Path, default=Path("reports/bench/pivot.json"))
    ap.add_argument("--out", type=Path, default=Path("reports/bench/answerability.md"))
    args = ap.parse_args()
    doc = json.loads(args.labels.read_text(encoding="utf-8"))
    current = current_queries(args.examples, args.best_of, args.pivot)
    live, stale = tally(doc["labels"], current)
    missing = unread(live, current)
    write_markdown(doc, live, stale, missing, args.out, load_params("params.yaml").generate.roundtrip_top_k)
    print(f"{len(live)} labels counted, {len(stale)} stale, {len(missing)} rows unread; wrote {args.out}")


if __name__ == "__main__":
    main()
