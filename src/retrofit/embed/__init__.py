"""Encoding text: a sentence-transformers encoder with prompts and a dtype choice, the on-disk embedding cache,
and the two forward-pass speedups (unpadding, the frozen-trunk cache) that training and evaluation share."""
