"""Input data: pinned raw files and the rows built from them (XQuAD, NTREX-128, English task pairs, hub English
collections), the mining pool of English passages, the oracle rows and nested sampling."""
