"""The English task datasets as (query, positive, negative) pairs.

Six small public datasets add task variety to the synthetic multilingual data. Each becomes one file,
``<out_dir>/<source>.jsonl``, with one row per pair::

    {"id": "snli_via_esnli-dev-00001",  # unique in the file: source, source split, source row (see below)
     "source": "snli_via_esnli",         # the dataset name in assets/sources.json
     "task_type": "nli",                 # qa | nli | fact | sci_claim | title | sts (fixed per source)
     "lang": "en",                       # ISO 639-1: "en" (only the paraphrase exemplars, below, have others)
     "query": "...",
     "positive": "...",
     "negative": "..." | null}           # a hard negative where the source provides one, else null

How each source is read (``raw_dir`` is a directory from :func:`retrofit.data.sources.fetch`, or the mirror):

- ``qed_nq`` (``qa``): Natural Questions question -> its Wikipedia paragraph (``paragraph_text``, detokenized).
  Id ``qed_nq-<example_id>``.
- ``snli_via_esnli`` (``nli``): SNLI dev and test via e-SNLI; each *entailment* premise -> hypothesis, with the
  first *contradiction* hypothesis of the same premise in the same split as the negative (null if none). Other
  labels are dropped (``not_entailment``). Id ``snli_via_esnli-<split>-<line>`` (0-based line in the split).
- ``fever_symmetric`` (``fact``): claim -> evidence sentence, both labels: refuting evidence is still the text a
  fact-checker must retrieve for the claim. Id ``fever_symmetric-<split>-<id>``.
- ``citation_integrity`` (``sci_claim``): a citing sentence (citation markers such as ``[<|cit|>]`` removed) ->
  the cited abstract (its sentences joined by spaces). Claims whose cited document has no annotated evidence (not
  enough information) are dropped (``no_evidence``); SUPPORT and REFUTE are both kept, as for FEVER. Id
  ``citation_integrity-<split>-<claim id>-<doc id>``.
- ``scitldr`` (``title``): paper title -> abstract and each TLDR -> abstract, so one abstract is the positive of
  several rows (ids ``scitldr-<split>-<paper_id>-title`` and ``...-tldr<k>``; filter on the suffix to keep one kind).
- ``stsb_multi_mt`` (``sts``): the **English train split only**; sentence pairs with score >= 4.0
  (``STS_MIN_SCORE``) as paraphrases, sentence1 -> sentence2, others dropped (``score_below_4``). Id
  ``stsb_multi_mt-<lang>-<split>-<line>`` (0-based CSV row). The other ten languages are machine translations of
  the same pairs, and every test split is an evaluation (mteb's ``STSBenchmarkMultilingualSTS``), so neither is
  English task data.

The generator's few-shot ``paraphrase`` exemplars are STS-B pairs too, in every language: :func:`prepare_exemplars`
writes them, from the train and dev splits only (never test), to ``exemplars/stsb_paraphrase.jsonl`` in the same
row schema. They steer the generator; they are not training rows.

Text that the sources ship tokenized (QED paragraphs, SNLI, FEVER) goes through :func:`detokenize`. Every source
then drops, and counts, rows with an empty query or positive (``empty_text``) and exact repeats of
``(lang, query, positive)`` (``duplicate_pair``).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from retrofit.data.sources import DataError, raw_file
from retrofit.io import atomic_dir, write_jsonl
from retrofit.schema import ENGLISH_SOURCES, ENGLISH_TASK_TYPES, RowSchema

log = logging.getLogger(__name__)

#: The contract of ``<source>.jsonl`` (module docstring), checked by the stages that read it.
ENGLISH_ROW = RowSchema("English task row", "prepare", {
    "id": (str,), "source": (str,), "task_type": (str,), "lang": (str,), "query": (str,), "positive": (str,),
    "negative": (str, type(None)),
}, nonempty=("id", "source", "query", "positive"))

#: STS-B pairs at or above this score (0-5) count as paraphrases; 4 = "mostly equivalent" in the STS-B guidelines.
STS_MIN_SCORE = 4.0

#: Languages of stsb_multi_mt (English original plus DeepL translations).
STSB_LANGUAGES: tuple[str, ...] = ("de", "en", "es", "fr", "it", "ja", "nl", "pl", "pt", "ru", "zh")

_SPLITS = ("train", "dev", "test")

Drop = Callable[[str], None]

# ---------------------------------------------------------------------------------------------------------------
# Text clean-up
# ---------------------------------------------------------------------------------------------------------------

_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_ATTACH_LEFT = frozenset({",", ".", ";", ":", "!", "?", "%", ")", "]", "}", "...", "…"})
_ATTACH_RIGHT = frozenset({"(", "[", "{", "$"})
_CLITICS = frozenset({"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"})


def detokenize(text: str) -> str:
    """Undo Penn-Treebank-style tokenization, lightly and deterministically.

    Rules: ``-LRB-``/``-RRB-`` (and square/curly variants) become brackets; ````` and ``''`` become ``"``; no space
    before ``, . ; : ! ? % ) ] }`` and clitics (``'s``, ``n't``, ...); no space after ``( [ { $`` and an opening
    quote; a lone ``-`` between two alphanumeric tokens is a hyphen (``t - shirt`` -> ``t-shirt``); a lone ``'``
    after a word ending in ``s`` is a possessive, otherwise it opens or closes a single quote. ``--`` stays as is.
    Whitespace is normalised to single spaces.

    Args:
        text: Tokenized text.

    Returns:
        The detokenized text.
    """
    tokens = text.split()
    out: list[str] = []
    glue = True  # no space before the next token
    dq_open = sq_open = False
    for i, tok in enumerate(tokens):
        prev = out[-1] if out else ""
        if tok in ("``", "''", '"'):
            opening = not dq_open and tok != "''"
            dq_open = opening
            tok, kind = '"', ("right" if opening else "left")
        elif tok == "`":
            sq_open, tok, kind = True, "'", "right"
        elif tok == "'":
            if sq_open:
                sq_open, kind = False, "left"
            elif prev[-1:] in ("s", "S"):
                kind = "left"
            else:
                sq_open, kind = True, "right"
        elif tok in _PTB_BRACKETS:
            tok = _PTB_BRACKETS[tok]
            kind = "right" if tok in _ATTACH_RIGHT else "left"
        elif tok in _ATTACH_LEFT or tok.lower() in _CLITICS:
            kind = "left"
        elif tok in _ATTACH_RIGHT:
            kind = "right"
        elif tok == "-" and prev[-1:].isalnum() and i + 1 < len(tokens) and tokens[i + 1][:1].isalnum():
            kind = "both"
        else:
            kind = "none"
        if out and not glue and kind not in ("left", "both"):
            out.append(" ")
        out.append(tok)
        glue = kind in ("right", "both")
    return "".join(out)


