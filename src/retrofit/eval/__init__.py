"""Evaluation: the held-out XQuAD families, the official mteb tasks on pinned data, MMTEB through mteb, the
encoder wrapper they share, and the paired statistics that compare two models."""
