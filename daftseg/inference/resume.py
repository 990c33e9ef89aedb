"""Resuming a cohort run: which outputs are already complete, and whether they came from this run.

Outputs are written atomically (``daftseg.atomic``), so a file under its final name was written
whole; what can still be wrong with one is that it is not ours (another program, an earlier run
with other settings) or was damaged later. ``segs_complete`` therefore reads the zip directory and
the array header only (no decompression: a cohort has thousands of cases): a ``segs`` array of
unsigned integers, of the case's shape, whose stored size matches its header.

``RunSettings`` guards the other case: a cohort folder remembers the settings that change outputs
(``.daftseg-cohort.json``), and a run with other settings is refused instead of mixing outputs.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_write_text
from daftseg.inference.npz_io import is_3d_name

SETTINGS_FILE = ".daftseg-cohort.json"


def npy_header(path: str | Path, key: str) -> tuple[tuple[int, ...], np.dtype, int, int] | None:
    """(shape, dtype, header bytes, stored bytes) of array ``key`` in an npz; None if unreadable."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{key}.npy")
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(f)
                header = f.tell()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    if fortran:
        return None
    return tuple(shape), dtype, header, info.file_size


def expected_shape(case: str | Path) -> tuple[int, ...] | None:
    """The ``segs`` shape of a challenge case from its ``imgs`` header, None if it cannot be read."""
    found = npy_header(case, "imgs")
    if found is None:
        return None
    shape = found[0]
    if is_3d_name(Path(case).name):
        return shape if len(shape) == 3 else None
    return shape[:2] if len(shape) in (2, 3) else None


def segs_complete(segs: str | Path, shape: tuple[int, ...] | None) -> bool:
    """True if ``segs`` is an npz with a whole unsigned-integer ``segs`` array of ``shape``."""
    if shape is None or not Path(segs).is_file():
        return False
    found = npy_header(segs, "segs")
    if found is None:
        return False
    got, dtype, header, stored = found
    return dtype.kind == "u" and got == tuple(shape) and stored == header + math.prod(got) * dtype.itemsize


def case_complete(case: str | Path, output_dir: str | Path) -> bool:
    """True if the output of challenge case ``case`` in ``output_dir`` is complete (see the module doc)."""
    return segs_complete(Path(output_dir) / Path(case).name, expected_shape(case))


@dataclass(frozen=True)
class RunSettings:
    """What decides a cohort's outputs (paths resolved); threads and memory bounds do not."""

    inputs: str
    models_dir: str
    routing: str
    precision: str
    fast: bool
    options: dict

    def mismatch(self, folder: Path) -> str | None:
        """None if ``folder`` has no settings file or the same settings, else what differs."""
        path = folder / SETTINGS_FILE
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            return f"{path} is unreadable ({e})"
        ours = asdict(self)
        changed = [k for k in ours if saved.get(k) != ours[k]]
        return f"{', '.join(changed)} differ (see {path})" if changed else None

    def save(self, folder: Path) -> None:
        atomic_write_text(folder / SETTINGS_FILE, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
