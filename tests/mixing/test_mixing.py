"""augpipe/mixing/__init__.py: the registry of steps and how donors are drawn."""

from __future__ import annotations

from collections import Counter

from augpipe.mixing import DonorPool, registry


def test_every_step_is_registered_by_its_module():
    assert sorted(registry()) == ["CopyPaste", "MixUp", "Mosaic"]


def test_a_pool_never_gives_the_row_its_own_content_nor_a_donor_twice():
    pool = DonorPool(["a", "b", "c", "d"], keys=["x", "x", "y", "z"])  # a and b hold one content
    for seed in range(200):
        picked = pool.pick(seed, 0, 3, own=frozenset({"x"}))
        assert sorted(picked) == ["c", "d"]  # two others, so two at most without repeats
    assert pool.pick(7, 0, 2, own=frozenset({"x"})) == pool.pick(7, 0, 2, own=frozenset({"x"}))
    assert len(pool.pick(7, 0, 5, own=frozenset({"x"}), repeats=True)) == 5
    assert pool.pick(7, 0, 3, own=frozenset({"x", "y", "z"})) == []


def test_earlier_steps_donors_are_avoided_and_weights_lean_the_draws():
    names = [f"s{i}" for i in range(20)]
    taken = {"s3"}
    assert "s3" not in DonorPool(names).pick(1, 1, 19, taken=taken)
    heavy = DonorPool(names, weights=[10.0] + [1.0] * 19)
    firsts = Counter(heavy.pick(seed, 0, 1)[0] for seed in range(2000))
    assert 0.25 < firsts["s0"] / 2000 < 0.45  # 10 / 29 of the weight
