"""A tiny progress bar on stderr (only on a terminal) that lets per-case lines scroll above it."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, out: TextIO = sys.stdout, bar: TextIO = sys.stderr, width: int = 28) -> None:
        self.total, self.done, self.width = total, 0, width
        self.out, self.bar = out, bar
        self.active = total > 0 and bar.isatty()
        self.t0 = time.perf_counter()

    def line(self, text: str, stream: TextIO | None = None) -> None:
        """Print a full line (stdout by default) above the bar."""
        self._clear()
        print(text, file=stream or self.out, flush=True)
        self._draw()

    def advance(self) -> None:
        self.done += 1
        self._draw()

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self.active:
            self.bar.write("\r\033[K")
            self.bar.flush()

    def _draw(self) -> None:
        if not self.active:
            return
        filled = self.width * self.done // self.total
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        self.bar.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                       f"{elapsed:.0f}s elapsed, ~{eta:.0f}s left")
        self.bar.flush()
