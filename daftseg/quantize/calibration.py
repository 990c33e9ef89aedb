"""Cases an INT8 image encoder is calibrated on and checked against (``--calibration``, ``--calibration_mr``).

Sources:

- a folder (``--calibration DIR``) of challenge cases (``imgs`` + ``boxes``, ground truth from a
  ``gts`` key or from ``DIR/../gts/<same name>`` when the cases lie in ``DIR/imgs``) and/or training
  files (``imgs`` + ``gts``: boxes from the labels, one per label). Of model ``<Name>`` only the
  files the routing table sends to it are used, or every file when none is routed there;
- by default, seeded synthetic cases of every modality (``CALIBRATION_SEED``, not the seed of the
  demo and test cases) plus a real MR volume (the MNI152 T1 the demo fetches), as two 3D cases: the
  lower and upper half of the volume in z, each with the box of the head's foreground (Otsu
  threshold) in that half, the volume thinned to ``MR_MAX_SLICES`` slices so that the gate stays
  quick on real models.

``split`` holds part of the cases out for the gate; ``encoder_inputs`` turns the rest into the
exact inputs the runtime feeds the encoder (``geometry.preprocess_image``): a 2D case's image, a
spread of slices inside a 3D case's boxes.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.inference.npz_io import Case, CaseError, make_case

Log = Callable[[str], None]

CALIBRATION_SEED = 9157  # the demo and the tests use synthetic.DEFAULT_SEED (2024)
SYNTHETIC_PER_PREFIX = 2
SYNTHETIC_SIZE = 256  # longest in-plane side: the encoder sees 256x256 anyway
SYNTHETIC_MAX_SLICES = 16
SLICES_PER_3D_CASE = 8  # encoder inputs taken from one 3D case (evenly spread in its boxes' z range)
MR_MAX_SLICES = 48  # the MR volume is thinned to this many slices before it is cut in two halves
DEMO_MR = Path("test_demo") / "scans" / "mni152_t1.nii.gz"
NO_MR = "none"


@dataclass
class CalibrationCase:
    """One case: the validated ``Case`` (imgs, boxes, 2D/3D) and its ground truth when known."""

    case: Case
    gts: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.case.name


@dataclass
class CalibrationSet:
    """Cases and a one-line description of where they came from (printed and recorded)."""

    source: str
    cases: list[CalibrationCase]

    def describe(self) -> str:
        n3d = sum(c.case.is_3d for c in self.cases)
        return f"{self.source}: {len(self.cases)} cases ({len(self.cases) - n3d} 2D, {n3d} 3D)"


class CalibrationError(ValueError):
    """The calibration data cannot be used (the message names the folder or file and why)."""


# -- a folder of npz files -----------------------------------------------------------------------
def folder_files(folder: Path) -> tuple[list[Path], Path | None]:
    """The ``*.npz`` of ``folder`` (of ``folder/imgs`` when that exists) and the ground-truth folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: no such folder")
    if (folder / "imgs").is_dir():
        gts = folder / "gts"
        return sorted((folder / "imgs").glob("*.npz")), gts if gts.is_dir() else None
    sibling = folder.parent / "gts"
    return sorted(folder.glob("*.npz")), sibling if folder.name == "imgs" and sibling.is_dir() else None


def routed_files(files: Sequence[Path], model: str, routing=None) -> tuple[list[Path], bool]:
    """The files the routing table sends to ``model`` (a name no rule matches goes to the fallback);
    every file when none goes there. Returns (files, whether the routing selected them)."""
    from daftseg.inference.routing import RoutingTable

    table = routing or RoutingTable.load()
    mine = [f for f in files if (table.match(f.name)[0] or table.fallback) == model]
    return (mine, True) if mine else (list(files), False)


