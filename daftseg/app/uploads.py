"""``POST /api/upload?name=...``: a scan streamed into ``DATA/uploads`` under a name never used before,
capped at ``--max_upload_mb`` while it streams, visible only once complete."""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from daftseg.app.paths import inside, upload_name

UPLOADS = "uploads"


class UploadTooLarge(Exception):
    pass


def _free_name(folder, name: str):
    stem, dot, ext = name.partition(".")
    target, n = folder / name, 1
    while target.exists() or target.is_symlink():
        target = folder / f"{stem}-{n}{dot}{ext}"
        n += 1
    return target


async def upload(request: Request) -> Response:
    app = request.app.state.daft
    name = upload_name(request.query_params.get("name", ""))
    cap = app.config.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return JSONResponse({"error": f"upload too large ({int(declared)} bytes; the limit is {cap})"},
                            status_code=413)
    folder = app.data / UPLOADS
    folder.mkdir(exist_ok=True)
    inside(app.data, UPLOADS)  # the uploads folder itself must not be a symlink out
    target = _free_name(folder, name)
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
    return JSONResponse({"path": target.relative_to(app.data).as_posix(), "bytes": size})
