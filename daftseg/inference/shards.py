"""Which cases a shard runs: DAFT-style every N-th name, or size-balanced.

A cohort is split over N shards (array tasks, worker processes). Every shard computes its part
from the whole sorted list by itself, with no coordination, so the split must be a pure
function of the names and sizes: the same inputs give every shard the same answer.

- ``name``: cases K, K+N, K+2N, ... of the sorted names (the runner's original ``--shard``);
- ``size``: largest first, each to the shard with the fewest bytes so far (ties: larger files
  by name, lighter shards by index). One 3D case costs as much as a hundred 2D ones, and the
  file size follows the work far better than a count does.

Within a shard the cases run in sorted name order, so that a modality's cases still come
together (``--max_loaded_models`` keeps their model loaded).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

BALANCES = ("name", "size")


class ShardError(ValueError):
    """A malformed ``K/N``; the message is one line."""


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N; None or '' -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ShardError(f"--shard must be K/N, got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ShardError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def split_by_size(names: Sequence[str], sizes: Sequence[int], n: int) -> list[list[int]]:
    """Indices of ``names`` per shard (each list in name order): largest first to the lightest shard."""
    if len(names) != len(sizes):
        raise ValueError(f"{len(names)} names for {len(sizes)} sizes")
    order = sorted(range(len(names)), key=lambda i: (-sizes[i], names[i]))
    heap = [(0, k) for k in range(n)]  # (bytes so far, shard): the lightest, then the lowest index
    shards: list[list[int]] = [[] for _ in range(n)]
    for i in order:
        load, k = heapq.heappop(heap)
        shards[k].append(i)
        heapq.heappush(heap, (load + sizes[i], k))
    return [sorted(s, key=lambda i: names[i]) for s in shards]


def split_by_name(names: Sequence[str], n: int) -> list[list[int]]:
    """Indices per shard: K, K+N, ... of the names in sorted order."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    return [order[k::n] for k in range(n)]


def split(names: Sequence[str], sizes: Sequence[int], n: int, balance: str = "name") -> list[list[int]]:
    """Every index in exactly one of ``n`` lists, by ``balance`` (``BALANCES``)."""
    if n < 1:
        raise ValueError(f"need at least one shard, got {n}")
    if balance == "size":
        return split_by_size(names, sizes, n)
    if balance == "name":
        return split_by_name(names, n)
    raise ValueError(f"unknown balance {balance!r}; one of {', '.join(BALANCES)}")


def describe(k: int, n: int, balance: str, names: Sequence[str], sizes: Sequence[int],
             chosen: Sequence[int]) -> str:
    """One line naming the shard's cases, for the log of an array task."""
    mb = sum(sizes[i] for i in chosen) / 2**20
    total = sum(sizes) / 2**20
    listed = " ".join(names[i] for i in chosen)
    return (f"shard {k}/{n} (by {balance}): {len(chosen)} of {len(names)} cases, {mb:.1f} of {total:.1f} MB"
            f"{': ' + listed if listed else ''}")