def read_npz_case(path: Path, gts_dir: Path | None = None) -> CalibrationCase:
    """A challenge case (``imgs`` + ``boxes``) or a training file (``imgs`` + ``gts``) as a case."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if "imgs" not in keys:
                raise CalibrationError(f"{path}: no 'imgs' array (keys: {', '.join(sorted(keys)) or 'none'})")
            imgs = z["imgs"]
            boxes = z["boxes"] if "boxes" in keys else None
            gts = z["gts"] if "gts" in keys else None
    except CalibrationError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file is skipped with its reason
        raise CalibrationError(f"{path}: unreadable npz ({type(e).__name__}: {e})") from None
    if gts is None and gts_dir is not None and (gts_dir / path.name).is_file():
        try:
            with np.load(gts_dir / path.name, allow_pickle=False) as z:
                gts = z["gts"] if "gts" in z.files else None
        except Exception as e:  # noqa: BLE001
            raise CalibrationError(f"{gts_dir / path.name}: unreadable ground truth ({e})") from None
    if boxes is None:
        if gts is None:
            raise CalibrationError(f"{path}: neither 'boxes' nor 'gts' (a case needs box prompts)")
        from daftseg.io.label_boxes import boxes_from_labels, relabel_consecutive

        gts, _ = relabel_consecutive(np.asarray(gts))
        boxes = boxes_from_labels(gts)
        is_3d = gts.ndim == 3  # training files have no 3DBox_ name: the labels tell
    else:
        is_3d = None  # DAFT's rule: by the file name
    try:
        case = make_case(path.name, imgs, boxes, is_3d=is_3d)
    except CaseError as e:
        raise CalibrationError(f"{path}: {e}") from None
    if gts is not None and tuple(np.shape(gts)) != case.spatial_shape:
        gts = None  # ground truth of another shape cannot score this image
    if len(case.boxes) == 0:
        raise CalibrationError(f"{path}: no boxes (nothing to segment)")
    return CalibrationCase(case, None if gts is None else np.asarray(gts))


def folder_set(folder: Path, model: str, routing=None, log: Log = print) -> CalibrationSet:
    """The cases of ``folder`` for ``model`` (routed files, else all); unreadable files are skipped."""
    files, gts_dir = folder_files(folder)
    if not files:
        raise CalibrationError(f"{folder}: no *.npz files")
    chosen, routed = routed_files(files, model, routing)
    cases = []
    for path in chosen:
        try:
            cases.append(read_npz_case(path, gts_dir))
        except CalibrationError as e:
            log(f"  skipped {e}")
    if not cases:
        raise CalibrationError(f"{folder}: none of the {len(chosen)} files could be used")
    which = (f"the {len(chosen)} of {len(files)} files routed to {model}" if routed
             else f"all {len(files)} files (none is routed to {model})")
    return CalibrationSet(f"folder {folder}, {which}", cases)


# -- the built-in set ----------------------------------------------------------------------------
def synthetic_cases(seed: int = CALIBRATION_SEED, per_prefix: int = SYNTHETIC_PER_PREFIX,
                    size: int = SYNTHETIC_SIZE, max_slices: int = SYNTHETIC_MAX_SLICES) -> list[CalibrationCase]:
    """Seeded synthetic cases of every modality prefix, with their ground truth."""
    from daftseg.data.synthetic import PREFIXES, case_name
    from daftseg.data.synthetic import make_case as make_synthetic

    cases = []
    for prefix in PREFIXES:
        for index in range(1, per_prefix + 1):
            s = make_synthetic(prefix, seed=seed, index=index, size=size, max_slices=max_slices)
            cases.append(CalibrationCase(make_case(case_name(prefix, index), s.imgs, s.boxes), s.gts))
    return cases


def default_mr_path(cache_dir: Path | None = None, log: Log = print) -> Path:
    """The demo's MNI152 T1 if present, else fetched (``demo_scans.fetch_mni``) into the cache folder."""
    repo_copy = Path(__file__).resolve().parents[2] / DEMO_MR
    for candidate in (DEMO_MR, repo_copy):
        if candidate.is_file():
            return candidate
    from daftseg.demo_scans import MNI_SHA256, fetch_mni

    cache = Path(cache_dir) if cache_dir else mr_cache_dir()
    if not all((cache / f"mni152_{k}.nii.gz").is_file() for k in MNI_SHA256):  # fetch_mni's names
        log(f"  fetching the MNI152 T1 template into {cache} (pip download of the nilearn wheel)")
    return fetch_mni(cache)["t1"]


def mr_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "daftseg" / "mni152"


