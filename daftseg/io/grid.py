"""The scan's voxel grid, ``Geometry`` (size, spacing, origin, direction), and index <-> world conversions.

Not to be confused with ``daftseg.geometry``, the model's preprocessing (resize, pad, box scaling).

Conventions (SimpleITK's, which are ITK's and DICOM's):

- Voxel **index** ``(i, j, k)`` = ``(x, y, z)``: ``i`` the column, ``j`` the row, ``k`` the slice,
  0-based. This is the index 3D Slicer shows as IJK and the voxel order of a NIfTI file.
  The runtime's arrays are indexed the other way round: a 3D array is (D, H, W) = (z, y, x), so
  voxel ``(i, j, k)`` is ``array[k, j, i]``; a 2D array is (H, W[, 3]) = (y, x), pixel ``(i, j)`` is
  ``array[j, i]``.
- **World** points in millimetres, LPS (x grows to the patient's left, y to posterior, z to
  superior), as DICOM and ITK use. 3D Slicer displays RAS: negate its x and y.
- ``world = origin + direction @ (spacing * index)``; ``direction`` is row-major, its column ``j``
  the world direction of index axis ``j``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of a scan, in SimpleITK's (x, y[, z]) order.

    size: voxels per index axis; spacing: mm per index axis; origin: world point (LPS mm) of voxel
    index 0; direction: row-major ndim x ndim cosines; axes: the runtime array's axis order,
    ``"zyx"`` for (D, H, W) volumes and ``"yx"`` for (H, W[, 3]) images; source_format: ``nifti``,
    ``dicom``, ``nrrd``, ``mha``, ``image`` (PNG/JPG/TIFF/BMP), ``npz`` or another SimpleITK format;
    series_uid: the DICOM SeriesInstanceUID; modality: the DICOM Modality tag (``CT``, ``MR``,
    ``PT``...); source: the path read, for messages.
    """

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    axes: str
    source_format: str
    series_uid: str | None = None
    modality: str | None = None
    source: str = ""

    @classmethod
    def identity(cls, size: tuple[int, ...], source_format: str, source: str = "",
                 spacing: tuple[float, ...] | None = None) -> Geometry:
        """A grid with 1 mm (or ``spacing``) voxels, origin 0 and identity direction (pictures, npz)."""
        n = len(size)
        spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * n
        return cls(tuple(int(s) for s in size), spacing, (0.0,) * n,
                   tuple(float(v) for v in np.eye(n).ravel()), "zyx" if n == 3 else "yx", source_format,
                   source=source)

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def array_shape(self) -> tuple[int, ...]:
        """Spatial shape of the runtime's array: (D, H, W) or (H, W)."""
        return tuple(reversed(self.size))

    @property
    def matrix(self) -> np.ndarray:
        """(ndim, ndim) direction matrix."""
        return np.asarray(self.direction, dtype=np.float64).reshape(self.ndim, self.ndim)

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """(N, ndim) voxel indices (x, y[, z]), integer or continuous -> (N, ndim) world points in mm."""
        index = np.atleast_2d(np.asarray(index, dtype=np.float64))
        return np.asarray(self.origin) + (index * np.asarray(self.spacing)) @ self.matrix.T

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """(N, ndim) world points in mm -> (N, ndim) continuous voxel indices (x, y[, z])."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        local = np.linalg.solve(self.matrix, (points - np.asarray(self.origin)).T).T
        return local / np.asarray(self.spacing)

    def world_box_to_index(self, box: np.ndarray) -> np.ndarray:
        """A world-space box ``[min corner, max corner]`` (2 * ndim mm) -> integer index box, same layout.

        Every corner of the box goes to its nearest voxel; the result is the index-space bounding box
        of those corners, so a box on a rotated grid covers at least the voxels it touches.
        """
        box = np.asarray(box, dtype=np.float64)
        n = self.ndim
        lo, hi = box[:n], box[n:]
        corners = np.array([[hi[a] if (c >> a) & 1 else lo[a] for a in range(n)] for c in range(2 ** n)])
        idx = np.rint(self.world_to_index(corners))
        return np.concatenate([idx.min(axis=0), idx.max(axis=0)]).astype(np.int64)

    def to_dict(self) -> dict:
        """JSON-ready description (lists, not tuples)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
