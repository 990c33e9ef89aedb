"""Challenge case files (spec §3.2): validated reading, atomic writing of ``segs``.

Input handling (everything else is a ``CaseError`` with a one-line message):

- ``imgs``: 2D (H,W,3) uint8 as specified; (H,W) grey, (H,W,1) and (H,W,4) (alpha dropped) are
  accepted too. 3D (D,H,W). A case is 3D when its file name starts with ``3D`` (as DAFT).
- Image dtypes, as DAFT: the image is kept in its stored dtype and resized in it, then min-max
  normalised (``geometry.preprocess_image``), for every image DAFT's script processes: a dtype
  ``cv2.resize`` takes (``DAFT_DTYPES``: uint8, uint16, int16, float32, float64) and, for 2D,
  values below 256 (DAFT asserts ``max < 256`` there; its 3D path has no such check, so any range).
  What DAFT cannot process is converted, never an error: an image of another dtype (int8, int32,
  int64, uint32, uint64, float16) whose values are integers in [0,255] is cast to uint8 unchanged;
  anything else (another dtype with other values, or a 2D image with a value >= 256) is linearly
  rescaled from [min,max] to [0,255] uint8 and rounded, with a warning. NaN/inf is an error.
- ``boxes``: (N,4) ``[x_min,y_min,x_max,y_max]`` for 2D, (N,6) ``[x_min,y_min,z_min,x_max,y_max,z_max]``
  for 3D, finite numbers. An empty array (N=0) is valid: the output is an all-zero ``segs``.
  Per-box checks (inverted, outside the image, z range) are in ``boxes.py``.
- Pickled (object) arrays are refused.

Output: ``segs`` uint16 (uint32 if more than 65535 boxes), (H,W) or (D,H,W), in a zip-deflated npz
(what ``np.load`` reads; DAFT used ``np.savez_compressed``) written to a temporary file in the
output folder and renamed, so a failure never leaves a partial file.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_open

log = logging.getLogger("daftseg.inference")

# zlib level 1: label maps are mostly zeros; level 1 writes them several times faster than
# savez_compressed's default (6) at a slightly larger size, and any level reads back the same.
COMPRESS_LEVEL = 1


# dtypes cv2.resize(INTER_AREA) accepts: DAFT's script processes an image in these as stored
DAFT_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64))


class CaseError(ValueError):
    """A case cannot be processed; the message is one line and names what is wrong."""


@dataclass
class Case:
    """One challenge case. ``imgs`` (H,W,3) for 2D or (D,H,W) for 3D, in a dtype of ``DAFT_DTYPES``;
    ``boxes`` as stored."""

    name: str
    imgs: np.ndarray
    boxes: np.ndarray  # (N,4) or (N,6)
    is_3d: bool
    spacing: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.imgs.shape if self.is_3d else self.imgs.shape[:2]


def is_3d_name(name: str) -> bool:
    """DAFT's rule (spec §7.2): a file whose base name starts with ``3D`` is a 3D case."""
    return Path(name).name.startswith("3D")


def read_case(path: str | Path) -> Case:
    """Load and validate ``path``; raise ``CaseError`` with a one-line reason if it is unusable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            for key in ("imgs", "boxes"):
                if key not in keys:
                    raise CaseError(f"no '{key}' array (keys: {', '.join(sorted(keys)) or 'none'})")
            imgs, boxes = z["imgs"], z["boxes"]
            spacing = z["spacing"] if "spacing" in keys else None
    except CaseError:
        raise
    except FileNotFoundError:
        raise CaseError("file not found") from None
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise CaseError("holds a pickled (object) array, which is not accepted") from None
        raise CaseError(f"unreadable npz (corrupt or truncated?): ValueError: {_one_line(e)}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError) as e:
        raise CaseError(f"unreadable npz (corrupt or truncated?): {type(e).__name__}: {_one_line(e)}") from None
    return make_case(path.name, imgs, boxes, spacing)


def make_case(name: str, imgs: np.ndarray, boxes: np.ndarray, spacing: np.ndarray | None = None,
              is_3d: bool | None = None) -> Case:
    """Validate arrays into a ``Case``; ``is_3d`` defaults to DAFT's file-name rule."""
    is_3d = is_3d_name(name) if is_3d is None else is_3d
    imgs = np.asarray(imgs)
    notes: list[str] = []
    imgs = _daft_dtype(imgs, notes, name, is_3d)
    if is_3d:
        if imgs.ndim != 3:
            raise CaseError(f"3D case (name starts with '3D') needs imgs (D,H,W), got shape {imgs.shape}")
    else:
        if imgs.ndim == 3 and imgs.shape[2] not in (1, 3, 4):
            raise CaseError(f"2D case needs imgs (H,W), (H,W,3) or (H,W,4), got shape {imgs.shape} "
                            "(a 3D volume? 3D case names start with '3D')")
        if imgs.ndim not in (2, 3):
            raise CaseError(f"2D case needs imgs (H,W), (H,W,3) or (H,W,4), got shape {imgs.shape}")
        if imgs.ndim == 2 or imgs.shape[2] != 3:
            imgs = _to_rgb(imgs)
    if min(imgs.shape[:3] if is_3d else imgs.shape[:2]) == 0:
        raise CaseError(f"empty image, shape {imgs.shape}")
    return Case(name, imgs, _boxes(boxes, is_3d), is_3d, spacing, notes)


