"""The compiled-model cache folder, and the batch-fixed IR copies kept in it.

A graph with a dynamic batch is compiled at a fixed batch (``SessionConfig.fixed_batch``) by
reshaping it; the reshaped IR is saved once in the cache folder, so later processes load it as
fast as the original instead of reading and reshaping the source again.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from daftseg.inference.openvino_runtime import import_openvino

log = logging.getLogger("daftseg.inference")

STATIC_IR_FOLDER = "daftseg-static-ir"


def static_ir_path(cache_dir: Path, source: Path, batch: int, ov_version: str) -> Path:
    """Where the batch-``batch`` copy of IR ``source`` lives in ``cache_dir``.

    The name changes whenever the source files change (size, modification time), so a model
    replaced under the same name is never served from a stale copy.
    """
    key = [str(Path(source).resolve()), str(batch), ov_version]
    for f in (source, source.with_suffix(".bin")):
        st = f.stat()
        key += [str(st.st_size), str(st.st_mtime_ns)]
    data = "\0".join(key).encode()
    digest = f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"  # zlib is loaded anyway; hashlib is not
    return Path(cache_dir) / STATIC_IR_FOLDER / f"{source.stem}.b{batch}.{digest}.xml"


def fix_batch(model, batch: int) -> bool:
    """Set every dynamic dimension 0 of ``model``'s inputs to ``batch``; False if none was dynamic."""
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_static and len(shape) and shape[0].is_dynamic:
            shape[0] = batch
            shapes[port.get_any_name()] = shape
    if shapes:
        model.reshape(shapes)
    return bool(shapes)


def static_ir(core, path: Path, batch: int, cache: Path) -> Path:
    """``path`` itself if its batch is already fixed, else its reshaped copy in the cache folder
    (written now if missing; ``path`` with a warning where it cannot be written)."""
    derived = static_ir_path(cache, path, batch, import_openvino().get_version())
    marker = derived.with_suffix(".same")  # the source needed no reshape: use it as it is
    if derived.is_file():
        return derived
    if marker.is_file():
        return path
    model = core.read_model(str(path))
    try:
        if not fix_batch(model, batch):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            return path
        _save_ir_atomically(model, derived)
    except (OSError, RuntimeError) as e:  # OpenVINO reports failed writes as RuntimeError
        log.warning("cannot write %s (%s); compiling %s as stored", derived, e, path.name)
        return path
    return derived


def _save_ir_atomically(model, xml: Path) -> None:
    """``xml`` and its ``.bin`` appear complete or not at all (the .xml is moved in last)."""
    ov = import_openvino()
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=xml.parent))
    try:
        # the weights keep their stored precision (FP16-compressed IR stays FP16 plus Convert)
        ov.save_model(model, str(tmp / xml.name), compress_to_fp16=False)
        os.replace(tmp / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
        os.replace(tmp / xml.name, xml)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_warned_cache: set[str] = set()


def usable_cache_dir(cache_dir: str | None) -> str | None:
    """``cache_dir`` if it exists or can be created and is writable, else None (with one warning)."""
    if not cache_dir:
        return None
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir):
            pass
        return str(cache_dir)
    except OSError as e:
        if cache_dir not in _warned_cache:
            _warned_cache.add(cache_dir)
            log.warning("model cache folder %s is not usable (%s); compiling without a cache", cache_dir, e)
        return None
