"""The app's core: the open scans, the models and what a request asks of them (open, propagate,
save); no HTTP here (``handlers.py``), no command line (``cli.py``)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.app.paths import inside
from daftseg.app.prefetch import Prefetch, prefetch_order
from daftseg.app.state import AppError, CachedModel, Cancelled, EmbeddingCache, Job, ScanState
from daftseg.inference.model_folder import model_names
from daftseg.inference.routing import MODEL_NAME_CHARS, is_plain_model_name
from daftseg.io.normalise import MODALITIES_3D

log = logging.getLogger("daftseg.app")
MODALITIES_2D = ("X-Ray", "US", "Fundus", "Endoscopy", "Dermoscopy", "Microscope", "Mammography", "OCT")
MAX_OPEN_SCANS = 4


@dataclass
class AppConfig:
    data: Path
    models_dir: Path
    precision: str | None = None  # None: f32, or OpenVINO's best in fast mode (Segmenter)
    threads: int = 0
    cache_dir: str | None = None
    max_upload_bytes: int = 2 << 30
    embeddings: int = 32
    fast: bool = False  # INT8 image encoders where exported (Segmenter(fast=True)); not DAFT's outputs
    prefetch: bool = True  # encode a 3D box's slices in the background before Propagate (prefetch.py)
    token: str | None = None  # the secret of this launch (guard.py); None: a new random one
    allowed_hosts: tuple[str, ...] = ()  # host names besides 127.0.0.1, localhost and [::1] (--host)


def guess_modality(name: str, is_3d: bool) -> str:
    """The modality a file name suggests (``..._CT_...`` -> CT); CT for other volumes, '' for pictures."""
    upper = name.upper().replace("-", "").replace(" ", "_")
    table = MODALITIES_3D if is_3d else MODALITIES_2D
    for m in table:
        key = m.upper().replace("-", "")
        if key in upper.replace(".", "_").split("_") or upper.startswith(key) or f"_{key}" in upper:
            return m
    if not is_3d and ("XRAY" in upper or "CXR" in upper):
        return "X-Ray"
    return "CT" if is_3d else ""


class App:
    """Open scans (at most ``MAX_OPEN_SCANS``, oldest closed first), one Segmenter, one embedding cache."""

    def __init__(self, config: AppConfig) -> None:
        from daftseg.inference.runner import LOCAL_CACHE_DIR
        from daftseg.inference.segmenter import Segmenter

        self.config = config
        self.data = Path(config.data).resolve()
        cache = config.cache_dir if config.cache_dir is not None else LOCAL_CACHE_DIR
        self.segmenter = Segmenter(config.models_dir, cache_dir=cache or None, threads=config.threads,
                                   precision=config.precision, fast=config.fast)
        self.embeddings = EmbeddingCache(config.embeddings)
        self.infer_lock = threading.Lock()
        self.scans: dict[str, ScanState] = {}
        self.lock = threading.Lock()

    # -- models ---------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return [n for n in model_names(self.config.models_dir) if self.segmenter.sessions.available(n)]

    def routed(self, is_3d: bool, modality: str) -> dict:
        name = f"{'3D' if is_3d else '2D'}Box_{modality or ''}"
        route = self.segmenter.route(name, warn=False)
        return {"name": name, "model": route.model, "rule_model": route.routed, "fell_back": route.fell_back}

    def model_for(self, scan: ScanState, cancel=None, on_decode=None) -> CachedModel:
        if not self.segmenter.sessions.available(scan.model):
            raise AppError(f"model {scan.model} has no files in {self.config.models_dir}")
        sessions = self.segmenter.sessions.model(scan.model)
        return CachedModel(sessions, self.embeddings, self.infer_lock, cancel, on_decode)

    def check_model_name(self, model: str) -> str:
        if not is_plain_model_name(model):
            raise AppError(f"model {model!r}: a model name has letters, digits, '_', '-' and '.' only")
        if not self.segmenter.sessions.available(model):
            raise AppError(f"model {model} has no files in the models folder")
        return model

    # -- scans ----------------------------------------------------------------------------------
    def open(self, relative: str, modality: str | None = None, model: str | None = None) -> ScanState:
        from daftseg.io.scan import scan_format

        path = inside(self.data, relative)
        fmt = scan_format(path)
        if modality is not None and (not isinstance(modality, str) or len(modality) > 40
                                     or not set(modality) <= MODEL_NAME_CHARS | {" "}):
            raise AppError(f"modality {modality!r} is not a modality name")
        image, display, geometry, rgb, modality = self._read(path, fmt, modality)
        is_3d = geometry.ndim == 3
        if fmt == "npz":
            route = self.segmenter.route(path.name, warn=False)
            route_info = {"name": path.name, "model": route.model, "rule_model": route.routed,
                          "fell_back": route.fell_back}
        else:
            route_info = self.routed(is_3d, modality)
        chosen = self.check_model_name(model) if model else route_info["model"]
        scan = ScanState(path, relative, image, display, geometry, modality or None, chosen, route_info, rgb)
        with self.lock:
            self.scans[scan.id] = scan
            while len(self.scans) > MAX_OPEN_SCANS:
                oldest = next(iter(self.scans))
                old = self.scans.pop(oldest)
                if old.job is not None:
                    old.job.cancel.set()
                self.stop_prefetch(old)
        return scan

    def _read(self, path: Path, fmt: str, modality: str | None):
        """(model input, display values, geometry, rgb?, modality): the model input exactly as ``read_scan``
        gives it. The modality is the one chosen, else a DICOM series' tag, else a guess from the name."""
        from daftseg.io.scan import read_scan

        if fmt in ("image", "npz"):
            image, geometry = read_scan(path)
            rgb = image.ndim == 3 and geometry.ndim == 2
            return image, image, geometry, rgb, modality or guess_modality(path.name, geometry.ndim == 3)
        from daftseg.io.medical import read_volume
        from daftseg.io.normalise import normalise_volume
        from daftseg.io.scan import ScanError, scan_modality

        volume = read_volume(path, None, dims=(2, 3))
        geometry = volume.geometry(fmt if fmt != "other" else (path.suffix.lower().lstrip(".") or "unknown"))
        is_3d = volume.array.ndim == 3
        modality = scan_modality(geometry, modality) or guess_modality(path.name, is_3d) or None
        if modality is None:
            raise ScanError(f"{path.name}: choose a modality (CT is windowed, MR/PET percentile-clipped)")
        image = normalise_volume(volume.array, modality, "auto")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        return image, volume.array, geometry, False, modality  # raw values as stored (int16 HU: half of float32)

    def scan(self, scan_id: str) -> ScanState:
        with self.lock:
            scan = self.scans.get(scan_id)
        if scan is None:
            raise AppError(f"no open scan {scan_id!r} (it was closed; open it again)")
        return scan

    # -- propagation ----------------------------------------------------------------------------
    def prefetch(self, scan: ScanState, box: dict) -> Prefetch | None:
        """Start encoding the slices ``box`` will need (3D, models present), replacing any earlier run."""
        self.stop_prefetch(scan)
        if not (self.config.prefetch and scan.is_3d and self.segmenter.sessions.available(scan.model)):
            return None
        plan = scan.plan(box)
        slices = prefetch_order(plan.lo, plan.hi, box.get("slice", plan.mid), self.embeddings.capacity)
        cancel = threading.Event()
        scan.prefetch = Prefetch(scan, box["id"], slices, self.model_for(scan, cancel), cancel).start()
        return scan.prefetch

    def stop_prefetch(self, scan: ScanState, box_id: int | None = None, wait: bool = False) -> None:
        """Stop the scan's prefetch (only if it is for ``box_id``, when given)."""
        running = scan.prefetch
        if running is not None and (box_id is None or running.box_id == box_id):
            running.stop(wait)
            scan.prefetch = None

    def start_propagation(self, scan: ScanState, box_id: int) -> Job:
        # the prefetch has done what it could (a slice it is encoding now is waited for, not redone)
        self.stop_prefetch(scan)
        with scan.lock:
            if scan.job is not None and scan.job.state == "running":
                raise AppError("a propagation is already running for this scan; wait or cancel it")
            box = scan._find(box_id)
            if not scan.is_3d:
                raise AppError("propagation is for 3D scans")
            plan = scan.plan(box)
            job = Job(box_id, plan.hi - plan.lo)
            scan.job = job

        def tick() -> None:
            job.done += 1

        def work() -> None:
            try:
                model = self.model_for(scan, job.cancel, tick)
                scan.propagate(box, model)
                job.state = "done"
            except Cancelled:
                job.state = "cancelled"
            except Exception as err:  # shown in the page, the server goes on
                log.exception("propagation failed")
                job.state, job.error = "failed", one_line(err)
            job.seconds = time.perf_counter() - job.started

        threading.Thread(target=work, daemon=True, name=f"propagate-{scan.id}").start()
        return job

    def save(self, scan: ScanState, output: str, overwrite: bool) -> list[str]:
        from daftseg import __version__
        from daftseg.atomic import atomic_paths
        from daftseg.io.scan import _json_text, label_suffix, sidecar_path, write_labels

        target = inside(self.data, output, must_exist=False)
        label_suffix(target, scan.geometry)
        boxes_file = sidecar_path(target).with_name(sidecar_path(target).stem + "_boxes.json")
        finals = [target, sidecar_path(target), boxes_file]
        for f in finals:
            if f.resolve() == scan.path.resolve() or (scan.path.is_dir() and scan.path.resolve() in f.parents):
                raise AppError(f"{f.name} is the scan itself; choose another name")
            if f.is_symlink():
                raise AppError(f"{f.name} is a symlink; choose another name")
            if f.is_dir():
                raise AppError(f"{f.name} is a folder")
        existing = [f.name for f in finals if f.exists()]
        if existing and not overwrite:
            raise Exists(existing)
        labels = scan.label_map(self.model_for(scan))
        boxes = scan.boxes_json()
        sidecar = {"labels_file": target.name, "image": scan.relative, "modality": scan.modality,
                   "model": scan.model, "box_space": "voxel", "box_source": "boxes",
                   "boxes": [{"label": b["label"], "name": b["name"], "box_voxel": b["box"],
                              "voxels": int((labels == b["label"]).sum())} for b in boxes["boxes"]],
                   "geometry": scan.geometry.to_dict(), "zmax_inclusive": False, "daftseg_version": __version__,
                   "boxes_file": boxes_file.name}
        write_labels(labels, scan.geometry, target, sidecar=sidecar)
        with atomic_paths([boxes_file]) as (temp,):
            temp.write_text(_json_text(boxes), encoding="utf-8")
        return [str(f.relative_to(self.data)) for f in finals]


class Exists(AppError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"{', '.join(names)} already exist{'s' if len(names) == 1 else ''}; replace?")
        self.names = names


def one_line(err: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__
