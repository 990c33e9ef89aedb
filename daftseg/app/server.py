"""The app's HTTP API (Starlette) and the static page; one ``App`` holds the open scans and models."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from daftseg.app.paths import PathRefused, inside, list_scans, upload_name
from daftseg.app.state import AppError, CachedModel, Cancelled, EmbeddingCache, Job, ScanState
from daftseg.inference.routing import MODEL_NAME_CHARS, is_plain_model_name
from daftseg.io.modality import MODALITIES_3D

log = logging.getLogger("daftseg.app")
STATIC = Path(__file__).parent / "static"
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
        folder = Path(self.config.models_dir)
        if not folder.is_dir():
            return []
        names = sorted(p.name[: -len("_image_encoder.xml")] for p in folder.glob("*_image_encoder.xml"))
        return [n for n in names if self.segmenter.sessions.available(n)]

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
        return scan

    def _read(self, path: Path, fmt: str, modality: str | None):
        """(model input, display values, geometry, rgb?, modality): the model input exactly as ``read_scan``
        gives it. The modality is the one chosen, else a DICOM series' tag, else a guess from the name."""
        from daftseg.io.scan import read_scan

        if fmt in ("image", "npz"):
            scan = read_scan(path)
            image, geometry = scan.image, scan.geometry
            rgb = image.ndim == 3 and geometry.ndim == 2
            return image, image, geometry, rgb, modality or guess_modality(path.name, geometry.ndim == 3)
        from daftseg.io.medical import read_volume
        from daftseg.io.modality import scan_modality
        from daftseg.io.normalise import normalise_volume
        from daftseg.io.scan import ScanError

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
    def start_propagation(self, scan: ScanState, box_id: int) -> Job:
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
        from daftseg.io.results import ResultBox, ResultInfo, label_suffix, result_paths, write_result

        target = inside(self.data, output, must_exist=False)
        label_suffix(target, scan.geometry)
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
        labels = scan.label_map(self.model_for(scan))
        boxes = [ResultBox(tuple(b["box"]), b["label"], b["name"]) for b in scan.boxes_json()["boxes"]]
        write_result(labels, scan.geometry, target, boxes, ResultInfo(scan.relative, scan.modality, scan.model),
                     overwrite=overwrite, inputs=[scan.path])
        return [str(f.relative_to(self.data)) for f in finals]


class Exists(AppError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"{', '.join(names)} already exist{'s' if len(names) == 1 else ''}; replace?")
        self.names = names