_CITATION_MARK = re.compile(r"<\|[a-z_]+\|>")
_BRACKET_GROUP = re.compile(r"\s*[\[(]([^\[\]()]*)[\])]")
_ONLY_REFS = re.compile(r"[\d\s,;\-\u2013]*")  # digits, separators, hyphen, en dash


def clean_citation_markers(text: str) -> str:
    """Remove Citation-Integrity citation markers (``<|cit|>``, ``<|multi_cit|>``, ``<|other_cit|>``).

    A bracketed group that holds only markers and reference numbers (``[<|multi_cit|>,7]``, ``(<|other_cit|>)``)
    goes with its leading space; other markers are removed alone.

    Args:
        text: A citing sentence.

    Returns:
        The sentence without markers, whitespace normalised.
    """

    def group(m: re.Match[str]) -> str:
        inner = m.group(1)
        if _CITATION_MARK.search(inner) and _ONLY_REFS.fullmatch(_CITATION_MARK.sub("", inner)):
            return ""
        return m.group(0)

    text = _BRACKET_GROUP.sub(group, text)
    text = re.sub(r"\s*" + _CITATION_MARK.pattern, "", text)
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------------------------
# Readers: each yields candidate rows and reports filtered records through ``drop(reason)``
# ---------------------------------------------------------------------------------------------------------------


