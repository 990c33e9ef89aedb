"""The app's core: the open scans, the models and what a request asks of them (open, propagate,
save); no HTTP here (``handlers.py``), no command line (``cli.py``).

Two Segmenters: the exact one (DAFT's outputs), and, made when a scan first turns its Fast switch on,
fast mode's (``Segmenter(fast=True)``: INT8 image encoders, OpenVINO's best precision for the rest),
so that a scan's fast masks equal ``daftseg-segment --fast``'s."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from daftseg.app.paths import inside
from daftseg.app.prefetch import Prefetch, prefetch_order
from daftseg.app.state import AppError, CachedModel, Cancelled, EmbeddingCache, Job, ScanState
from daftseg.inference.model_folder import int8_encoder_file, ir_complete, model_names
from daftseg.inference.routing import MODEL_NAME_CHARS, is_plain_model_name, scan_case_name
from daftseg.inference.runner import LOCAL_CACHE_DIR
from daftseg.inference.segmenter import Segmenter
from daftseg.io.dicom_series import source_series
from daftseg.io.results import ResultBox, ResultInfo, label_suffix, result_paths, write_result
from daftseg.io.scan import ScanError, read_scan, scan_format

log = logging.getLogger("daftseg.app")
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
    fast: bool = False  # the Fast switch's setting for scans whose model has an INT8 encoder; not DAFT's outputs
    prefetch: bool = True  # encode a 3D box's slices in the background before Propagate (prefetch.py)
    token: str | None = None  # the secret of this launch (guard.py); None: a new random one
    allowed_hosts: tuple[str, ...] = ()  # host names besides 127.0.0.1, localhost and [::1] (--host)


class App:
    """Open scans (at most ``MAX_OPEN_SCANS``, oldest closed first), one Segmenter, one embedding cache."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.data = Path(config.data).resolve()
        cache = config.cache_dir if config.cache_dir is not None else LOCAL_CACHE_DIR
        self.segmenter = Segmenter(config.models_dir, cache_dir=cache or None, threads=config.threads,
                                   precision=config.precision)
        self._fast_segmenter: Segmenter | None = None
        self.embeddings = EmbeddingCache(config.embeddings)
        self.infer_lock = threading.Lock()
        self.scans: dict[str, ScanState] = {}
        self.lock = threading.Lock()

    # -- models ---------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return [n for n in model_names(self.config.models_dir) if self.segmenter.sessions.available(n)]

    def has_int8(self, model: str) -> bool:
        """Whether ``model`` has an INT8 image encoder: the Fast switch is offered only then."""
        return ir_complete(int8_encoder_file(self.config.models_dir, model))

    def segmenter_for(self, fast: bool) -> Segmenter:
        if not fast:
            return self.segmenter
        with self.lock:
            if self._fast_segmenter is None:
                exact = self.segmenter.sessions.config
                self._fast_segmenter = Segmenter(self.config.models_dir, cache_dir=exact.cache_dir,
                                                 threads=exact.threads, precision=self.config.precision, fast=True)
            return self._fast_segmenter

    def model_for(self, scan: ScanState, cancel=None, on_decode=None) -> CachedModel:
        if not self.segmenter.sessions.available(scan.model):
            raise AppError(f"model {scan.model} has no files in {self.config.models_dir}")
        fast = scan.fast
        sessions = self.segmenter_for(fast).sessions.model(scan.model)
        return CachedModel(sessions, self.embeddings, self.infer_lock, cancel, on_decode, fast=fast)

    def check_model_name(self, model: str) -> str:
        if not is_plain_model_name(model):
            raise AppError(f"model {model!r}: a model name has letters, digits, '_', '-' and '.' only")
        if not self.segmenter.sessions.available(model):
            raise AppError(f"model {model} has no files in the models folder")
        return model

    # -- scans ----------------------------------------------------------------------------------
    def open(self, relative: str, modality: str | None = None, model: str | None = None,
             fast: bool | None = None) -> ScanState:
        """Open a scan under the data folder: read by ``read_scan`` (the modality chosen, else the DICOM
        tag's, else the file name's), routed as the batch script would route it. ``fast``: the Fast
        switch (None: ``config.fast``), on only where the model has an INT8 encoder."""
        path = inside(self.data, relative)
        if modality is not None and (not isinstance(modality, str) or len(modality) > 40
                                     or not set(modality) <= MODEL_NAME_CHARS | {" "}):
            raise AppError(f"modality {modality!r} is not a modality name")
        fmt = scan_format(path)
        scan = read_scan(path, modality=modality, modality_from_name=True)
        if scan.modality is None and fmt not in ("image", "npz"):
            raise ScanError(f"{path.name}: choose a modality (CT is windowed, MR/PET percentile-clipped)")
        # a challenge case is routed by its own name, as DAFT's script does
        name = path.name if fmt == "npz" else scan_case_name(scan.geometry.ndim == 3, scan.modality)
        route = self.segmenter.route(name, warn=False)
        route_info = {"name": name, "model": route.model, "rule_model": route.routed, "fell_back": route.fell_back}
        chosen = self.check_model_name(model) if model else route.model
        state = ScanState(path, relative, scan, chosen, route_info)
        state.set_model(chosen, self.has_int8(chosen))
        state.fast = (self.config.fast if fast is None else fast) and state.fast_available
        with self.lock:
            self.scans[state.id] = state
            while len(self.scans) > MAX_OPEN_SCANS:
                old = self.scans.pop(next(iter(self.scans)))
                if old.job is not None:
                    old.job.cancel.set()
                self.stop_prefetch(old)
        return state

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
                job.encoder = model.encoder
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
        """The label map, its sidecar and its boxes file (``io.results``), as daftseg-segment writes them;
        ``.dcm``: a DICOM SEG, for a scan opened from a DICOM series folder."""
        target = inside(self.data, output, must_exist=False)
        suffix = label_suffix(target, scan.geometry)
        finals = list(result_paths(target))
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
        dicom = source_series(scan.path, scan.geometry.series_uid) if suffix == ".dcm" else None
        labels = scan.label_map(self.model_for(scan))
        boxes = [ResultBox(tuple(b["box"]), b["label"], b["name"]) for b in scan.boxes_json()["boxes"]]
        write_result(labels, scan.geometry, target, boxes, ResultInfo(scan.relative, scan.modality, scan.model),
                     overwrite=overwrite, inputs=[scan.path], dicom_source=dicom)
        return [str(f.relative_to(self.data)) for f in finals]


class Exists(AppError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"{', '.join(names)} already exist{'s' if len(names) == 1 else ''}; replace?")
        self.names = names


def one_line(err: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__
