"""Encode, while the user is still drawing, the slices a 3D box's Propagate will need.

On a real CT nearly all of a propagation's time is the image encoder (about 0.5 s a slice on a
laptop CPU, the decoder about 0.05 s); the seconds spent drawing the box and setting its range are
free. As soon as a 3D box exists its slices are encoded in the background, nearest to the drawn
slice first, one inference at a time (the app's inference lock), into the embedding cache that
Propagate reads (keyed by content, so the result is the same bits). At most as many slices as the
cache holds; a new box, an edit, a deletion, a propagation or closing the scan stops it.
"""

from __future__ import annotations

import logging
import threading

from daftseg.app.state import Cancelled
from daftseg.geometry import preprocess_image

log = logging.getLogger("daftseg.app")


def prefetch_order(lo: int, hi: int, drawn: int, limit: int) -> list[int]:
    """Slices ``lo..hi-1`` nearest to ``drawn`` first (the lower one first on a tie), at most ``limit``."""
    return sorted(range(lo, hi), key=lambda z: (abs(z - drawn), z))[:max(0, limit)]


class Prefetch:
    """One background run over ``slices`` of ``scan`` with ``model`` (a ``CachedModel`` whose cancel
    event is ``cancel``)."""

    def __init__(self, scan, box_id: int, slices: list[int], model, cancel: threading.Event) -> None:
        self.box_id, self.slices, self.cancel = box_id, slices, cancel
        self.encoded = 0
        self._thread = threading.Thread(target=self._run, args=(scan, model), daemon=True,
                                        name=f"prefetch-{scan.id}-{box_id}")

    def start(self) -> Prefetch:
        self._thread.start()
        return self

    def _run(self, scan, model) -> None:
        try:
            for z in self.slices:
                if self.cancel.is_set():
                    return
                model.encode(preprocess_image(scan.image[z])[0])  # the input segment_3d encodes
                self.encoded += 1
        except Cancelled:
            pass
        except Exception:  # a failed prefetch costs time only; Propagate reports errors
            log.exception("prefetch failed")

    def stop(self, wait: bool = False) -> None:
        self.cancel.set()
        if wait:
            self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
