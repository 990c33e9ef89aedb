"""Scans and a client for the app tests (tests/test_app*.py): a synthetic CT NIfTI and an RGB PNG."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from scan_writers import ROTATED, write_volume

CT_SHAPE = (10, 40, 48)  # (z, y, x)
PNG_SHAPE = (60, 80)


def synthetic_ct() -> np.ndarray:
    """Air with a growing ellipse (60 HU) and a bright disc (200 HU): masks follow the image."""
    yy, xx = np.mgrid[:CT_SHAPE[1], :CT_SHAPE[2]]
    ct = np.full(CT_SHAPE, -1000, np.int16)
    for z in range(CT_SHAPE[0]):
        ct[z][(yy - 15) ** 2 / 60 + (xx - 16) ** 2 / 80 < 1 + 0.1 * z] = 60
        ct[z][(yy - 27) ** 2 + (xx - 34) ** 2 < 30 + 2 * z] = 200
    return ct


def synthetic_rgb() -> np.ndarray:
    yy, xx = np.mgrid[:PNG_SHAPE[0], :PNG_SHAPE[1]]
    rgb = np.zeros((*PNG_SHAPE, 3), np.uint8)
    rgb[..., 0] = 40 + (xx * 2) % 60
    rgb[(yy - 25) ** 2 + (xx - 30) ** 2 < 150] = (220, 180, 90)
    rgb[(yy - 40) ** 2 / 2 + (xx - 55) ** 2 < 120] = (90, 200, 240)
    return rgb


def write_data(folder: Path) -> Path:
    """``folder`` with ct.nii.gz (rotated grid, anisotropic spacing) and photo.png."""
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(folder / "ct.nii.gz", synthetic_ct(), direction=ROTATED)
    cv2.imwrite(str(folder / "photo.png"), cv2.cvtColor(synthetic_rgb(), cv2.COLOR_RGB2BGR))
    return folder


def wait_job(client, sid: str, timeout: float = 60.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        job = client.get(f"/api/scans/{sid}/job").json()
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError(f"propagation did not finish in {timeout} s")
