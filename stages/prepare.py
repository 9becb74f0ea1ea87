"""Stage ``prepare``: parse the raw files into the JSONL contracts the rest of the pipeline reads.

- ``data/prepared/xquad/``: paragraphs and questions, split by article into ``train`` (generation pool) and
  ``test`` (held out for evaluation); schema in :mod:`retrofit.data.xquad`;
- ``data/prepared/ntrex/``: NTREX-128 news paragraphs, a second generation source; :mod:`retrofit.data.ntrex`;
- ``data/prepared/english/``: the English task datasets as pairs, one ``<source>.jsonl`` each (schema in
  :mod:`retrofit.data.english`): the embedded ``data.english`` plus any ``data.hub_english`` datasets
  (:func:`retrofit.data.hub_english.prepare_hub_english`, the paper-scale profile's hub collections);
- ``data/prepared/exemplars/stsb_paraphrase.jsonl``: the generator's paraphrase exemplars (STS-B train and dev
  pairs in every language; :func:`retrofit.data.english.prepare_exemplars`);
- ``data/prepared/heldout.jsonl``: every text of every evaluation task, which no training text may overlap
  (:mod:`retrofit.data.heldout`);
- ``data/prepared/counts.json``: row counts per dataset, a DVC metric.
"""

from pathlib import Path

from retrofit import cli
from retrofit.data import english, heldout, hub_english, ntrex, xquad
from retrofit.io import atomic_dir, write_json
from retrofit.schema import NTREX_CODES, XQUAD_LANGUAGES


def main() -> None:
    args = cli.parser(__doc__).parse_args()
    params = cli.init_stage(args)
    raw = Path("data/raw")
    with atomic_dir("data/prepared") as out:
        counts = {
            "xquad": xquad.prepare_xquad(
                raw / "xquad", out / "xquad", list(XQUAD_LANGUAGES), params.data.test_articles, params.data.split_seed
            ),
            "ntrex": ntrex.prepare_ntrex(raw / "ntrex128", out / "ntrex", sorted(NTREX_CODES), params.data.ntrex_max_chars),
            "english": english.prepare_english(raw, out / "english", params.data.english),
            "exemplars": english.prepare_exemplars(raw, out / "exemplars" / "stsb_paraphrase.jsonl"),
            "heldout": heldout.prepare_heldout(raw, out / "xquad", out / "heldout.jsonl"),
        }
        if params.data.hub_english:  # paper scale: hub (or local) datasets beside, or instead of, the embedded six
            counts["english"].update(hub_english.prepare_hub_english(
                params.data.hub_english, out / "english", params.data.hub_english_rows, seed=params.base.seed
            ))
            counts["english"]["total"] = english.totals(counts["english"])
        write_json(out / "counts.json", counts)
    xq = counts["xquad"]
    print(
        f"prepare: xquad paragraphs {xq['paragraphs']}, questions {xq['questions']}; "
        f"ntrex passages {sum(counts['ntrex']['passages'].values())}; english pairs {counts['english']['total']['written']}"
    )


if __name__ == "__main__":
    cli.run(main)
