"""Give back the resident pages of read-only files OpenVINO keeps mapped (Linux only).

A model loaded from the compiled-model cache maps its ``.blob`` file (an IR compiled without a
cache: its ``.bin``) and keeps it mapped, but the CPU plugin repacks the weights into its own
buffers while compiling, so the mapped copy (the image encoder's FP16 weights: about 60 MB)
stays resident without being needed. ``MADV_DONTNEED`` on a read-only file mapping only drops
the process's pages: a page that is read again is faulted back in from the file (the page
cache), so nothing can change but the resident size. That is what the challenge's memory measurement and a laptop's RAM see.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("daftseg.inference")

MADV_DONTNEED = 4  # Linux


def release_mapped_pages(folders: Iterable[str | Path], suffixes: tuple[str, ...] = (".blob", ".bin")) -> int:
    """Drop the resident pages of this process's read-only mappings of ``*suffixes`` files in ``folders``.

    Returns the number of bytes of mappings advised (0 where unsupported: not Linux, no libc).
    """
    if not sys.platform.startswith("linux"):
        return 0
    prefixes = tuple(str(Path(f).resolve()) + "/" for f in folders)
    try:
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
        madvise = _madvise()
    except (OSError, AttributeError) as e:
        log.debug("cannot release mapped pages: %s", e)
        return 0
    released = 0
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "w" in parts[1]:
            continue
        path = parts[5]
        if path.startswith(prefixes) and path.endswith(suffixes):
            start, end = (int(v, 16) for v in parts[0].split("-"))
            if madvise(start, end - start, MADV_DONTNEED) == 0:
                released += end - start
    return released


@functools.cache
def _madvise():
    """libc's ``madvise`` from the running process's own symbols.

    ``ctypes.util.find_library`` would start ``ldconfig`` (a fork of a process holding a few
    hundred MB) on every call.
    """
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise
