"""The app's HTTP API (Starlette): one handler per route, each reaching the ``App`` through
``request.app.state.daft``; ``create_app`` puts them behind the guard (``guard.py``)."""

from __future__ import annotations

import functools
import json
import logging
import time

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from daftseg.app.core import App, AppConfig, Exists, one_line
from daftseg.app.guard import Guard, new_token
from daftseg.app.paths import STATIC, PathRefused, list_scans
from daftseg.app.state import AppError, ScanState
from daftseg.app.uploads import upload
from daftseg.inference.npz_io import CaseError
from daftseg.io.intensity import CT_WINDOWS
from daftseg.io.modality import MODALITIES_2D, MODALITIES_3D
from daftseg.io.prompts import BoxError
from daftseg.io.scan import ScanError

log = logging.getLogger("daftseg.app")


def error_response(err: BaseException) -> JSONResponse:
    """Every failure is a message for the page: 409 (exists), 403 (path refused) or 400."""
    if isinstance(err, Exists):
        return JSONResponse({"error": str(err), "exists": err.names}, status_code=409)
    if isinstance(err, PathRefused):
        return JSONResponse({"error": str(err)}, status_code=403)
    if isinstance(err, (AppError, ScanError, BoxError, CaseError, FileNotFoundError)):
        return JSONResponse({"error": one_line(err)}, status_code=400)
    log.exception("request failed")
    # unreadable files come as RuntimeError (SimpleITK) or ValueError (numpy): a clear line, status 400
    return JSONResponse({"error": f"cannot use it: {one_line(err)}"}, status_code=400)


def guarded(fn):
    @functools.wraps(fn)
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except Exception as err:  # noqa: BLE001 - every failure is a message for the page
            return error_response(err)
    return endpoint


def core(request: Request) -> App:
    return request.app.state.daft


def open_scan_of(request: Request) -> ScanState:
    return core(request).scan(request.path_params["sid"])


async def body(request: Request) -> dict:
    try:
        data = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AppError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise AppError("the request body must be a JSON object")
    return data


def slice_index(scan: ScanState, request: Request) -> int | None:
    if not scan.is_3d:
        return None
    text = request.query_params.get("z", "")
    if not text.lstrip("-").isdigit() or not 0 <= int(text) < scan.geometry.array_shape[0]:
        raise AppError(f"slice z={text!r} is outside 0..{scan.geometry.array_shape[0] - 1}")
    return int(text)


def as_int(value, what: str) -> int:
    if isinstance(value, bool):
        raise AppError(f"{what} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AppError(f"{what} {value!r} must be an integer") from None


def binary(values: np.ndarray, dtype: str) -> Response:
    return Response(np.ascontiguousarray(values, dtype).tobytes(), media_type="application/octet-stream",
                    headers={"X-Shape": ",".join(map(str, values.shape)), "Cache-Control": "no-store"})


# -- handlers -------------------------------------------------------------------------------------
@guarded
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


@guarded
async def info(request: Request) -> Response:
    app = core(request)
    return JSONResponse({"models": app.models(), "modalities_3d": MODALITIES_3D, "modalities_2d": MODALITIES_2D,
                         "windows": CT_WINDOWS, "max_upload_bytes": app.config.max_upload_bytes,
                         "precision": app.segmenter.sessions.config.precision, "fast": app.config.fast})


@guarded
async def files(request: Request) -> Response:
    return JSONResponse({"files": await run_in_threadpool(list_scans, core(request).data)})


@guarded
async def open_scan(request: Request) -> Response:
    data = await body(request)
    fast = data.get("fast")
    if fast is not None and not isinstance(fast, bool):
        raise AppError("fast must be true, false or null")
    scan = await run_in_threadpool(core(request).open, data.get("path"), data.get("modality") or None,
                                   data.get("model") or None, fast)
    return JSONResponse({**scan.info(), **scan.snapshot()})


@guarded
async def slice_data(request: Request) -> Response:
    scan = open_scan_of(request)
    z = slice_index(scan, request)
    return binary(scan.display[z] if scan.is_3d else scan.display, "<f4")


@guarded
async def overlay(request: Request) -> Response:
    scan = open_scan_of(request)
    z = slice_index(scan, request)
    return binary(await run_in_threadpool(scan.overlay, z), "<u2")


@guarded
async def state(request: Request) -> Response:
    return JSONResponse(open_scan_of(request).snapshot())


def _preview(app: App, scan: ScanState, box: dict) -> tuple[float, str]:
    """(seconds, the image encoder file that answered)."""
    t0 = time.perf_counter()
    model = app.model_for(scan)
    scan.ensure_preview(box, model)
    return time.perf_counter() - t0, model.encoder


async def _with_preview(request: Request, scan: ScanState, box: dict) -> JSONResponse:
    app = core(request)
    seconds, encoder = await run_in_threadpool(_preview, app, scan, box)
    app.prefetch(scan, box)  # Propagate will find its slices encoded (prefetch.py)
    return JSONResponse({**scan.snapshot(), "box": box, "seconds": round(seconds, 4), "encoder": encoder})


@guarded
async def add_box(request: Request) -> Response:
    scan = open_scan_of(request)
    box = scan.add_box((await body(request)).get("box"))
    return await _with_preview(request, scan, box)


@guarded
async def edit_box(request: Request) -> Response:
    scan = open_scan_of(request)
    box_id = as_int(request.path_params["bid"], "box id")
    if request.method == "DELETE":
        scan.delete_box(box_id)
        core(request).stop_prefetch(scan, box_id)
        return JSONResponse(scan.snapshot())
    box = scan.update_box(box_id, (await body(request)).get("box") or {})
    return await _with_preview(request, scan, box)


@guarded
async def undo(request: Request) -> Response:
    scan = open_scan_of(request)
    if not scan.undo():
        raise AppError("nothing to undo")
    core(request).stop_prefetch(scan)
    return JSONResponse(scan.snapshot())


@guarded
async def settings(request: Request) -> Response:
    app, scan = core(request), open_scan_of(request)
    data = await body(request)
    if "fast" in data and not isinstance(data["fast"], bool):
        raise AppError("fast must be true or false")
    if "model" in data:
        model = app.check_model_name(data["model"] or scan.route["model"])
        scan.set_model(model, app.has_int8(model))
    if "fast" in data:
        scan.set_fast(data["fast"])
    encoder = ""
    if "model" in data or "fast" in data:
        app.stop_prefetch(scan)  # it encodes for the model and mode it was started with

        def previews() -> str:  # the masks of the new model or mode, as the page shows them
            model = app.model_for(scan)
            for box in list(scan.boxes):
                scan.ensure_preview(box, model)
            return model.encoder if scan.boxes else ""

        encoder = await run_in_threadpool(previews)
    return JSONResponse({**scan.snapshot(), "encoder": encoder})


@guarded
async def propagate(request: Request) -> Response:
    scan = open_scan_of(request)
    data = await body(request)
    job = core(request).start_propagation(scan, as_int(data.get("box_id"), "box_id"))
    return JSONResponse(job.to_dict())


@guarded
async def job(request: Request) -> Response:
    scan = open_scan_of(request)
    return JSONResponse(scan.job.to_dict() if scan.job else {"state": "none"})


@guarded
async def cancel(request: Request) -> Response:
    scan = open_scan_of(request)
    if scan.job is not None:
        scan.job.cancel.set()
    return JSONResponse(scan.job.to_dict() if scan.job else {"state": "none"})


@guarded
async def save(request: Request) -> Response:
    scan = open_scan_of(request)
    data = await body(request)
    written = await run_in_threadpool(core(request).save, scan, data.get("output"), data.get("overwrite") is True)
    return JSONResponse({"written": written})


ROUTES = [
    Route("/", index),
    Route("/api/info", info),
    Route("/api/files", files),
    Route("/api/open", open_scan, methods=["POST"]),
    Route("/api/upload", guarded(upload), methods=["POST", "PUT"]),
    Route("/api/scans/{sid}/slice", slice_data),
    Route("/api/scans/{sid}/overlay", overlay),
    Route("/api/scans/{sid}/state", state),
    Route("/api/scans/{sid}/boxes", add_box, methods=["POST"]),
    Route("/api/scans/{sid}/boxes/{bid}", edit_box, methods=["PUT", "DELETE"]),
    Route("/api/scans/{sid}/undo", undo, methods=["POST"]),
    Route("/api/scans/{sid}/settings", settings, methods=["POST"]),
    Route("/api/scans/{sid}/propagate", propagate, methods=["POST"]),
    Route("/api/scans/{sid}/job", job),
    Route("/api/scans/{sid}/cancel", cancel, methods=["POST"]),
    Route("/api/scans/{sid}/save", save, methods=["POST"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def create_app(config: AppConfig) -> Starlette:
    """The ASGI app behind its guard; ``app.state.daft`` is the ``App``, ``app.state.token`` the
    secret that the printed link carries (``config.token``, else a new random one)."""
    token = config.token or new_token()
    app = Starlette(routes=ROUTES, middleware=[Middleware(Guard, token=token, hosts=config.allowed_hosts)])
    app.state.daft = App(config)
    app.state.token = token
    return app
