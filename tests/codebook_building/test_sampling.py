"""The per-group cap that bounds fvq-build-codebook's memory: bottom-k sampling by seeded keys."""

import tracemalloc

import numpy as np
import pytest

from fvq_hf.codebook_building.sampling import GroupSampler, sample_keys
from fvq_hf.data.views import text_identity


def offers(count: int = 600, dim: int = 4, groups: int = 3, seed: int = 0):
    """`(group, key, vector)` arrays of `count` vectors, keys drawn as the build draws them (one identity a vector)."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, count)
    keys = np.concatenate([sample_keys(7, (i,), 1) for i in range(count)])
    return group, keys, rng.normal(size=(count, dim)).astype(np.float32)


def offer(sampler: GroupSampler, group, keys, vectors, order, batch: int) -> None:
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        for g in np.unique(group[rows]):
            chosen = rows[group[rows] == g]
            sampler.add(int(g), keys[chosen], vectors[chosen])


def expected(group, keys, vectors, cap: int) -> dict[int, np.ndarray]:
    """Per group, the vectors of the `cap` smallest keys, by key."""
    out = {}
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        out[int(g)] = vectors[rows[np.argsort(keys[rows])[:cap]]]
    return out


@pytest.mark.parametrize("batch", [1, 7, 600])
def test_a_group_keeps_its_cap_smallest_keys_whatever_the_order_and_batches(batch):
    group, keys, vectors = offers()
    truth = expected(group, keys, vectors, cap=50)
    for order_seed in (0, 1):
        sampler = GroupSampler(cap=50, dim=4)
        offer(sampler, group, keys, vectors, np.random.default_rng(order_seed).permutation(len(keys)), batch)
        assert sampler.groups == [0, 1, 2]
        for g, vectors_kept in truth.items():
            taken_keys, taken, seen = sampler.take(g)
            assert np.array_equal(taken, vectors_kept) and np.all(np.diff(taken_keys) > 0)
            assert seen == int((group == g).sum())


def test_samplers_of_two_shards_merge_into_the_sampler_of_all():
    group, keys, vectors = offers(seed=2)
    shards = [GroupSampler(cap=40, dim=4) for _ in range(2)]
    for rank, sampler in enumerate(shards):  # rank r reads items r, r + 2, ... as a process of two does
        offer(sampler, group, keys, vectors, np.arange(rank, len(keys), 2), batch=16)
    for g, vectors_kept in expected(group, keys, vectors, cap=40).items():
        shards[0].merge(g, *shards[1].take(g))
        _, taken, seen = shards[0].take(g)
        assert np.array_equal(taken, vectors_kept) and seen == int((group == g).sum())


def test_a_group_with_fewer_vectors_than_the_cap_keeps_them_all():
    sampler = GroupSampler(cap=100, dim=2)
    sampler.add(5, np.array([0.5, 0.25]), np.array([[1, 2], [3, 4]], np.float32))
    keys, vectors, seen = sampler.take(5)
    assert keys.tolist() == [0.25, 0.5] and vectors.tolist() == [[3, 4], [1, 2]] and seen == 2
    assert sampler.groups == []


def test_the_sampler_never_holds_more_than_the_cap_per_group():
    cap, dim, groups = 300, 8, 3
    sampler = GroupSampler(cap, dim)
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        for step in range(60):  # 60 x 399 vectors offered, 27x the cap x groups
            vectors = rng.normal(size=(399, dim)).astype(np.float32)
            keys = rng.random(399)
            for g in range(groups):
                sampler.add(g, keys[g::groups], vectors[g::groups])
            assert sampler.held <= sampler.allocated <= cap * groups
            if step == 0:
                tracemalloc.reset_peak()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sampler.held == cap * groups and [sampler.seen(g) for g in range(groups)] == [7980] * 3
    # what the sampler holds (cap x groups x (4 dim + 8) bytes), one batch, and a copy of one group's keys in flight
    bound = cap * groups * (4 * dim + 8) + 399 * (4 * dim + 8) * 3 + cap * 8 * 4 + 16_384
    assert peak < bound, (peak, bound)


def test_keys_are_a_pure_function_of_the_seed_and_the_identity():
    assert np.array_equal(sample_keys(0, (3, 1), 5), sample_keys(0, (3, 1), 5))
    assert not np.array_equal(sample_keys(0, (3, 1), 5), sample_keys(0, (3, 2), 5))
    assert not np.array_equal(sample_keys(0, (3, 1), 5), sample_keys(1, (3, 1), 5))
    # not the stream a random crop of the same identity draws from
    assert not np.array_equal(sample_keys(0, (3, 1), 5), np.random.default_rng((0, 3, 1)).random(5))
    assert text_identity("shard-000.tar/000-001") == text_identity("shard-000.tar/000-001") >= 0
    assert text_identity("shard-000.tar/000-001") != text_identity("shard-000.tar/000-002")


def test_a_cap_below_one_is_refused():
    with pytest.raises(ValueError, match="must be >= 1"):
        GroupSampler(0, 4)