def _pair(
    id_: str, source: str, query: str, positive: str, negative: str | None = None, lang: str = "en"
) -> dict[str, Any]:
    return {
        "id": id_,
        "source": source,
        "task_type": ENGLISH_TASK_TYPES[source],
        "lang": lang,
        "query": query.strip(),
        "positive": positive.strip(),
        "negative": negative.strip() if negative and negative.strip() else None,
    }


def _jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (``file:line``, row) for each non-empty line, with a DataError naming the line on bad JSON."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg}); re-fetch the raw data") from exc
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def _field(row: dict[str, Any], key: str, where: str, typ: type | tuple[type, ...] = str) -> Any:
    if key not in row:
        raise DataError(f"{where}: missing key {key!r}; re-fetch the raw data")
    if not isinstance(row[key], typ):
        raise DataError(f"{where}: key {key!r} has type {type(row[key]).__name__}; re-fetch the raw data")
    return row[key]


def _lines(path: Path) -> list[str]:
    """Lines split on ``\\n`` only (line-aligned files must not split on other separators)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _read_qed(raw_dir: Path, drop: Drop) -> Iterator[dict[str, Any]]:
    for where, row in _jsonl(raw_file(raw_dir, "qed_nq/qed-dev.jsonlines")):
        eid = _field(row, "example_id", where, (int, str))
        question = _field(row, "question_text", where)
        paragraph = detokenize(_field(row, "paragraph_text", where))
        yield _pair(f"qed_nq-{eid}", "qed_nq", question, paragraph)


def _read_snli(raw_dir: Path, drop: Drop) -> Iterator[dict[str, Any]]:
    labels_ok = {"entailment", "neutral", "contradiction"}
    for split in ("dev", "test"):
        paths = {k: raw_file(raw_dir, f"snli_via_esnli/dataset__eSNLI__{k}.{split}") for k in ("s1", "s2", "labels")}
        cols = {k: _lines(p) for k, p in paths.items()}
        n = len(cols["labels"])
        for k, lines in cols.items():
            if len(lines) != n:
                raise DataError(
                    f"{paths[k]}: {len(lines)} lines but {paths['labels']} has {n}; the files must be line-aligned, "
                    f"re-fetch the raw data"
                )
        contradiction: dict[str, str] = {}
        for i in range(n):
            label = cols["labels"][i].strip()
            if label not in labels_ok and label != "-":
                raise DataError(
                    f"{paths['labels']}:{i + 1}: unknown label {label!r}; expected one of {sorted(labels_ok)}"
                )
            if label == "contradiction":
                contradiction.setdefault(cols["s1"][i].strip(), cols["s2"][i])
        for i in range(n):
            label = cols["labels"][i].strip()
            if label != "entailment":
                drop("not_entailment" if label != "-" else "no_gold_label")
                continue
            premise = cols["s1"][i].strip()
            negative = contradiction.get(premise)
            yield _pair(
                f"snli_via_esnli-{split}-{i:05d}",
                "snli_via_esnli",
                detokenize(premise),
                detokenize(cols["s2"][i]),
                detokenize(negative) if negative is not None else None,
            )


def _read_fever(raw_dir: Path, drop: Drop) -> Iterator[dict[str, Any]]:
    for split in ("dev", "test"):
        path = raw_file(raw_dir, f"fever_symmetric/symmetric_v0.2__fever_symmetric_{split}.jsonl")
        for where, row in _jsonl(path):
            rid = _field(row, "id", where, (int, str))
            claim = detokenize(_field(row, "claim", where))
            evidence = detokenize(_field(row, "evidence", where))
            yield _pair(f"fever_symmetric-{split}-{rid}", "fever_symmetric", claim, evidence)


def _read_citint(raw_dir: Path, drop: Drop) -> Iterator[dict[str, Any]]:
    corpus: dict[str, str] = {}
    for where, row in _jsonl(raw_file(raw_dir, "citation_integrity/data__citint__corpus.jsonl")):
        doc_id = str(_field(row, "doc_id", where, (int, str)))
        abstract = _field(row, "abstract", where, list)
        corpus[doc_id] = " ".join(s.strip() for s in abstract if isinstance(s, str) and s.strip())
    for split in _SPLITS:
        for where, row in _jsonl(raw_file(raw_dir, f"citation_integrity/data__citint__claims_{split}.jsonl")):
            cid = _field(row, "id", where, (int, str))
            claim = clean_citation_markers(_field(row, "claim", where))
            evidence = _field(row, "evidence", where, dict)
            for doc in _field(row, "cited_doc_ids", where, list):
                doc = str(doc)
                if not evidence.get(doc):
                    drop("no_evidence")
                elif doc not in corpus:
                    drop("missing_doc")
                else:
                    yield _pair(f"citation_integrity-{split}-{cid}-{doc}", "citation_integrity", claim, corpus[doc])


def _read_scitldr(raw_dir: Path, drop: Drop) -> Iterator[dict[str, Any]]:
    for split in _SPLITS:
        for where, row in _jsonl(raw_file(raw_dir, f"scitldr/SciTLDR-Data__SciTLDR-A__{split}.jsonl")):
            pid = _field(row, "paper_id", where)
            abstract = " ".join(s.strip() for s in _field(row, "source", where, list) if isinstance(s, str))
            yield _pair(f"scitldr-{split}-{pid}-title", "scitldr", _field(row, "title", where), abstract)
            for k, tldr in enumerate(_field(row, "target", where, list)):
                if not isinstance(tldr, str):
                    raise DataError(f"{where}: target[{k}] is not a string; re-fetch the raw data")
                yield _pair(f"scitldr-{split}-{pid}-tldr{k}", "scitldr", tldr, abstract)


def _read_stsb(raw_dir: Path, drop: Drop, languages: Sequence[str] = ("en",),
               splits: Sequence[str] = ("train",)) -> Iterator[dict[str, Any]]:
    for lang in languages:
        for split in splits:
            path = raw_file(raw_dir, f"stsb_multi_mt/data__stsb-{lang}-{split}.csv")
            with path.open(encoding="utf-8", newline="") as fh:
                for i, rec in enumerate(csv.reader(fh)):
                    where = f"{path}: row {i + 1}"
                    if len(rec) != 3:
                        raise DataError(f"{where}: expected 3 fields (sentence1, sentence2, score), got {len(rec)}")
                    try:
                        score = float(rec[2])
                    except ValueError:
                        raise DataError(f"{where}: score {rec[2]!r} is not a number") from None
                    if not 0.0 <= score <= 5.0:
                        raise DataError(f"{where}: score {score} is outside 0-5")
                    if score < STS_MIN_SCORE:
                        drop("score_below_4")
                        continue
                    yield _pair(f"stsb_multi_mt-{lang}-{split}-{i:05d}", "stsb_multi_mt", rec[0], rec[1], lang=lang)


_READERS: dict[str, Callable[[Path, Drop], Iterator[dict[str, Any]]]] = {
    "qed_nq": _read_qed,
    "snli_via_esnli": _read_snli,
    "fever_symmetric": _read_fever,
    "citation_integrity": _read_citint,
    "scitldr": _read_scitldr,
    "stsb_multi_mt": _read_stsb,
}


def build_pairs(raw_dir: str | Path, source: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read one English task source into pair rows, with its drop counts.

    Args:
        raw_dir: A raw-data directory from :func:`retrofit.data.sources.fetch` (or the mirror).
        source: One of :data:`~retrofit.schema.ENGLISH_SOURCES`.

    Returns:
        ``(rows, counts)`` where ``rows`` follow the module schema and ``counts`` is ``{"task_type", "candidates",
        "written", "dropped": {reason: n}, "with_negative", "per_lang": {lang: n}}``; ``candidates`` counts the
        pairs built before the empty-text and duplicate filters, and ``dropped`` also holds records filtered
        before becoming a pair (``not_entailment``, ``no_evidence``, ``score_below_4``, ...).

    Raises:
        ValueError: Unknown source.
        DataError: A file is missing or malformed (the message names file and line), or two rows share an id.
    """
    if source not in _READERS:
        raise ValueError(f"unknown English source {source!r}; choose from {list(ENGLISH_SOURCES)}")
    dropped: Counter[str] = Counter()
    rows, candidates = _distinct_pairs(source, _READERS[source](Path(raw_dir), lambda r: dropped.update([r])), dropped)
    counts = {
        "task_type": ENGLISH_TASK_TYPES[source],
        "candidates": candidates,
        "written": len(rows),
        "dropped": dict(sorted(dropped.items())),
        "with_negative": sum(r["negative"] is not None for r in rows),
        "per_lang": dict(sorted(Counter(r["lang"] for r in rows).items())),
    }
    return rows, counts