def _to_rgb(imgs: np.ndarray) -> np.ndarray:
    from daftseg.geometry import to_rgb

    return np.ascontiguousarray(to_rgb(imgs))


def _daft_dtype(imgs: np.ndarray, notes: list[str], name: str, is_3d: bool) -> np.ndarray:
    """``imgs`` as stored where DAFT's script processes it, else converted to uint8 (see the module doc)."""
    if imgs.dtype.kind not in "iuf" or imgs.size == 0:
        raise CaseError(f"imgs must be a numeric array, got dtype {imgs.dtype} shape {imgs.shape}")
    if imgs.dtype.kind == "f" and not np.isfinite(imgs).all():
        raise CaseError("imgs contains NaN or inf")
    if not imgs.dtype.isnative:  # same values in this machine's byte order (OpenCV reads no other)
        imgs = imgs.astype(imgs.dtype.newbyteorder("="))
    if imgs.dtype == np.uint8:
        return imgs
    lo, hi = imgs.min(), imgs.max()
    if imgs.dtype in DAFT_DTYPES and (is_3d or hi < 256):
        return imgs
    if imgs.dtype not in DAFT_DTYPES and lo >= 0 and hi <= 255 and (
            imgs.dtype.kind != "f" or np.array_equal(imgs, np.round(imgs))):
        return imgs.astype(np.uint8)
    why = "2D values >= 256 (DAFT's script asserts max < 256)" if imgs.dtype in DAFT_DTYPES \
        else "a dtype OpenCV cannot resize (DAFT's script stops)"
    note = f"imgs {imgs.dtype} in [{lo:g}, {hi:g}] rescaled to uint8 [0, 255]: {why}"
    log.warning("%s: %s", name, note)
    notes.append(note)
    return stretch_to_uint8(imgs)


def stretch_to_uint8(x: np.ndarray) -> np.ndarray:
    """``x``'s [min, max] linearly mapped to uint8 [0, 255], rounded (a constant image becomes 0)."""
    lo, hi = float(x.min()), float(x.max())
    return np.round((x.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1e-12))).astype(np.uint8)


def _boxes(boxes: np.ndarray, is_3d: bool) -> np.ndarray:
    boxes = np.asarray(boxes)
    width = 6 if is_3d else 4
    if boxes.dtype.kind not in "iuf":
        raise CaseError(f"boxes must be numeric, got dtype {boxes.dtype}")
    if boxes.size == 0:
        return np.zeros((0, width), np.float64)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 6):
        raise CaseError(f"boxes must be (N,4) for 2D or (N,6) for 3D, got shape {boxes.shape}")
    if boxes.shape[1] != width:
        kind, other = ("3D", "2D") if is_3d else ("2D", "3D")
        raise CaseError(f"{other} boxes (N,{boxes.shape[1]}) given for a {kind} case (needs (N,{width}))")
    if boxes.dtype.kind == "f" and not np.isfinite(boxes).all():
        raise CaseError("boxes contain NaN or inf")
    return boxes


def segs_dtype(n_boxes: int) -> type[np.unsignedinteger]:
    """The dtype written: uint16 as DAFT, uint32 only when the labels 1..N do not fit."""
    return np.uint16 if n_boxes <= np.iinfo(np.uint16).max else np.uint32


def label_dtype(n_boxes: int) -> type[np.unsignedinteger]:
    """The dtype a label map is built in: uint8 up to 255 boxes (half the memory of a 3D volume)."""
    return np.uint8 if n_boxes <= np.iinfo(np.uint8).max else segs_dtype(n_boxes)


def output_dtype(segs: np.ndarray) -> np.dtype:
    """The dtype ``segs`` is written as: at least uint16, as DAFT."""
    return np.promote_types(segs.dtype, np.uint16)


def write_segs(path: str | Path, segs: np.ndarray) -> None:
    """Write ``{'segs': segs}`` as an npz at ``path`` atomically (temporary file + rename).

    ``segs`` is written as ``output_dtype(segs)`` (uint8 label maps as uint16), converted a few MiB
    at a time, so a 3D volume is never held twice.
    """
    if segs.dtype.kind != "u":
        raise ValueError(f"segs must be an unsigned integer label map, got {segs.dtype}")
    dtype = output_dtype(segs)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": segs.shape}
    flat = segs.reshape(-1)
    step = max(1, (4 << 20) // dtype.itemsize)
    with atomic_open(path, "wb") as f, \
            zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf, \
            zf.open("segs.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        for start in range(0, flat.size, step):
            member.write(flat[start:start + step].astype(dtype, copy=False).tobytes())


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]
