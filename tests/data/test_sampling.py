"""Nested sampling: a smaller sample is a subset of a larger one, independent of input order."""

import random

from retrofit.data.sampling import nested_sample, nested_sample_by


def test_nested_and_order_independent():
    items = [{"id": f"r{i}", "g": i % 3} for i in range(50)]
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    small = nested_sample(items, 5, 7, key=lambda r: r["id"])
    big = nested_sample(shuffled, 20, 7, key=lambda r: r["id"])
    assert small == big[:5]
    assert nested_sample(items, None, 7, key=lambda r: r["id"]) == nested_sample(shuffled, 100, 7, key=lambda r: r["id"])
    assert nested_sample(items, 5, 8, key=lambda r: r["id"]) != small


def test_per_group_sample_keeps_input_order():
    items = [{"id": f"r{i}", "g": i % 3} for i in range(30)]
    out = nested_sample_by(items, lambda r: str(r["g"]), 4, 0)
    assert len(out) == 12 and [r["id"] for r in out] == sorted((r["id"] for r in out), key=lambda s: int(s[1:]))
