"""Which modality a scan is: the one given, a DICOM Modality tag, or (on request) a file-name guess.

The modality picks the intensity rule (CT windowed, anything else percentile-clipped) and, through
the case name ``<2D|3D>Box_<modality>``, the model the routing table runs.
"""

from __future__ import annotations

from daftseg.io.grid import Geometry

# modalities of 3D scans, as they appear in challenge case names (prefix routing, spec §7.3)
MODALITIES_3D = ("CT", "MR", "PET")
# modalities of 2D pictures, as they appear in challenge case names
MODALITIES_2D = ("X-Ray", "US", "Fundus", "Endoscopy", "Dermoscopy", "Microscope", "Mammography", "OCT")
DICOM_MODALITY = {"CT": "CT", "MR": "MR", "PT": "PET"}  # DICOM (0008,0060) -> case-name modality


def scan_modality(geometry: Geometry, modality: str | None) -> str | None:
    """The modality given, else the one a DICOM Modality tag names (CT, MR, PT -> PET), else None."""
    if modality:
        return modality
    return DICOM_MODALITY.get(geometry.modality or "")


def guess_modality(name: str, is_3d: bool) -> str:
    """The modality a file name suggests (``..._CT_...`` -> CT); CT for other volumes, '' for pictures.

    A word of the name (split at ``_`` and ``.``), its start, or a ``_``-prefixed part counts; ``-``
    and case are ignored, so ``x-ray_1.png`` and ``XRAY1.png`` are both X-Ray.
    """
    upper = name.upper().replace("-", "").replace(" ", "_")
    table = MODALITIES_3D if is_3d else MODALITIES_2D
    for m in table:
        key = m.upper().replace("-", "")
        if key in upper.replace(".", "_").split("_") or upper.startswith(key) or f"_{key}" in upper:
            return m
    if not is_3d and ("XRAY" in upper or "CXR" in upper):
        return "X-Ray"
    return "CT" if is_3d else ""
