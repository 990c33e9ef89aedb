"""Box prompts for one scan: read from JSON, CSV or the command line, checked, and put in voxel indices.

Layout (the challenge's): 2D ``x_min,y_min,x_max,y_max``; 3D ``x_min,y_min,z_min,x_max,y_max,z_max``.
Voxel space: 0-based indices of the scan as stored, x = column (SimpleITK index i, 3D Slicer's I),
y = row (j), z = slice (k); voxel (x, y, z) is ``array[z, y, x]`` of the runtime's (D, H, W) array.
x and y ranges are inclusive. World space: LPS millimetres, converted through the scan's geometry.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.io.grid import Geometry

MAX_LABEL = 65535
BOX_KEYS = {2: ("x_min", "y_min", "x_max", "y_max"), 3: ("x_min", "y_min", "z_min", "x_max", "y_max", "z_max")}


class BoxError(ValueError):
    """A box that cannot be used; the message names it (1-based) and says why."""


@dataclass
class Box:
    """One prompt: ``coords`` as given (2 * ndim numbers), the label value its mask gets, a name."""

    coords: tuple[float, ...]
    label: int | None = None
    name: str | None = None


def parse_box_text(text: str, source: str) -> Box:
    """``"x_min,y_min[,z_min],x_max,y_max[,z_max]"`` (commas and/or spaces) -> Box."""
    parts = [p for p in text.replace(",", " ").split() if p]
    return Box(_numbers(parts, source))


def read_box_file(path: str | Path) -> list[Box]:
    """Boxes from a ``.json`` or ``.csv`` file (another ending: JSON if it parses, else CSV).

    JSON: a list of boxes, or ``{"boxes": [...]}``; a box is a list of numbers or an object
    ``{"box": [...], "label": 3, "name": "liver"}``.
    CSV: rows of 4 or 6 numbers; or a header row naming the columns x_min, y_min[, z_min], x_max, y_max
    [, z_max] and optionally label and name. Blank lines and lines starting with ``#`` are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such boxes file: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise BoxError(f"cannot read boxes file {path}: {err}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        boxes = _csv_boxes(text, str(path))
    elif suffix == ".json":
        boxes = _json_boxes(text, str(path))
    else:
        try:
            boxes = _json_boxes(text, str(path))
        except BoxError:
            boxes = _csv_boxes(text, str(path))
    if not boxes:
        raise BoxError(f"{path}: no boxes")
    return boxes


def _json_boxes(text: str, source: str) -> list[Box]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BoxError(f"{source}: not valid JSON ({err})") from None
    if isinstance(data, dict):
        if set(data) - {"boxes"} or "boxes" not in data:
            raise BoxError(f"{source}: a JSON object must be {{\"boxes\": [...]}}, got keys {sorted(data)}")
        data = data["boxes"]
    if not isinstance(data, list):
        raise BoxError(f"{source}: expected a list of boxes")
    boxes = []
    for i, item in enumerate(data, start=1):
        where = f"{source}: box {i}"
        if isinstance(item, dict):
            unknown = set(item) - {"box", "label", "name"}
            if unknown or "box" not in item:
                raise BoxError(f"{where}: an object needs 'box' and may have 'label' and 'name' "
                               f"(got {', '.join(sorted(item))})")
            coords, label, name = item["box"], item.get("label"), item.get("name")
        else:
            coords, label, name = item, None, None
        if not isinstance(coords, list):
            raise BoxError(f"{where}: expected a list of numbers, got {coords!r}")
        boxes.append(Box(_numbers(coords, where), _label(label, where), _name(name, where)))
    return boxes