def mr_cases(path: Path, max_slices: int = MR_MAX_SLICES) -> list[CalibrationCase]:
    """Two 3D cases from an MR volume: its lower and upper half in z, one foreground box each."""
    import cv2

    from daftseg.io import read_scan

    volume = read_scan(path, modality="MR").image  # 0..255 as daftseg-segment reads it
    if volume.ndim != 3 or volume.shape[0] < 4:
        raise CalibrationError(f"{path}: not a 3D volume (shape {volume.shape})")
    keep = np.unique(np.linspace(0, volume.shape[0] - 1, min(max_slices, volume.shape[0])).round().astype(int))
    volume = np.ascontiguousarray(volume[keep])
    level, _ = cv2.threshold(volume.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = volume > level
    stem = Path(path).name.split(".")[0]
    cases = []
    half = volume.shape[0] // 2
    for part, (lo, hi) in (("lower", (0, half)), ("upper", (half, volume.shape[0]))):
        sub = np.ascontiguousarray(volume[lo:hi])
        zs, ys, xs = np.nonzero(mask[lo:hi])
        if zs.size == 0:
            continue
        box = np.array([[xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()]], np.int64)
        cases.append(CalibrationCase(make_case(f"3DBox_MR_{stem}_{part}.npz", sub, box)))
    if not cases:
        raise CalibrationError(f"{path}: no foreground above the Otsu threshold {level:.0f}")
    return cases


def builtin_set(mr: str | None = None, cache_dir: Path | None = None, log: Log = print) -> CalibrationSet:
    """The synthetic set plus the MR volume (``mr``: a NIfTI path, ``none``, or None for the default).

    An MR volume that cannot be had is said in one line; the synthetic set is used alone then.
    """
    cases = synthetic_cases()
    source = (f"built-in synthetic set (seed {CALIBRATION_SEED}, {SYNTHETIC_PER_PREFIX} cases per modality, "
              f"longest side {SYNTHETIC_SIZE})")
    if mr is not None and mr.lower() == NO_MR:
        return CalibrationSet(source + ", no MR volume (--calibration_mr none)", cases)
    try:
        path = Path(mr) if mr else default_mr_path(cache_dir, log)
        if not path.is_file():
            raise CalibrationError(f"{path}: no such file")
        extra = mr_cases(path)
    except Exception as e:  # noqa: BLE001 - the synthetic set still calibrates
        log(f"  no MR volume for calibration ({type(e).__name__}: {e}); using the synthetic set alone")
        return CalibrationSet(source + ", no MR volume (unavailable)", cases)
    return CalibrationSet(source + f" + MR volume {path} ({len(extra)} 3D cases)", cases + extra)


# -- split and encoder inputs ---------------------------------------------------------------------
def split(cases: Sequence[CalibrationCase], holdout: float) -> tuple[list[CalibrationCase], list[CalibrationCase]]:
    """(calibration, held out): ``round(holdout * n)`` cases (at least 1, at most n-1) held out, those
    first in the order of a hash of the name: deterministic, independent of the order the files are
    listed in, and spread over modalities rather than the first names. Both parts keep name order."""
    if len(cases) < 2:
        raise CalibrationError(f"{len(cases)} case(s): at least 2 are needed (one to calibrate, one to check)")
    n_out = min(len(cases) - 1, max(1, round(holdout * len(cases))))
    ranked = sorted(cases, key=lambda c: (zlib.crc32(c.name.encode()), c.name))
    out = {c.name for c in ranked[:n_out]}
    by_name = sorted(cases, key=lambda c: c.name)
    return [c for c in by_name if c.name not in out], [c for c in by_name if c.name in out]


def slice_indices(case: Case, per_case: int = SLICES_PER_3D_CASE) -> list[int]:
    """Up to ``per_case`` slices evenly spread over those the runtime encodes for a 3D case (its
    boxes' z ranges as ``boxes.plan_3d`` reads them: z_max excluded, as DAFT); none if it refuses the boxes."""
    from daftseg.inference.boxes import plan_3d

    try:
        plans = plan_3d(case.boxes, case.imgs.shape)
    except CaseError:
        return []
    encoded = sorted({z for p in plans for z in range(p.lo, p.hi)})
    if len(encoded) <= per_case:
        return encoded
    return [encoded[i] for i in np.linspace(0, len(encoded) - 1, per_case).round().astype(int)]


def encoder_inputs(cases: Sequence[CalibrationCase], per_case: int = SLICES_PER_3D_CASE) -> list[np.ndarray]:
    """(1,3,256,256) float32 encoder inputs, exactly as the runtime makes them."""
    from daftseg.geometry import preprocess_image

    images = []
    for c in cases:
        if c.case.is_3d:
            images += [preprocess_image(c.case.imgs[z])[0] for z in slice_indices(c.case, per_case)]
        else:
            images.append(preprocess_image(c.case.imgs)[0])
    return images