def _distinct_pairs(source: str, pairs: Iterable[dict[str, Any]],
                    dropped: Counter[str]) -> tuple[list[dict[str, Any]], int]:
    """The pairs without empty texts and exact ``(lang, query, positive)`` repeats (counted in ``dropped``), and
    the number of candidates read."""
    rows: list[dict[str, Any]] = []
    ids: set[str] = set()
    seen: set[tuple[str, str, str]] = set()
    candidates = 0
    for row in pairs:
        candidates += 1
        if row["id"] in ids:
            raise DataError(f"{source}: id {row['id']!r} occurs twice in the raw data; re-fetch the raw data")
        ids.add(row["id"])
        if not row["query"] or not row["positive"]:
            dropped["empty_text"] += 1
            continue
        key = (row["lang"], row["query"], row["positive"])
        if key in seen:
            dropped["duplicate_pair"] += 1
            continue
        seen.add(key)
        rows.append(row)
    return rows, candidates


def prepare_exemplars(raw_dir: str | Path, out: str | Path) -> int:
    """Write the generator's ``paraphrase`` exemplars: STS-B pairs scored >= 4 in every stsb_multi_mt language,
    train and dev splits (module docstring). Returns the number of rows."""
    dropped: Counter[str] = Counter()
    pairs = _read_stsb(Path(raw_dir), lambda r: dropped.update([r]), STSB_LANGUAGES, ("train", "dev"))
    rows, _ = _distinct_pairs("stsb_multi_mt", pairs, dropped)
    return write_jsonl(out, rows)


