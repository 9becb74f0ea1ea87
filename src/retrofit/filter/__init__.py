"""Filtering generated and English rows: exact and near-duplicate removal, and decontamination against the
held-out evaluation text."""
