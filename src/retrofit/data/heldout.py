"""Every text of every evaluation task: what no training text may overlap (the decontamination set).

The prepare stage writes ``data/prepared/heldout.jsonl``, one row per text::

    {"id": "tatoeba-fra-eng-00017-fra",   # unique: evaluation, subset, row and side
     "eval": "Tatoeba",                     # the evaluation the text belongs to
     "text": "..."}

The dedupe stage drops every training row whose query, positive or negative overlaps one of them, and the English
hard-negative pool (:mod:`retrofit.data.english_pool`) drops every such passage
(:class:`retrofit.filter.decontaminate.ContaminationIndex`). The set does not depend on which evaluations
``params.yaml`` switches on: a text that some evaluation of this project can score never enters training.

Sources (files of ``assets/sources.json``, fetched into ``data/raw``):

- **held-out XQuAD** (the primary metric): the test articles' paragraphs and questions (``data/prepared/xquad``);
- **the official mteb tasks** (:mod:`retrofit.eval.official`): Tatoeba (every language file, both sides), Belebele
  (passages and questions), LegalBench (bill titles and summaries). ``XQuADRetrieval`` is not in the set: its
  corpus is the whole of XQuAD, the generation pool included, and it scores the base model only;
- **the tasks beyond retrieval**: SIB-200 (every split of every language: clustering uses all three, and
  classification fits on train), the STS-B test split of every stsb_multi_mt language (``STSBenchmarkMultilingualSTS``),
  KorSTS (test) and JSTS (validation).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from retrofit.data.sources import DataError
from retrofit.data.xquad import PARAGRAPH_ROW, QUESTION_ROW
from retrofit.io import read_jsonl, write_jsonl
from retrofit.schema import RowSchema

#: The contract of ``heldout.jsonl`` (module docstring), checked by the stages that read it.
HELDOUT_ROW = RowSchema("held-out evaluation text", "prepare", {"id": (str,), "eval": (str,), "text": (str,)},
                        nonempty=("id", "eval"))


def _table(path: Path, delimiter: str) -> list[dict[str, str]]:
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def _need(folder: Path, pattern: str, what: str) -> list[Path]:
    files = sorted(folder.glob(pattern))
    if not files:
        raise DataError(f"{folder}/{pattern}: no {what} file; run the fetch stage (or set RETROFIT_DATA_MIRROR)")
    return files


def _tatoeba(raw: Path) -> Iterator[tuple[str, str, str]]:
    for path in _need(raw / "tatoeba", "tatoeba.*-eng.*", "Tatoeba"):
        pair, side = path.name.split(".")[1:3]
        for i, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
            yield f"tatoeba-{pair}-{i:05d}-{side}", "Tatoeba", line


def _belebele(raw: Path) -> Iterator[tuple[str, str, str]]:
    for path in _need(raw / "belebele", "*.jsonl", "Belebele"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            try:
                rec = json.loads(line)
                questions = [item["question"] for item in rec["items"]]
                passage = rec["text"]
            except (KeyError, TypeError, json.JSONDecodeError) as exc:
                raise DataError(f"{path}: line {i + 1}: {type(exc).__name__}: {exc}") from None
            yield f"belebele-{path.stem}-{i:04d}-p", "BelebeleRetrieval", passage
            for k, q in enumerate(questions):
                yield f"belebele-{path.stem}-{i:04d}-q{k}", "BelebeleRetrieval", q


def _legalbench(raw: Path) -> Iterator[tuple[str, str, str]]:
    for i, row in enumerate(_table(raw / "legalbench_corporate_lobbying" / "test.tsv", "\t")):
        yield f"legalbench-{i:04d}-title", "LegalBenchCorporateLobbying", row["bill_title"]
        yield f"legalbench-{i:04d}-summary", "LegalBenchCorporateLobbying", row["bill_summary"]


def _sib200(raw: Path) -> Iterator[tuple[str, str, str]]:
    for path in _need(raw / "sib200", "*__*.tsv", "SIB-200"):
        for row in _table(path, "\t"):
            yield f"sib200-{path.stem}-{row['index_id']}", "SIB200", row["text"]


def _sts(raw: Path) -> Iterator[tuple[str, str, str]]:
    for path in _need(raw / "stsb_multi_mt", "data__stsb-*-test.csv", "STS-B test"):
        lang = path.stem.split("-")[1]
        with path.open(encoding="utf-8", newline="") as fh:
            for i, rec in enumerate(csv.reader(fh)):
                for side, text in zip("12", rec[:2], strict=False):
                    yield f"stsb-{lang}-test-{i:05d}-{side}", "STSBenchmarkMultilingualSTS", text
    for i, row in enumerate(_table(raw / "korsts" / "KorSTS__sts-test.tsv", "\t")):
        for side in ("1", "2"):
            if row.get(f"sentence{side}"):
                yield f"korsts-test-{i:05d}-{side}", "KorSTS", row[f"sentence{side}"]
    jsts = raw / "jsts" / "datasets__jsts-v1.3__valid-v1.3.json"
    for i, line in enumerate(jsts.read_text(encoding="utf-8").splitlines()):
        rec = json.loads(line)
        for side in ("1", "2"):
            yield f"jsts-valid-{i:05d}-{side}", "JSTS", rec[f"sentence{side}"]


def xquad_heldout(prepared_xquad: Path) -> Iterator[tuple[str, str, str]]:
    """``(id, eval, text)`` of every held-out XQuAD paragraph and question (the test articles)."""
    for kind, name, schema in (("p", "paragraphs", PARAGRAPH_ROW), ("q", "questions", QUESTION_ROW)):
        for r in read_jsonl(prepared_xquad / f"{name}.jsonl", schema):
            if r["split"] == "test":
                yield f"xquad-{r['lang']}-{kind}-{r['id']}", "xquad_heldout", r["text"]


#: Every source of held-out text, in the order the file lists them.
_SOURCES = (_tatoeba, _belebele, _legalbench, _sib200, _sts)


def heldout_rows(raw_dir: str | Path, prepared_xquad: str | Path) -> list[dict[str, Any]]:
    """Every evaluation text, as rows of :data:`HELDOUT_ROW` (empty texts skipped).

    Args:
        raw_dir: The raw-data directory (``data/raw``) or a mirror with the same layout.
        prepared_xquad: ``data/prepared/xquad`` (its test articles are the held-out XQuAD).

    Returns:
        The rows, held-out XQuAD first.

    Raises:
        DataError: A source file is missing or malformed; the message names it.
    """
    raw = Path(raw_dir)
    rows = []
    for source in (lambda: xquad_heldout(Path(prepared_xquad)), *(lambda s=s: s(raw) for s in _SOURCES)):
        try:
            rows += [{"id": i, "eval": e, "text": t} for i, e, t in source() if t.strip()]
        except (KeyError, ValueError) as exc:
            raise DataError(f"{raw}: a held-out evaluation file is malformed ({type(exc).__name__}: {exc}); "
                            "re-fetch the raw data") from None
    return rows


def prepare_heldout(raw_dir: str | Path, prepared_xquad: str | Path, out: str | Path) -> dict[str, int]:
    """Write ``heldout.jsonl`` (module docstring) and return its row count per evaluation."""
    rows = heldout_rows(raw_dir, prepared_xquad)
    write_jsonl(out, rows)
    return dict(sorted(Counter(r["eval"] for r in rows).items()))


def eval_texts(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(id, text)`` pairs for :class:`~retrofit.filter.decontaminate.ContaminationIndex`."""
    return [(r["id"], r["text"]) for r in rows]
