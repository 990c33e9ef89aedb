"""One opened scan in the app: its arrays, boxes, masks and undo history, behind one lock.

Masks are computed with the runtime's own steps, so that the label map the app saves equals
``daftseg-segment``'s for the same boxes voxel for voxel:

- 2D (and a 3D box on the slice it was drawn on): one image embedding and one decoder call per box,
  as ``case2d.segment_2d``; later boxes overwrite earlier ones.
- 3D propagation: ``case3d.segment_3d`` for the box alone, with its label index k (its position in
  the list), on which DAFT's next-slice prompt depends; a voxel gets the last box covering it.

With the scan's Fast switch on (``fast``), masks come from fast mode's models (the INT8 image encoder)
and equal ``daftseg-segment --fast``'s. Masks are kept by (model, fast), so the two never mix and
switching back shows the exact masks again without computing them.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from daftseg.inference.boxes import plan_3d
from daftseg.inference.case2d import box_masks
from daftseg.inference.case3d import segment_3d
from daftseg.inference.options import InferenceOptions
from daftseg.io.orientation import slice_view
from daftseg.io.scan import Scan

MAX_UNDO = 200
MAX_MASK_BYTES = 512 << 20  # masks kept per scan (bool, 1 byte a voxel); beyond it the oldest are dropped
DEFAULT_EMBEDDINGS = 32  # 4 MiB each: 128 MiB of slice embeddings shared by all open scans


class Cancelled(Exception):
    """The user cancelled a propagation."""


class AppError(ValueError):
    """A request the app refuses; the message is shown in the page."""


class EmbeddingCache:
    """Image embeddings by (encoder, digest of the preprocessed input), least recently used dropped first.

    Keyed by content, so a slice seen while drawing is not encoded again by a propagation.
    """

    def __init__(self, capacity: int = DEFAULT_EMBEDDINGS) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, bytes], threading.Event] = {}
        self.hits = self.misses = 0

    def get(self, model: str, x: np.ndarray, encode) -> np.ndarray:
        """The embedding of ``x``, encoded once: a caller asking for a slice that another thread is
        encoding (the prefetch, a propagation) waits for that result instead of encoding it again."""
        key = (model, hashlib.blake2b(np.ascontiguousarray(x).view(np.uint8), digest_size=16).digest())
        while True:
            with self._lock:
                if key in self._items:
                    self.hits += 1
                    self._items.move_to_end(key)
                    return self._items[key]
                pending = self._pending.get(key)
                if pending is None:
                    self._pending[key] = threading.Event()
                    break
            pending.wait()  # then look again: stored, or failed (this caller encodes it)
        try:
            emb = encode(x)
            with self._lock:
                self.misses += 1
                self._items[key] = emb
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
            return emb
        finally:
            with self._lock:
                self._pending.pop(key).set()

    def __len__(self) -> int:
        return len(self._items)


class CachedModel:
    """A ``ModelSessions`` seen through the embedding cache, one inference at a time (an OpenVINO
    infer request serves one caller), with cancel and progress for propagation."""

    def __init__(self, sessions, cache: EmbeddingCache, infer_lock: threading.Lock,
                 cancel: threading.Event | None = None, on_decode=None, fast: bool = False) -> None:
        self._s, self._cache, self._lock = sessions, cache, infer_lock
        self._cancel, self._on_decode = cancel, on_decode
        self.name = sessions.name
        # fast mode's embeddings differ from exact mode's (INT8 encoder, other precision): never shared
        self.cache_key = f"{sessions.name}:fast" if fast else sessions.name
        self.encoder = sessions.encoder.path.name  # the file that answers: shown in the page

    def _check(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled()

    def encode(self, x: np.ndarray) -> np.ndarray:
        self._check()

        def run(image: np.ndarray) -> np.ndarray:
            with self._lock:
                return self._s.encode(image)

        return self._cache.get(self.cache_key, x, run)

    def decode(self, embedding: np.ndarray, boxes256: np.ndarray, batch: int = 1) -> np.ndarray:
        self._check()
        with self._lock:
            out = self._s.decode(embedding, boxes256, batch=batch)
        if self._on_decode is not None:
            self._on_decode()
        return out


def slice_mask(model: CachedModel, image: np.ndarray, box4: np.ndarray) -> np.ndarray:
    """(H, W) bool mask of one box on one image or slice: ``segment_2d``'s path for one box."""
    return next(box_masks(model, image, np.asarray(box4, np.int64)[None]))


