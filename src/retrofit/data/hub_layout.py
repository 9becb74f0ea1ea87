"""Local folders laid out like Hugging Face dataset repositories, so that the paper profile's hub code runs offline.

A hub dataset repository is a ``README.md`` whose YAML front matter lists ``dataset_info`` (each config's features and
splits) and ``configs`` (each config's ``data_files``: split -> path glob), beside parquet files per config and split
(``<config>/<split>-00000-of-00001.parquet``). ``datasets.load_dataset(folder, config, split=...)`` reads such a folder
through the same builder as the hub repository, so a rehearsal of the paper profile (``profiles/rehearsal.yaml``)
exercises :mod:`retrofit.data.hub_english` and the Wikipedia passage loader unchanged, with a folder where the profile
names a hub id.

:data:`HUB_ENGLISH` gives each of the paper profile's seven English collections the config, splits and column names
its dataset card lists (cards read on the Hub, revision noted), and the embedded dataset whose prepared rows stand in
for it. The stand-ins are small and are not the real data: the point is the layout and the code path. A triplet's
negative is the positive of the row ``len // 2`` places on, in the same source.

:func:`write_wikipedia` lays out ``wikimedia/wikipedia`` the same way: one config ``<date>.<lang>`` per language with
columns ``id``, ``url``, ``title`` and ``text``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from retrofit.data.english import ENGLISH_ROW
from retrofit.errors import InputError
from retrofit.io import read_jsonl

log = logging.getLogger(__name__)


class HubLayout(NamedTuple):
    """One hub dataset's layout, as its card gives it.

    Attributes:
        dataset: The hub id.
        config: The config the paper profile reads.
        columns: Its query, positive and (for a triplet) negative column names, in order.
        splits: Its splits.
        revision: The card's commit the layout was read from; ``None``: no card could be read (unverified).
        source: The embedded English dataset (``data/prepared/english/<source>.jsonl``) whose rows stand in for it.
    """

    dataset: str
    config: str
    columns: tuple[str, ...]
    splits: tuple[str, ...]
    revision: str | None
    source: str


#: The paper profile's English collections (``profiles/paper.yaml``'s ``data.hub_english``), by profile name.
HUB_ENGLISH: dict[str, HubLayout] = {
    "msmarco": HubLayout("sentence-transformers/msmarco-bm25", "triplet", ("query", "positive", "negative"),
                         ("train",), "d215805", "qed_nq"),
    # the card's only config is "pair" (no "default"); its question column was renamed "query"
    "natural_questions": HubLayout("sentence-transformers/natural-questions", "pair", ("query", "answer"),
                                   ("train",), "f9e894e", "qed_nq"),
    "hotpotqa": HubLayout("sentence-transformers/hotpotqa", "triplet", ("anchor", "positive", "negative"),
                          ("train",), "67030cc", "qed_nq"),
    # no card of sentence-transformers/fever could be read offline: laid out as its sibling triplet collections are
    "fever": HubLayout("sentence-transformers/fever", "triplet", ("anchor", "positive", "negative"), ("train",), None,
                       "fever_symmetric"),
    "quora_duplicates": HubLayout("sentence-transformers/quora-duplicates", "triplet",
                                  ("anchor", "positive", "negative"), ("train",), "dcd9ad6", "stsb_multi_mt"),
    # its held-out splits are "dev" and "test", not "validation"
    "all_nli": HubLayout("sentence-transformers/all-nli", "triplet", ("anchor", "positive", "negative"),
                         ("train", "dev", "test"), "cc6c526", "snli_via_esnli"),
    "s2orc": HubLayout("sentence-transformers/s2orc", "title-abstract-pair", ("title", "abstract"), ("train",),
                       "1940622", "scitldr"),
}

#: ``wikimedia/wikipedia``'s columns (every ``<date>.<lang>`` config, card revision ad5752b).
WIKIPEDIA_COLUMNS: tuple[str, ...] = ("id", "url", "title", "text")


def write_hub_dataset(folder: Path, configs: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
                      pretty_name: str) -> Path:
    """Write ``folder`` as a hub dataset repository: a README with ``dataset_info`` and ``configs``, and parquet.

    Args:
        folder: Created (an existing one is refused: nothing is overwritten).
        configs: ``{config: {split: rows}}``; every row of a config has the same string columns.
        pretty_name: The card's ``pretty_name``.

    Returns:
        ``folder``.

    Raises:
        InputError: ``folder`` exists, or a split has no rows or rows with other columns than the first.
    """
    from datasets import Dataset

    if folder.exists():
        raise InputError(f"{folder}: exists; a hub layout is written into a new folder only")
    info, entries = [], []
    for config, splits in configs.items():
        columns = None
        for split, rows in splits.items():
            if not rows or any(list(r) != list(columns or rows[0]) for r in rows):
                raise InputError(f"{pretty_name} {config}/{split}: no rows, or rows with different columns")
            columns = list(rows[0])
            path = folder / config / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            Dataset.from_list([dict(r) for r in rows]).to_parquet(str(path))
        info.append({"config_name": config, "features": [{"name": c, "dtype": "string"} for c in columns or []],
                     "splits": [{"name": s, "num_examples": len(r)} for s, r in splits.items()]})
        entries.append({"config_name": config,
                        "data_files": [{"split": s, "path": f"{config}/{s}-*"} for s in splits]})
    card = yaml.safe_dump({"pretty_name": pretty_name, "dataset_info": info, "configs": entries}, sort_keys=False)
    (folder / "README.md").write_text(f"---\n{card}---\n\nA local stand-in laid out like {pretty_name} "
                                      "(retrofit.data.hub_layout): small, not the real data.\n", encoding="utf-8")
    return folder


def english_rows(layout: HubLayout, prepared: Path, rows: int, part: int = 0) -> dict[str, list[dict[str, str]]]:
    """``{split: rows}`` in ``layout``'s columns from ``rows`` prepared rows of its stand-in source.

    ``part`` picks which ``rows`` of them (the first, the second, ...), so that collections standing in with the
    same source get disjoint rows (dedupe would otherwise drop all but one as exact duplicates). The rows are divided
    over the layout's splits, the first split taking the rest after the others' tenths.
    """
    source = read_jsonl(prepared / f"{layout.source}.jsonl", ENGLISH_ROW)[part * rows:(part + 1) * rows]
    if len(source) < 2:
        raise InputError(f"{prepared / layout.source}.jsonl: {len(source)} row(s); a stand-in needs at least 2")
    half = len(source) // 2
    out = [dict(zip(layout.columns, (r["query"], r["positive"], source[(i + half) % len(source)]["positive"]),
                    strict=False)) for i, r in enumerate(source)]
    held = max(1, len(out) // 10) if len(layout.splits) > 1 else 0
    parts, start = {}, 0
    for split in layout.splits[1:]:
        parts[split], start = out[start:start + held], start + held
    return {layout.splits[0]: out[start:], **parts}


def write_english(root: Path, prepared: Path, rows: int = 200) -> dict[str, Path]:
    """Every collection of :data:`HUB_ENGLISH` as a hub layout under ``root/<hub id>``, from ``prepared`` rows.

    Returns:
        ``{profile name: folder}``: what ``data.hub_english.<name>.dataset`` names in a rehearsal.
    """
    out = {}
    parts: dict[str, int] = {}
    for name, layout in HUB_ENGLISH.items():
        folder = root / layout.dataset
        part = parts[layout.source] = parts.get(layout.source, -1) + 1  # disjoint rows of a shared stand-in source
        write_hub_dataset(folder, {layout.config: english_rows(layout, prepared, rows, part)}, layout.dataset)
        out[name] = folder
        log.info("hub layout %s: %s %s (stand-in: %s)", name, layout.dataset, layout.config, layout.source)
    return out


def write_wikipedia(folder: Path, articles: Mapping[str, Sequence[Mapping[str, str]]], date: str = "20231101") -> Path:
    """``wikimedia/wikipedia`` laid out under ``folder``: config ``<date>.<lang>`` per language, split ``train``.

    Args:
        folder: Created.
        articles: ``{lang: [{"id", "url", "title", "text"}, ...]}``.
        date: The dump date in the config names.
    """
    configs = {f"{date}.{lang}": {"train": [{c: str(a[c]) for c in WIKIPEDIA_COLUMNS} for a in rows]}
               for lang, rows in articles.items()}
    return write_hub_dataset(folder, configs, "wikimedia/wikipedia")