def prepare_english(raw_dir: str | Path, out_dir: str | Path, sources: list[str] | None = None) -> dict[str, Any]:
    """Write every English task source as pairs, one ``<source>.jsonl`` each.

    Args:
        raw_dir: A raw-data directory from :func:`retrofit.data.sources.fetch` (or the mirror).
        out_dir: Output directory, rewritten atomically (schema in the module docstring).
        sources: Which sources to prepare (default: all of :data:`~retrofit.schema.ENGLISH_SOURCES`).

    Returns:
        ``{source: counts}`` as in :func:`build_pairs`, plus ``"total": {"written", "per_task_type": {...}}``.

    Raises:
        ValueError: An unknown or repeated source.
        DataError: A raw file is missing or malformed.
    """
    sources = list(ENGLISH_SOURCES) if sources is None else list(sources)
    unknown = [s for s in sources if s not in ENGLISH_TASK_TYPES]
    if unknown:
        raise ValueError(f"sources: unknown English source(s) {unknown}; choose from {list(ENGLISH_SOURCES)}")
    if len(set(sources)) != len(sources):
        raise ValueError(f"sources: repeated entries in {sources}")
    built = {source: build_pairs(raw_dir, source) for source in sources}
    with atomic_dir(out_dir) as tmp:
        for source, (rows, _) in built.items():
            write_jsonl(tmp / f"{source}.jsonl", rows)
    counts: dict[str, Any] = {source: c for source, (_, c) in built.items()}
    for source, c in counts.items():
        log.info("english %s: %d written, dropped %s", source, c["written"], c["dropped"])
    counts["total"] = totals(counts)
    return counts


def totals(counts: Mapping[str, Any]) -> dict[str, Any]:
    """``{"written", "per_task_type"}`` over the per-source counts (any ``"total"`` entry is ignored)."""
    per_task: Counter[str] = Counter()
    for source, c in counts.items():
        if source != "total":
            per_task[c["task_type"]] += c["written"]
    return {"written": sum(per_task.values()), "per_task_type": dict(sorted(per_task.items()))}
