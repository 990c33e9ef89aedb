"""How the app shows stored slices (daftseg.io.orientation): expectations written out by hand from
the LPS convention (+x left, +y posterior, +z superior) for each grid a scanner or converter writes."""

from __future__ import annotations

import numpy as np
import pytest

from daftseg.io.grid import Geometry
from daftseg.io.orientation import signed_permutation, slice_view

AXIAL_EDGES = {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def grid(columns, fmt: str = "nifti") -> Geometry:
    """A 3D grid whose voxel axes i, j, k point along the given world vectors (the direction's columns)."""
    matrix = np.array(columns, dtype=np.float64).T
    return Geometry((4, 5, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(matrix.ravel()), "zyx", fmt)


@pytest.mark.parametrize("columns, expected", [
    # LPS as DICOM stores axial slices: rows run to posterior, columns to the patient's left
    ([(1, 0, 0), (0, 1, 0), (0, 0, 1)], (False, False, False, "axial", AXIAL_EDGES)),
    # RAS as dcm2niix writes: columns run to the right, rows to anterior -> mirror both
    ([(-1, 0, 0), (0, -1, 0), (0, 0, 1)], (False, True, True, "axial", AXIAL_EDGES)),
    # x and y swapped: columns run to posterior, rows to the left -> transpose
    ([(0, 1, 0), (1, 0, 0), (0, 0, 1)], (True, False, False, "axial", AXIAL_EDGES)),
    # swapped and RAS-like: columns to anterior, rows to the right -> transpose and mirror both
    ([(0, -1, 0), (-1, 0, 0), (0, 0, -1)], (True, True, True, "axial", AXIAL_EDGES)),
    # coronal slices (k along posterior), rows to inferior: superior up as stored
    ([(1, 0, 0), (0, 0, -1), (0, 1, 0)], (False, False, False, "coronal",
                                          {"left": "R", "right": "L", "top": "S", "bottom": "I"})),
    # coronal with rows to superior: mirror top-bottom
    ([(1, 0, 0), (0, 0, 1), (0, 1, 0)], (False, False, True, "coronal",
                                         {"left": "R", "right": "L", "top": "S", "bottom": "I"})),
    # sagittal (k along left), columns to posterior, rows to inferior: anterior on the left as stored
    ([(0, 1, 0), (0, 0, -1), (1, 0, 0)], (False, False, False, "sagittal",
                                          {"left": "A", "right": "P", "top": "S", "bottom": "I"})),
])
def test_signed_permutations_are_shown_radiologically(columns, expected):
    view = slice_view(grid(columns))
    assert (view.transpose, view.flip_x, view.flip_y, view.plane, view.edges) == expected


def test_oblique_grids_are_shown_as_stored_and_say_so():
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    view = slice_view(grid([(c, s, 0), (-s, c, 0), (0, 0, 1)]))
    assert view.plane == "as stored (oblique)" and view.edges is None
    assert (view.transpose, view.flip_x, view.flip_y) == (False, False, False)


def test_a_tilt_within_the_tolerance_still_counts_as_axial():
    c, s = np.cos(np.radians(0.3)), np.sin(np.radians(0.3))  # 0.3 degrees: off-axis cosine 0.0052
    assert slice_view(grid([(c, 0, s), (0, 1, 0), (-s, 0, c)])).plane == "axial"
    c, s = np.cos(np.radians(2)), np.sin(np.radians(2))  # 2 degrees: 0.035, oblique
    assert slice_view(grid([(c, 0, s), (0, 1, 0), (-s, 0, c)])).plane == "as stored (oblique)"


def test_pictures_and_npz_carry_no_orientation():
    assert slice_view(grid([(1, 0, 0), (0, 1, 0), (0, 0, 1)], fmt="npz")).plane == "as stored"
    flat = Geometry((4, 5), (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0), "yx", "nifti")
    assert slice_view(flat).edges is None


def test_signed_permutation_reads_columns():
    assert signed_permutation(np.array([[0, -1, 0], [0, 0, 1], [1, 0, 0]])) == [(2, 1), (0, -1), (1, 1)]
    assert signed_permutation(np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]])) is None  # two axes on x