@dataclass
class Job:
    """A propagation running in the background."""

    box_id: int
    total: int
    done: int = 0
    state: str = "running"  # running, done, cancelled, failed
    error: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0
    encoder: str = ""  # the image encoder file that answered

    def eta(self) -> float | None:
        """Seconds left at the cost per slice measured so far (None before the first slice)."""
        if self.state != "running" or self.done == 0:
            return None
        per_slice = (time.perf_counter() - self.started) / self.done
        return round(per_slice * max(0, self.total - self.done), 1)

    def to_dict(self) -> dict:
        return {"box_id": self.box_id, "total": self.total, "done": self.done, "state": self.state,
                "error": self.error, "seconds": round(self.seconds, 3), "eta": self.eta(), "encoder": self.encoder}


_ids = itertools.count(1)


class ScanState:
    """An opened scan. ``image`` is the model input (as ``read_scan`` gives it), ``display`` the raw
    values for the page (as stored; sent as float32 a slice at a time), ``geometry`` its grid; every
    change goes through ``lock``."""

    def __init__(self, path: Path, relative: str, scan: Scan, model: str, route: dict) -> None:
        self.id = f"s{next(_ids)}"
        self.path, self.relative = path, relative
        self.image, self.display, self.geometry = scan.image, scan.raw, scan.geometry
        self.modality, self.model, self.route, self.rgb = scan.modality, model, route, scan.rgb
        self.is_3d = self.geometry.ndim == 3
        self.range = (float(np.min(self.display)), float(np.max(self.display)))
        self.lock = threading.RLock()
        self.boxes: list[dict] = []
        self.history: list[list[dict]] = []
        self.masks: OrderedDict[tuple, tuple[int, np.ndarray]] = OrderedDict()  # key -> (first z, mask)
        self.job: Job | None = None
        self.live: tuple[tuple, int, np.ndarray, np.ndarray] | None = None  # propagation under way
        self.prefetch = None  # the background encoder of the slices a box will need (core.Prefetch)
        self._next_box = 1
        self.options = InferenceOptions()
        self.fast = False  # the Fast switch: masks from fast mode's models (App.model_for)
        self.fast_available = False  # whether the model has an INT8 image encoder (set by the App)

    # -- boxes ----------------------------------------------------------------------------------
    def info(self) -> dict:
        g = self.geometry
        return {"id": self.id, "path": self.relative, "ndim": g.ndim, "is_3d": self.is_3d, "rgb": self.rgb,
                "shape": list(g.array_shape), "size": list(g.size), "spacing": list(g.spacing),
                "format": g.source_format, "modality": self.modality, "model": self.model, "route": self.route,
                "range": list(self.range), "view": slice_view(g).to_dict()}

    def snapshot(self) -> dict:
        with self.lock:
            return {"boxes": copy.deepcopy(self.boxes), "undo": len(self.history), "model": self.model,
                    "modality": self.modality, "job": self.job.to_dict() if self.job else None,
                    "propagated": [b["id"] for b in self.boxes if self._mask_3d_key(b) in self.masks]
                    if self.is_3d else [], "fast": self.fast, "fast_available": self.fast_available,
                    "fast_masks": [b["id"] for b in self.boxes if self._shows_mask(b)] if self.fast else []}

    def check_box(self, box: dict) -> dict:
        """A box from the page, checked against the scan: coords, slice (3D), label, colour, name."""
        if not isinstance(box, dict):
            raise AppError("a box must be an object")
        n = self.geometry.ndim
        coords = box.get("coords")
        if not isinstance(coords, list) or len(coords) != 2 * n or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in coords):
            raise AppError(f"box coords must be {2 * n} whole numbers "
                           + ("x_min,y_min,z_min,x_max,y_max,z_max" if n == 3 else "x_min,y_min,x_max,y_max"))
        c = [int(v) for v in coords]
        size = self.geometry.size
        if any(c[i] > c[i + n] for i in range(n)):
            raise AppError(f"box {c} is inverted (a min above its max)")
        if any(c[i] < 0 or c[i + n] > size[i] - 1 for i in range(n)):
            raise AppError(f"box {c} lies outside the scan ({' x '.join(map(str, size))} voxels)")
        if n == 3 and c[2] >= c[5]:
            raise AppError(f"box {c}: z_min must be below z_max (DAFT segments slices z_min..z_max-1)")
        label = box.get("label", 1)
        if isinstance(label, bool) or not isinstance(label, int) or not 1 <= label <= 65535:
            raise AppError(f"label {label!r} must be an integer in 1..65535")
        colour = box.get("colour", "#ff0000")
        if not isinstance(colour, str) or len(colour) != 7 or colour[0] != "#" or any(
                ch not in "0123456789abcdefABCDEF" for ch in colour[1:]):
            raise AppError(f"colour {colour!r} must be #rrggbb")
        name = box.get("name") or None
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise AppError("name must be a string of at most 200 characters")
        out = {"coords": c, "label": label, "colour": colour.lower(), "name": name}
        if n == 3:
            z = box.get("slice", (c[2] + c[5]) // 2)
            if isinstance(z, bool) or not isinstance(z, int) or not 0 <= z < size[2]:
                raise AppError(f"slice {z!r} is outside 0..{size[2] - 1}")
            out["slice"] = z
        return out

    def _remember(self) -> None:
        self.history.append(copy.deepcopy(self.boxes))
        del self.history[:-MAX_UNDO]

    def add_box(self, box: dict) -> dict:
        checked = self.check_box(box)
        with self.lock:
            self._remember()
            checked["id"] = self._next_box
            self._next_box += 1
            self.boxes.append(checked)
            return checked

    def update_box(self, box_id: int, changes: dict) -> dict:
        with self.lock:
            current = self._find(box_id)
            merged = {k: current[k] for k in ("coords", "label", "colour", "name", "slice") if k in current}
            merged.update({k: v for k, v in changes.items() if k in ("coords", "label", "colour", "name", "slice")})
            checked = self.check_box(merged)
            self._remember()
            checked["id"] = box_id
            self.boxes[self.boxes.index(current)] = checked
            return checked

    def delete_box(self, box_id: int) -> None:
        with self.lock:
            current = self._find(box_id)
            self._remember()
            self.boxes.remove(current)

    def undo(self) -> bool:
        with self.lock:
            if not self.history:
                return False
            self.boxes = self.history.pop()
            return True

    def set_model(self, model: str, fast_available: bool) -> None:
        with self.lock:
            self.model, self.fast_available = model, fast_available
            self.fast = self.fast and fast_available

    def set_fast(self, fast: bool) -> None:
        with self.lock:
            if fast and not self.fast_available:
                raise AppError(f"model {self.model} has no INT8 image encoder (export it with --int8): no fast mode")
            self.fast = fast

    def _find(self, box_id: int) -> dict:
        for b in self.boxes:
            if b["id"] == box_id:
                return b
        raise AppError(f"no box {box_id}")

    # -- masks ----------------------------------------------------------------------------------
    def _mask_2d_key(self, box: dict, z: int | None) -> tuple:
        xy = tuple(box["coords"][:2] + box["coords"][3:5]) if self.is_3d else tuple(box["coords"])
        return ("slice", self.model, self.fast, z, xy)

    def _mask_3d_key(self, box: dict) -> tuple:
        k = self.boxes.index(box) + 1
        return ("3d", self.model, self.fast, tuple(box["coords"]), k)

    def _shows_mask(self, box: dict) -> bool:
        """Whether the page shows a mask of ``box`` made with the current model and mode."""
        z = box.get("slice") if self.is_3d else None
        return (self.is_3d and self._mask_3d_key(box) in self.masks) or self._mask_2d_key(box, z) in self.masks

    def _store(self, key: tuple, first: int, mask: np.ndarray) -> None:
        self.masks[key] = (first, mask)
        self.masks.move_to_end(key)
        while sum(m.nbytes for _, m in self.masks.values()) > MAX_MASK_BYTES and len(self.masks) > 1:
            self.masks.popitem(last=False)

    def ensure_preview(self, box: dict, model: CachedModel) -> np.ndarray:
        """The mask of ``box`` on its own slice (3D) or image (2D), computed once."""
        z = box.get("slice") if self.is_3d else None
        key = self._mask_2d_key(box, z)
        with self.lock:
            if key in self.masks:
                self.masks.move_to_end(key)
                return self.masks[key][1]
        image = self.image[z] if self.is_3d else self.image
        c = box["coords"]
        mask = slice_mask(model, image, np.array(c[:2] + c[3:5] if self.is_3d else c))
        with self.lock:
            self._store(key, z or 0, mask)
        return mask

    def plan(self, box: dict):
        with self.lock:
            k = self.boxes.index(box) + 1
        (p,) = plan_3d(np.array([box["coords"]], np.int64), self.image.shape, self.options.zmax_inclusive)
        return replace(p, idx=k)

    def propagate(self, box: dict, model: CachedModel) -> tuple[int, np.ndarray]:
        """DAFT's 3D algorithm for one box (``case3d.segment_3d`` with its label index); stored."""
        plan = self.plan(box)
        h, w = self.geometry.array_shape[-2:]
        live = np.zeros((plan.hi - plan.lo, h, w), bool)
        computed = np.zeros(plan.hi - plan.lo, bool)
        with self.lock:
            key = self._mask_3d_key(box)
            self.live = (key, plan.lo, live, computed)

        def shown_at_once(z: int, labels_z: np.ndarray) -> None:
            live[z - plan.lo] = labels_z == plan.idx
            computed[z - plan.lo] = True

        try:
            res = segment_3d(model, self.image, np.array([box["coords"]], np.int64), self.options, plans=[plan],
                             on_slice=shown_at_once)
        finally:
            with self.lock:
                self.live = None
        mask = res.segs[plan.lo:plan.hi] == plan.idx
        with self.lock:
            self._store(key, plan.lo, mask)
        return plan.lo, mask

    def mask_3d(self, box: dict) -> tuple[int, np.ndarray] | None:
        with self.lock:
            return self.masks.get(self._mask_3d_key(box))

    def overlay(self, z: int | None) -> np.ndarray:
        """(H, W) uint16: the 1-based position of the box shown at each pixel (0: none).

        3D: a propagated box shows on every slice it reached; one not yet propagated shows its
        preview on the slice it was drawn on. Later boxes win, as in the saved label map.
        """
        with self.lock:
            h, w = self.geometry.array_shape[-2:]
            out = np.zeros((h, w), np.uint16)
            for k, box in enumerate(self.boxes, start=1):
                if self.is_3d:
                    key = self._mask_3d_key(box)
                    got = self.masks.get(key)
                    if got is not None:
                        first, m = got
                        if first <= z < first + len(m):
                            out[m[z - first]] = k
                        continue
                    if self.live is not None and self.live[0] == key:  # slices done so far, at once
                        _, first, m, computed = self.live
                        if first <= z < first + len(m) and computed[z - first]:
                            out[m[z - first]] = k
                            continue
                    if box.get("slice") != z:
                        continue
                got = self.masks.get(self._mask_2d_key(box, z if self.is_3d else None))
                if got is not None:
                    out[got[1]] = k
            return out

    def label_map(self, model: CachedModel, progress=None) -> np.ndarray:
        """The full label map: every 2D mask, every 3D box propagated (those not yet done now)."""
        with self.lock:
            boxes = copy.deepcopy(self.boxes)
        if not boxes:
            raise AppError("no boxes to save")
        top = max(b["label"] for b in boxes)
        labels = np.zeros(self.geometry.array_shape, np.uint8 if top <= 255 else np.uint16)
        for box in boxes:
            with self.lock:
                live = next((b for b in self.boxes if b["id"] == box["id"]), None)
            if live is None or live != box:
                raise AppError("the boxes changed while saving; save again")
            if self.is_3d:
                got = self.mask_3d(live) or self.propagate(live, model)
                first, m = got
                labels[first:first + len(m)][m] = box["label"]
            else:
                labels[self.ensure_preview(live, model)] = box["label"]
            if progress is not None:
                progress()
        return labels

    def boxes_json(self) -> dict:
        """The boxes as ``daftseg-segment --boxes`` reads them (voxel space)."""
        with self.lock:
            return {"boxes": [{"box": list(b["coords"]), "label": b["label"], "name": b["name"]}
                              for b in self.boxes]}