def one_line(err: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


# -- HTTP -----------------------------------------------------------------------------------------
def _error(err: BaseException) -> JSONResponse:
    from daftseg.inference.npz_io import CaseError
    from daftseg.io.prompts import BoxError
    from daftseg.io.scan import ScanError

    if isinstance(err, Exists):
        return JSONResponse({"error": str(err), "exists": err.names}, status_code=409)
    if isinstance(err, PathRefused):
        return JSONResponse({"error": str(err)}, status_code=403)
    if isinstance(err, (AppError, ScanError, BoxError, CaseError, FileNotFoundError)):
        return JSONResponse({"error": one_line(err)}, status_code=400)
    log.exception("request failed")
    # unreadable files come as RuntimeError (SimpleITK) or ValueError (numpy): a clear line, status 400
    return JSONResponse({"error": f"cannot use it: {one_line(err)}"}, status_code=400)


def create_app(config: AppConfig) -> Starlette:
    """The ASGI app; ``app.state.daft`` is the ``App``."""
    core = App(config)

    def guarded(fn):
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except Exception as err:  # noqa: BLE001 - every failure is a message for the page
                return _error(err)
        return endpoint

    async def body(request: Request) -> dict:
        try:
            data = json.loads(await request.body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AppError("the request body is not JSON") from None
        if not isinstance(data, dict):
            raise AppError("the request body must be a JSON object")
        return data

    def run(fn, *args):
        from starlette.concurrency import run_in_threadpool

        return run_in_threadpool(fn, *args)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def info(request: Request) -> Response:
        from daftseg.io.intensity import CT_WINDOWS

        return JSONResponse({"models": core.models(), "modalities_3d": MODALITIES_3D,
                             "modalities_2d": MODALITIES_2D, "windows": CT_WINDOWS,
                             "max_upload_bytes": config.max_upload_bytes,
                             "precision": core.segmenter.sessions.config.precision, "fast": config.fast})

    async def files(request: Request) -> Response:
        return JSONResponse({"files": await run(list_scans, core.data)})

    async def open_scan(request: Request) -> Response:
        data = await body(request)
        scan = await run(core.open, data.get("path"), data.get("modality") or None, data.get("model") or None)
        return JSONResponse({**scan.info(), **scan.snapshot()})

    async def upload(request: Request) -> Response:
        name = upload_name(request.query_params.get("name", ""))
        declared = request.headers.get("content-length")
        cap = config.max_upload_bytes
        if declared is not None and declared.isdigit() and int(declared) > cap:
            return JSONResponse({"error": f"upload too large ({int(declared)} bytes; the limit is {cap})"},
                                status_code=413)
        folder = core.data / "uploads"
        folder.mkdir(exist_ok=True)
        inside(core.data, "uploads")  # the uploads folder itself must not be a symlink out
        stem, dot, ext = name.partition(".")
        target = folder / name
        n = 1
        while target.exists() or target.is_symlink():
            target = folder / f"{stem}-{n}{dot}{ext}"
            n += 1
        temp = folder / f".{target.name}.part"
        size = 0
        try:
            with open(temp, "xb") as out:  # noqa: ASYNC230 - chunks of a local upload, streamed
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        raise UploadTooLarge(f"upload too large (over {cap} bytes, the limit)")
                    out.write(chunk)
            os.link(temp, target)  # unlike a rename, never replaces a file that appeared meanwhile
        except UploadTooLarge as err:
            return JSONResponse({"error": str(err)}, status_code=413)
        finally:
            temp.unlink(missing_ok=True)
        return JSONResponse({"path": target.relative_to(core.data).as_posix(), "bytes": size})

    def _z(scan: ScanState, request: Request) -> int | None:
        if not scan.is_3d:
            return None
        text = request.query_params.get("z", "")
        if not text.lstrip("-").isdigit() or not 0 <= int(text) < scan.geometry.array_shape[0]:
            raise AppError(f"slice z={text!r} is outside 0..{scan.geometry.array_shape[0] - 1}")
        return int(text)

    async def slice_data(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        z = _z(scan, request)
        values = scan.display[z] if scan.is_3d else scan.display
        return Response(np.ascontiguousarray(values, "<f4").tobytes(), media_type="application/octet-stream",
                        headers={"X-Shape": ",".join(map(str, values.shape)), "Cache-Control": "no-store"})

    async def overlay(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        z = _z(scan, request)
        out = await run(scan.overlay, z)
        return Response(np.ascontiguousarray(out, "<u2").tobytes(), media_type="application/octet-stream",
                        headers={"X-Shape": ",".join(map(str, out.shape)), "Cache-Control": "no-store"})

    async def state(request: Request) -> Response:
        return JSONResponse(core.scan(request.path_params["sid"]).snapshot())

    def _preview(scan: ScanState, box: dict) -> float:
        t0 = time.perf_counter()
        scan.ensure_preview(box, core.model_for(scan))
        return time.perf_counter() - t0

    async def add_box(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        data = await body(request)
        box = scan.add_box(data.get("box"))
        seconds = await run(_preview, scan, box)
        return JSONResponse({**scan.snapshot(), "box": box, "seconds": round(seconds, 4)})

    async def edit_box(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        box_id = _box_id(request)
        if request.method == "DELETE":
            scan.delete_box(box_id)
            return JSONResponse(scan.snapshot())
        data = await body(request)
        box = scan.update_box(box_id, data.get("box") or {})
        seconds = await run(_preview, scan, box)
        return JSONResponse({**scan.snapshot(), "box": box, "seconds": round(seconds, 4)})

    async def undo(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        if not scan.undo():
            raise AppError("nothing to undo")
        return JSONResponse(scan.snapshot())

    async def settings(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        data = await body(request)
        if "model" in data:
            model = data["model"] or scan.route["model"]
            scan.set_model(core.check_model_name(model))

            def previews() -> None:  # the masks of the new model, as the page shows them
                for box in list(scan.boxes):
                    scan.ensure_preview(box, core.model_for(scan))

            await run(previews)
        return JSONResponse(scan.snapshot())

    async def propagate(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        data = await body(request)
        job = core.start_propagation(scan, _int(data.get("box_id"), "box_id"))
        return JSONResponse(job.to_dict())

    async def job(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        return JSONResponse(scan.job.to_dict() if scan.job else {"state": "none"})

    async def cancel(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        if scan.job is not None:
            scan.job.cancel.set()
        return JSONResponse(scan.job.to_dict() if scan.job else {"state": "none"})

    async def save(request: Request) -> Response:
        scan = core.scan(request.path_params["sid"])
        data = await body(request)
        written = await run(core.save, scan, data.get("output"), data.get("overwrite") is True)
        return JSONResponse({"written": written})

    routes = [
        Route("/", guarded(index)),
        Route("/api/info", guarded(info)),
        Route("/api/files", guarded(files)),
        Route("/api/open", guarded(open_scan), methods=["POST"]),
        Route("/api/upload", guarded(upload), methods=["POST", "PUT"]),
        Route("/api/scans/{sid}/slice", guarded(slice_data)),
        Route("/api/scans/{sid}/overlay", guarded(overlay)),
        Route("/api/scans/{sid}/state", guarded(state)),
        Route("/api/scans/{sid}/boxes", guarded(add_box), methods=["POST"]),
        Route("/api/scans/{sid}/boxes/{bid}", guarded(edit_box), methods=["PUT", "DELETE"]),
        Route("/api/scans/{sid}/undo", guarded(undo), methods=["POST"]),
        Route("/api/scans/{sid}/settings", guarded(settings), methods=["POST"]),
        Route("/api/scans/{sid}/propagate", guarded(propagate), methods=["POST"]),
        Route("/api/scans/{sid}/job", guarded(job)),
        Route("/api/scans/{sid}/cancel", guarded(cancel), methods=["POST"]),
        Route("/api/scans/{sid}/save", guarded(save), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.daft = core
    return app


class UploadTooLarge(Exception):
    pass


def _box_id(request: Request) -> int:
    return _int(request.path_params["bid"], "box id")


def _int(value, what: str) -> int:
    if isinstance(value, bool):
        raise AppError(f"{what} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AppError(f"{what} {value!r} must be an integer") from None