def _csv_boxes(text: str, source: str) -> list[Box]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)
            and not r[0].lstrip().startswith("#")]
    if not rows:
        return []
    header = None
    if not _is_number(rows[0][0]):
        header = [c.strip().lower() for c in rows[0]]
        rows = rows[1:]
        keys = BOX_KEYS[3] if "z_min" in header or "z_max" in header else BOX_KEYS[2]
        missing = [k for k in keys if k not in header]
        unknown = [c for c in header if c not in (*BOX_KEYS[3], "label", "name")]
        if missing or unknown:
            raise BoxError(f"{source}: CSV header needs {', '.join(keys)} (optional label, name); "
                           + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}"))
    boxes = []
    for i, row in enumerate(rows, start=1):
        where = f"{source}: box {i}"
        if header is None:
            boxes.append(Box(_numbers(row, where)))
            continue
        if len(row) != len(header):
            raise BoxError(f"{where}: {len(row)} fields, the header has {len(header)}")
        cells = {k: v.strip() for k, v in zip(header, row, strict=True)}
        label = cells.get("label") or None
        boxes.append(Box(_numbers([cells[k] for k in keys], where),
                         _label(label, where), cells.get("name") or None))
    return boxes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numbers(values: list, where: str) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise BoxError(f"{where}: expected numbers, got {values!r}") from None
    if len(numbers) not in (4, 6):
        raise BoxError(f"{where}: {len(numbers)} numbers; a box is x_min,y_min,x_max,y_max (2D) or "
                       "x_min,y_min,z_min,x_max,y_max,z_max (3D)")
    if not all(math.isfinite(v) for v in numbers):
        raise BoxError(f"{where}: not finite: {values!r}")
    return numbers


def _label(value, where: str) -> int | None:
    if value is None:
        return None
    try:
        label = float(value)
    except (TypeError, ValueError):
        raise BoxError(f"{where}: label {value!r} is not a number") from None
    if isinstance(value, bool) or not label.is_integer() or not 1 <= label <= MAX_LABEL:
        raise BoxError(f"{where}: label {value!r} must be an integer in 1..{MAX_LABEL}")
    return int(label)


def _name(value, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BoxError(f"{where}: name must be a string, got {value!r}")
    return value


def voxel_boxes(boxes: list[Box], geometry: Geometry, space: str = "voxel",
                zmax_inclusive: bool = False) -> np.ndarray:
    """Check boxes against the scan and return them as (N, 4|6) int64 voxel indices (challenge layout).

    Args:
        space: ``voxel`` (indices as given; they must be whole numbers) or ``world`` (LPS mm; each
            corner goes to its nearest voxel, see ``Geometry.world_box_to_index``).
        zmax_inclusive: whether z_max itself is segmented; without it (DAFT's rule) a 3D box needs
            z_max > z_min.
    """
    if space not in ("voxel", "world"):
        raise ValueError(f"box space must be 'voxel' or 'world', got {space!r}")
    n = geometry.ndim
    out = np.zeros((len(boxes), 2 * n), dtype=np.int64)
    limits = ", ".join(f"{a} 0..{s - 1}" for a, s in zip("xyz", geometry.size, strict=False))
    for i, box in enumerate(boxes, start=1):
        coords = np.asarray(box.coords, dtype=np.float64)
        given = _fmt(coords)
        if coords.size != 2 * n:
            want = ", ".join(BOX_KEYS[n])
            raise BoxError(f"box {i} {given} has {coords.size} numbers but the scan is {n}D: give {want}")
        if np.any(coords[:n] > coords[n:]):
            raise BoxError(f"box {i} {given} is inverted (a min above its max); the layout is "
                           + ",".join(BOX_KEYS[n]))
        if space == "world":
            idx = geometry.world_box_to_index(coords)
            given = f"{given} mm (voxels {_fmt(idx)})"
        else:
            if not np.allclose(coords, np.rint(coords), rtol=0, atol=1e-6):
                raise BoxError(f"box {i} {given}: voxel indices must be whole numbers "
                               "(use --box_space world for millimetres)")
            idx = np.rint(coords).astype(np.int64)
        if np.any(idx[:n] < 0) or np.any(idx[n:] > np.asarray(geometry.size) - 1):
            raise BoxError(f"box {i} {given} lies outside the scan ({limits}, voxel indices)")
        if n == 3 and not zmax_inclusive and idx[2] >= idx[5]:
            raise BoxError(f"box {i} {given}: z_min must be below z_max (DAFT segments slices z_min..z_max-1; "
                           "--zmax_inclusive segments z_max too)")
        out[i - 1] = idx
    return out


def label_values(boxes: list[Box]) -> np.ndarray:
    """(N,) label value of each box: its own, else its 1-based position."""
    return np.array([b.label if b.label is not None else i for i, b in enumerate(boxes, start=1)], dtype=np.int64)


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in np.asarray(values, dtype=np.float64)) + "]"
