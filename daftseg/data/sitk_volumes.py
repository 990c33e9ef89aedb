"""Medical volumes for the converters: the readers and the grid check live in ``daftseg.io.medical``.

Kept so that ``from daftseg.data.sitk_volumes import read_volume`` (and the other names) goes on
working; there is one copy of each reader, shared with ``daftseg-segment``.
"""

from daftseg.io.medical import (
    DIRECTION_ATOL,
    ORIGIN_VOXEL_FRACTION,
    SPACING_RTOL,
    GeometryError,
    Volume,
    check_same_geometry,
    read_dicom_series,
    read_volume,
    read_volume_file,
)

__all__ = ["DIRECTION_ATOL", "ORIGIN_VOXEL_FRACTION", "SPACING_RTOL", "GeometryError", "Volume",
           "check_same_geometry", "read_dicom_series", "read_volume", "read_volume_file"]
