"""Slice embeddings of a 3D case, each computed when first needed and kept only while useful.

The 3D sweeps (``case3d.schedule``) visit every slice of the box ranges once upward and, where the
ranges of different boxes cross, once more downward. An embedding is 4 MiB; keeping every one a
later step needs grows with the depth of the volume (DAFT kept them all). Here at most
``capacity`` stay in memory; the others are spilled to an unlinked temporary file (read back
bit-exactly, a few milliseconds against about 0.3 s to encode a slice) up to ``spill_capacity``,
and only beyond that encoded again. The evicted slice is always the one needed last (optimal for a
known order). Outputs never depend on any of these bounds.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from typing import Self

import numpy as np

log = logging.getLogger("daftseg.inference")


class SpillFile:
    """Fixed-size float32 records in an anonymous temporary file (gone when closed or on a crash)."""

    def __init__(self, folder: str | None, shape: tuple[int, ...]) -> None:
        self._file = tempfile.TemporaryFile(dir=folder or None, prefix="daftseg-embeddings-")  # noqa: SIM115 - closed by close()
        self._fd = self._file.fileno()
        self.shape = shape
        self.record = int(np.prod(shape)) * 4
        self._slot: dict[int, int] = {}
        self._free: list[int] = []
        self._next = 0

    def __contains__(self, key: int) -> bool:
        return key in self._slot

    def __len__(self) -> int:
        return len(self._slot)

    def keys(self) -> list[int]:
        return list(self._slot)

    def put(self, key: int, array: np.ndarray) -> None:
        slot = self._free.pop() if self._free else self._next
        if slot == self._next:
            self._next += 1
        data = memoryview(np.ascontiguousarray(array, np.float32)).cast("B")
        try:
            written = os.pwrite(self._fd, data, slot * self.record)
            if written != self.record:
                raise OSError(f"short write ({written} of {self.record} bytes)")
        except OSError:
            self._free.append(slot)
            raise
        self._slot[key] = slot

    def take(self, key: int) -> np.ndarray:
        """The record of ``key``, removed from the file."""
        slot = self._slot.pop(key)
        self._free.append(slot)
        out = np.empty(self.shape, np.float32)
        read = os.preadv(self._fd, [memoryview(out).cast("B")], slot * self.record)
        if read != self.record:
            raise OSError(f"short read ({read} of {self.record} bytes)")
        return out

    def discard(self, key: int) -> None:
        slot = self._slot.pop(key, None)
        if slot is not None:
            self._free.append(slot)

    def close(self) -> None:
        self._file.close()


class SliceEmbeddings:
    """Embeddings for a known sequence of slice visits.

    Args:
        encode: slice index -> embedding (float32, the same shape for every slice).
        visits: the slice index of every step, in the order the steps run.
        capacity: embeddings kept in memory between steps (the current one is always held).
        spill_capacity: embeddings kept in a temporary file beyond ``capacity`` (0: none).
        spill_dir: folder of that file (None: the system's temporary folder).
    """

    def __init__(self, encode: Callable[[int], np.ndarray], visits: Sequence[int], capacity: int,
                 spill_capacity: int = 0, spill_dir: str | None = None) -> None:
        self._encode = encode
        self._capacity = max(0, capacity)
        self._spill_capacity = max(0, spill_capacity)
        self._spill_dir = spill_dir
        self._spill: SpillFile | None = None
        self._uses: dict[int, deque[int]] = {}
        for n, z in enumerate(visits):
            self._uses.setdefault(z, deque()).append(n)
        self._memory: dict[int, np.ndarray] = {}
        self.encoder_calls = 0
        self.max_in_memory = 0
        self.max_spilled = 0

    def get(self, z: int) -> np.ndarray:
        if z not in self._memory:
            embedding = self._from_spill(z)
            if embedding is None:
                embedding = self._encode(z)
                self.encoder_calls += 1
            self._memory[z] = embedding
            self.max_in_memory = max(self.max_in_memory, len(self._memory))
        return self._memory[z]

    def release(self, z: int) -> None:
        """The step on slice ``z`` is done: forget it if no later step needs it; keep the bounds."""
        uses = self._uses[z]
        uses.popleft()
        if not uses:
            self._memory.pop(z, None)
            if self._spill is not None:
                self._spill.discard(z)
        while len(self._memory) > self._capacity:
            furthest = max(self._memory, key=lambda s: self._uses[s][0])
            self._evict(furthest, self._memory.pop(furthest))

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _evict(self, z: int, embedding: np.ndarray) -> None:
        if self._spill_capacity == 0:
            return
        spill = self._spill_file(embedding.shape)
        if spill is None:
            return
        if len(spill) >= self._spill_capacity:  # the file is full: drop whichever is needed last
            furthest = max(spill.keys(), key=lambda s: self._uses[s][0])
            if self._uses[furthest][0] < self._uses[z][0]:
                return
            spill.discard(furthest)
        try:
            spill.put(z, embedding)
        except OSError as e:
            self._disable_spill(f"cannot write to it ({e})")
            return
        self.max_spilled = max(self.max_spilled, len(spill))

    def _from_spill(self, z: int) -> np.ndarray | None:
        if self._spill is None or z not in self._spill:
            return None
        try:
            return self._spill.take(z)
        except OSError as e:
            self._disable_spill(f"cannot read it back ({e})")
            return None

    def _spill_file(self, shape: tuple[int, ...]) -> SpillFile | None:
        if self._spill is None and self._spill_capacity:
            try:
                self._spill = SpillFile(self._spill_dir, shape)
            except OSError as e:
                self._disable_spill(f"cannot create it in {self._spill_dir or tempfile.gettempdir()} ({e})")
        return self._spill

    def _disable_spill(self, why: str) -> None:
        """Spilling only saves time: on any file error, go on encoding slices again."""
        log.warning("slice embedding spill file: %s; evicted slices will be encoded again", why)
        self.close()
        self._spill_capacity = 0
