"""The samples a codebook is clustered from, kept per group with a fixed cap: bottom-k sampling.

Every feature vector gets a random key, drawn from the build's seed and the vector's identity (which image, which
crop, which position of its pooled grid), and a group keeps the `cap` vectors with the smallest keys. That is a
uniform sample without replacement of the group's vectors, as reservoir sampling gives, with two properties
reservoir sampling lacks: the kept set does not depend on the order the vectors arrive in, and two samplers merge
into the sampler of their union (`merge`). So processes that each read a shard of the data, merged, keep exactly
the samples one process keeps (the table of `fvq-build-codebook` does not depend on the number of processes).

Memory: a group holds at most `cap` vectors of `dim` fp32 values (and their fp64 keys) at any time, allocated as
it fills; a full group takes a new vector only in place of a held one with a larger key. So a sampler holds at most
`cap x groups` vectors, plus what the caller passes to one `add`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Tags the keys' random stream, so that it is not the one a random crop of the same identity draws from.
KEY_STREAM = 0x6B657973


def sample_keys(seed: int, identity: tuple[int, ...], count: int) -> np.ndarray:
    """`count` uniform keys in [0, 1) for the vectors of one item: a pure function of the seed and the item's
    `identity` (non-negative ints, e.g. `(image index, crop index)`), in the order of the item's vectors."""
    return np.random.default_rng((seed, KEY_STREAM, *identity)).random(count)


@dataclass
class _Group:
    keys: np.ndarray  # (capacity,) float64; the first `count` are held
    vectors: np.ndarray  # (capacity, dim) float32
    count: int = 0
    seen: int = 0  # vectors offered, kept or not


class GroupSampler:
    """Per group, the `cap` vectors with the smallest keys among all vectors offered (see the module docstring)."""

    def __init__(self, cap: int, dim: int) -> None:
        if cap < 1 or dim < 1:
            raise ValueError(f"The sample cap per group and the feature dimension must be >= 1, got {cap} and {dim}.")
        self.cap, self.dim = cap, dim
        self._groups: dict[int, _Group] = {}

    @property
    def groups(self) -> list[int]:
        """The groups offered vectors so far, sorted."""
        return sorted(self._groups)

    @property
    def held(self) -> int:
        """Vectors held over all groups (at most `cap x len(groups)`)."""
        return sum(group.count for group in self._groups.values())

    @property
    def allocated(self) -> int:
        """Vector rows allocated over all groups: the sampler's memory, at most `cap x len(groups)` rows of `dim`
        fp32 values and an fp64 key."""
        return sum(len(group.keys) for group in self._groups.values())

    def count(self, group: int) -> int:
        """Vectors `group` holds."""
        return self._groups[group].count if group in self._groups else 0

    def seen(self, group: int) -> int:
        """Vectors offered to `group` (merged samplers: their sum)."""
        return self._groups[group].seen if group in self._groups else 0

    def add(self, group: int, keys: np.ndarray, vectors: np.ndarray, seen: int | None = None) -> None:
        """Offer `vectors` `(n, dim)` with their `keys` `(n,)` to `group`; `seen` counts them as more vectors offered
        than given (a merged sampler's own count), default n."""
        keys = np.asarray(keys, dtype=np.float64)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or keys.shape != (len(vectors),):
            raise ValueError(f"Expected vectors (n, {self.dim}) and keys (n,), got {vectors.shape} and {keys.shape}.")
        state = self._groups.get(group)
        if state is None:
            state = self._groups[group] = _Group(np.empty(0), np.empty((0, self.dim), np.float32))
        state.seen += len(keys) if seen is None else seen
        free = self.cap - state.count
        if free > 0:  # not full yet: take what fits, growing the arrays (doubling, never past the cap)
            take = min(free, len(keys))
            self._reserve(state, state.count + take)
            state.keys[state.count:state.count + take] = keys[:take]
            state.vectors[state.count:state.count + take] = vectors[:take]
            state.count += take
            keys, vectors = keys[take:], vectors[take:]
        if not len(keys):
            return
        # Full: a new vector replaces a held one when its key is among the cap smallest of both.
        keys_held = state.keys[:state.count]
        better = keys < keys_held.max()
        if not better.any():
            return
        keys, vectors = keys[better], vectors[better]
        together = np.concatenate([keys_held, keys])
        kept = np.argpartition(together, self.cap - 1)[:self.cap]
        incoming = kept[kept >= self.cap] - self.cap
        evicted = np.setdiff1d(np.arange(self.cap), kept[kept < self.cap], assume_unique=True)
        state.keys[evicted] = keys[incoming]
        state.vectors[evicted] = vectors[incoming]

    def _reserve(self, state: _Group, size: int) -> None:
        capacity = len(state.keys)
        if size <= capacity:
            return
        capacity = min(self.cap, max(size, 2 * capacity, 1024))
        keys, vectors = np.empty(capacity), np.empty((capacity, self.dim), np.float32)
        keys[:state.count], vectors[:state.count] = state.keys[:state.count], state.vectors[:state.count]
        state.keys, state.vectors = keys, vectors

    def take(self, group: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Remove `group` and return `(keys (n,), vectors (n, dim), seen)`, sorted by key: the same arrays whatever
        order the vectors came in and however samplers were merged."""
        state = self._groups.pop(group)
        order = np.argsort(state.keys[:state.count], kind="stable")
        return state.keys[order], state.vectors[order], state.seen

    def merge(self, group: int, keys: np.ndarray, vectors: np.ndarray, seen: int) -> None:
        """Fold in another sampler's `take(group)`: the result is the sampler of both samplers' vectors."""
        self.add(group, keys, vectors, seen=seen)
