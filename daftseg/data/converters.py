"""Convert NIfTI / DICOM volumes and 2D images with their label masks to the challenge format.

Outputs (spec §3.2), the same file name in both folders:
    ``<out>/imgs/<name>.npz``: ``imgs`` (D, H, W) uint8 or (H, W, 3) uint8, ``boxes`` (N, 6) or (N, 4)
        int64, and for 3D ``spacing`` (3,) float64
    ``<out>/gts/<name>.npz``: ``gts`` (same spatial shape, labels 1..N, box i-1 <-> label i), and
        for 3D ``spacing``
    or, with ``--training``, one training-format file ``<out>/<name>.npz`` (``imgs``, ``gts``[, ``spacing``]).

Spacing convention: arrays are stored (z, y, x) (SimpleITK's ``GetArrayFromImage`` order), and by
default ``spacing`` is stored in the SAME axis order, (z, y, x) in mm, i.e. SimpleITK's
``GetSpacing()`` reversed. ``evaluation/compute_metrics.py`` passes ``spacing`` unchanged together
with the (D, H, W) arrays to the surface-distance code, which needs one spacing per array axis,
so this order makes NSD's 2 mm tolerance physically right for anisotropic volumes. MedSAM's
``pre_CT_MR.py`` stored ``GetSpacing()`` as is, i.e. (x, y, z); ``--spacing_order xyz`` writes
that order for compatibility with files made by it (NSD is then computed with z and x swapped).

Intensities (``daftseg.data.intensity``): CT is windowed (default abdomen, WL 40 / WW 400), MR and
PET are clipped to the 0.5-99.5 percentiles of the positive voxels, both rescaled to 0..255 uint8
as ``pre_CT_MR.py`` does; 2D uint8 images are kept, wider ones percentile-clipped.

Boxes come from the labels: one per label id (relabelled to 1..N in increasing id order), or with
``--instances`` one per connected component. 3D boxes span the object's x, y and z extent.
``--jitter PX`` moves in-plane box edges by up to PX pixels (seeded).

CLI:
    python -m daftseg.data.converters nifti ct.nii.gz ct_label.nii.gz -o out --modality CT --window abdomen
    python -m daftseg.data.converters dicom dicom_dir/ label.nii.gz -o out      # modality from the DICOM tag
    python -m daftseg.data.converters image photo.png mask.png -o out --modality Dermoscopy --instances
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from daftseg.data.intensity import CT_WINDOWS, percentile_clip, to_uint8_range, window_ct
from daftseg.data.label_boxes import boxes_from_labels, instance_labels, jitter_boxes
from daftseg.data.sitk_volumes import GeometryError, Volume, check_same_geometry, read_volume
from daftseg.geometry import to_rgb

# Modality names as they appear in challenge case names (prefix routing, spec §7.3).
MODALITIES_3D = ("CT", "MR", "PET")
MODALITIES_2D = ("X-Ray", "US", "Fundus", "Endoscopy", "Dermoscopy", "Microscope", "Mammography", "OCT",
                 "CT", "MR")
DICOM_MODALITY = {"CT": "CT", "MR": "MR", "PT": "PET"}  # DICOM (0008,0060) -> case-name modality
DEFAULT_SEED = 2024


@dataclass
class Converted:
    """One converted case.

    imgs: (D, H, W) or (H, W, 3) uint8; gts: same spatial shape, labels 1..N; boxes: (N, 6) or
    (N, 4) int64, box i-1 <-> label i; spacing: (3,) float64 in ``spacing_order`` (3D) or None;
    source_ids: (N,) the input label id each object came from.
    """

    imgs: np.ndarray
    gts: np.ndarray
    boxes: np.ndarray
    spacing: np.ndarray | None
    source_ids: np.ndarray
    spacing_order: str = "zyx"


def integer_labels(array: np.ndarray, source: str) -> np.ndarray:
    """Label array as integers; refuse fractional or negative values (an image given as a label)."""
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise ValueError(f"{source}: label values are not integers (is this an image, not a label map?)")
        array = rounded.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{source}: negative label values")
    return array


def labels_to_objects(labels: np.ndarray, instances: bool = False,
                      min_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Objects 1..N from a label map: one per label id, or one per connected component.

    Objects smaller than ``min_size`` pixels/voxels are dropped (MedSAM's preprocessing drops
    tiny ones too). Returns (gts with labels 1..N in the smallest unsigned dtype, (N,) source label id).
    """
    objects = instance_labels(labels) if instances else labels
    ids = np.unique(objects)
    ids = ids[ids > 0]
    if min_size > 0:
        counts = np.bincount(objects.ravel().astype(np.int64), minlength=int(ids.max(initial=0)) + 1)
        ids = ids[counts[ids] >= min_size]
    if ids.size == 0:
        raise ValueError("the label map has no foreground object" + (f" of at least {min_size} voxels"
                                                                      if min_size else ""))
    lut = np.zeros(int(objects.max()) + 1, dtype=np.int64)
    lut[ids] = np.arange(1, ids.size + 1)
    gts = lut[objects]
    dtype = np.uint8 if ids.size < 256 else np.uint16 if ids.size < 65536 else np.uint32
    gts = gts.astype(dtype)
    # Source id of each object: the input label value at the object's first voxel.
    nz = np.flatnonzero(gts)
    first = np.unique(gts.ravel()[nz], return_index=True)[1]
    return gts, labels.ravel()[nz[first]].astype(np.int64)


def normalise_volume(array: np.ndarray, modality: str, intensity: str = "auto",
                     window: tuple[float, float] = CT_WINDOWS["abdomen"]) -> np.ndarray:
    """(z, y, x) raw volume -> uint8, as ``pre_CT_MR.py``.

    Args:
        intensity: ``auto`` (CT: window, MR/PET: percentile), ``window``, ``percentile``, or
            ``none`` (data already in 0..255; cast only).
        window: (level, width) in HU for ``window``.
    """
    if intensity == "auto":
        intensity = "window" if modality == "CT" else "percentile"
    if intensity == "window":
        return window_ct(array, *window)
    if intensity == "percentile":
        return percentile_clip(array)
    if intensity == "none":
        if array.min() < 0 or array.max() > 255:
            raise ValueError(f"--intensity none needs values in 0..255, got {array.min()}..{array.max()}")
        return array.astype(np.uint8)
    raise ValueError(f"unknown intensity mode {intensity!r}")


def convert_volume(image: Volume, label: Volume, modality: str, *, intensity: str = "auto",
                   window: tuple[float, float] = CT_WINDOWS["abdomen"], instances: bool = False,
                   min_size: int = 0, jitter: int = 0, seed: int = DEFAULT_SEED,
                   spacing_order: str = "zyx", check_geometry: bool = True) -> Converted:
    """A 3D image and its label volume -> challenge arrays (see the module docstring).

    Args:
        check_geometry: False checks only the array size (spacing, origin and direction may differ).
    """
    if spacing_order not in ("zyx", "xyz"):
        raise ValueError(f"spacing_order must be 'zyx' or 'xyz', got {spacing_order!r}")
    if check_geometry:
        check_same_geometry(image, label)
    elif image.array.shape != label.array.shape:
        raise GeometryError(f"image {image.source} has (z, y, x) size {image.array.shape} but label "
                            f"{label.source} has {label.array.shape}")
    gts, source_ids = labels_to_objects(integer_labels(label.array, label.source), instances, min_size)
    imgs = normalise_volume(image.array, modality, intensity, window)
    boxes = jitter_boxes(boxes_from_labels(gts), gts.shape, jitter, np.random.default_rng(seed))
    spacing_xyz = np.asarray(image.spacing_xyz, dtype=np.float64)
    spacing = spacing_xyz[::-1].copy() if spacing_order == "zyx" else spacing_xyz
    return Converted(imgs, gts, boxes, spacing, source_ids, spacing_order)


def read_image_2d(path: Path) -> np.ndarray:
    """PNG/JPG/TIFF/BMP -> (H, W, 3) uint8 RGB; grey is repeated, alpha dropped, wide types percentile-clipped."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"OpenCV cannot read image {path}")
    if image.ndim == 3 and image.shape[2] >= 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return to_rgb(to_uint8_range(image))


def read_mask_2d(path: Path) -> np.ndarray:
    """Mask image -> (H, W) integer labels.

    Grey masks keep their values (0/255 masks become one object after relabelling); colour
    masks with unequal channels get one label per distinct colour (black is background),
    numbered in sorted colour order.
    """
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ValueError(f"OpenCV cannot read mask {path}")
    if mask.ndim == 3:
        mask = mask[:, :, :3]
        if (mask == mask[:, :, :1]).all():
            mask = mask[:, :, 0]
        else:
            colours, inverse = np.unique(mask.reshape(-1, 3), axis=0, return_inverse=True)
            # Sorted colours start with black when there is any: black -> 0, the rest -> 1..
            offset = 0 if not colours[0].any() else 1
            mask = (inverse.ravel() + offset).reshape(mask.shape[:2])
    return integer_labels(mask, str(path))


def convert_image(image_path: Path, mask_path: Path, *, instances: bool = False, min_size: int = 0,
                  jitter: int = 0, seed: int = DEFAULT_SEED) -> Converted:
    """A 2D image and its mask image -> challenge arrays ((H, W, 3) uint8, (N, 4) boxes, no spacing)."""
    imgs = read_image_2d(Path(image_path))
    labels = read_mask_2d(Path(mask_path))
    if labels.shape != imgs.shape[:2]:
        raise GeometryError(f"image {image_path} is {imgs.shape[0]}x{imgs.shape[1]} (HxW) but mask "
                            f"{mask_path} is {labels.shape[0]}x{labels.shape[1]}")
    gts, source_ids = labels_to_objects(labels, instances, min_size)
    boxes = jitter_boxes(boxes_from_labels(gts), gts.shape, jitter, np.random.default_rng(seed))
    return Converted(imgs, gts, boxes, None, source_ids)


def write_converted(case: Converted, out_dir: Path, name: str, training: bool = False) -> list[Path]:
    """Write the challenge pair (``imgs/`` + ``gts/``) or one training-format file; returns the paths."""
    name = name if name.endswith(".npz") else name + ".npz"
    out_dir = Path(out_dir)
    extra = {} if case.spacing is None else {"spacing": case.spacing}
    if training:
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out_dir / name, imgs=case.imgs, gts=case.gts, **extra)
        return [out_dir / name]
    (out_dir / "imgs").mkdir(parents=True, exist_ok=True)
    (out_dir / "gts").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "imgs" / name, imgs=case.imgs, boxes=case.boxes, **extra)
    np.savez_compressed(out_dir / "gts" / name, gts=case.gts, **extra)
    return [out_dir / "imgs" / name, out_dir / "gts" / name]


def _stem(path: Path) -> str:
    """File name without .nii.gz / .nii / image suffix; a folder's own name."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m daftseg.data.converters",
                                     description="Convert NIfTI/DICOM volumes or 2D images with label masks "
                                                 "to challenge npz files (<out>/imgs, <out>/gts).")
    sub = parser.add_subparsers(dest="kind", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--out_dir", type=Path, required=True)
    common.add_argument("--name", default=None,
                        help="case name (default <2D|3D>Box_<modality>_<input stem>); '.npz' is added")
    common.add_argument("--instances", action="store_true",
                        help="one box per connected component instead of one per label id")
    common.add_argument("--min_size", type=int, default=0, help="drop objects with fewer pixels/voxels")
    common.add_argument("--jitter", type=int, default=0, help="move box edges by up to PX pixels (default 0)")
    common.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the jitter")
    common.add_argument("--training", action="store_true",
                        help="write one training-format npz (imgs, gts) into OUT_DIR instead")
    volume = argparse.ArgumentParser(add_help=False)
    volume.add_argument("--intensity", choices=("auto", "window", "percentile", "none"), default="auto",
                        help="auto: CT windowing, MR/PET percentile clipping (as MedSAM pre_CT_MR.py)")
    volume.add_argument("--window", choices=sorted(CT_WINDOWS), default="abdomen",
                        help="CT window preset (default abdomen: WL 40, WW 400)")
    volume.add_argument("--window_level", type=float, default=None, help="overrides the preset's level")
    volume.add_argument("--window_width", type=float, default=None, help="overrides the preset's width")
    volume.add_argument("--spacing_order", choices=("zyx", "xyz"), default="zyx",
                        help="zyx (default): same axis order as the arrays; xyz: SimpleITK GetSpacing() "
                             "order, as MedSAM's pre_CT_MR.py stored it")
    volume.add_argument("--no_geometry_check", action="store_true",
                        help="only require equal sizes (not spacing, origin, direction)")

    p = sub.add_parser("nifti", parents=[common, volume], help="NIfTI (or NRRD/MHA) image + label volume")
    p.add_argument("image", type=Path)
    p.add_argument("label", type=Path)
    p.add_argument("--modality", choices=MODALITIES_3D, required=True)

    p = sub.add_parser("dicom", parents=[common, volume], help="DICOM series folder + label volume")
    p.add_argument("image", type=Path, help="folder holding the DICOM series")
    p.add_argument("label", type=Path, help="label volume file (NIfTI, NRRD...) or a DICOM folder")
    p.add_argument("--modality", choices=MODALITIES_3D, default=None,
                   help="default: from the DICOM Modality tag (CT, MR, PT)")
    p.add_argument("--series_id", default=None, help="SeriesInstanceUID when the folder holds several")

    p = sub.add_parser("image", parents=[common], help="2D image (PNG/JPG/TIFF) + mask image")
    p.add_argument("image", type=Path)
    p.add_argument("label", type=Path, help="mask image (label values, or 0/255, or colours)")
    p.add_argument("--modality", required=True,
                   help=f"case-name modality, one of {', '.join(MODALITIES_2D)} (others route to lite_medsam)")
    return parser


def convert_from_args(args: argparse.Namespace) -> tuple[Converted, str]:
    """Run the converter the parsed CLI arguments ask for; returns (case, case name)."""
    if args.kind == "image":
        case = convert_image(args.image, args.label, instances=args.instances, min_size=args.min_size,
                             jitter=args.jitter, seed=args.seed)
        return case, args.name or f"2DBox_{args.modality}_{_stem(args.image)}"
    image = read_volume(args.image, getattr(args, "series_id", None))
    label = read_volume(args.label)
    modality = args.modality
    if modality is None:
        modality = DICOM_MODALITY.get(image.modality or "")
        if modality is None:
            raise ValueError(f"DICOM Modality tag is {image.modality!r}; pass --modality {{CT,MR,PET}}")
    level, width = CT_WINDOWS[args.window]
    window = (args.window_level if args.window_level is not None else level,
              args.window_width if args.window_width is not None else width)
    case = convert_volume(image, label, modality, intensity=args.intensity, window=window,
                          instances=args.instances, min_size=args.min_size, jitter=args.jitter,
                          seed=args.seed, spacing_order=args.spacing_order,
                          check_geometry=not args.no_geometry_check)
    return case, args.name or f"3DBox_{modality}_{_stem(args.image)}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        case, name = convert_from_args(args)
        paths = write_converted(case, args.out_dir, name, args.training)
    except (ValueError, FileNotFoundError) as err:  # GeometryError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 1
    shape = "x".join(str(s) for s in case.imgs.shape)
    print(f"{name}: imgs {shape} uint8, {len(case.boxes)} boxes "
          f"(from label ids {', '.join(str(i) for i in _compact(case.source_ids))})"
          + ("" if case.spacing is None else f", spacing ({case.spacing_order}) "
             + ", ".join(f"{s:g}" for s in case.spacing) + " mm"))
    for path in paths:
        print(f"  wrote {path}")
    return 0


def _compact(ids: np.ndarray, limit: int = 12) -> list:
    """At most ``limit`` ids for printing, with an ellipsis."""
    ids = ids.tolist()
    return ids if len(ids) <= limit else ids[:limit] + ["..."]


if __name__ == "__main__":
    raise SystemExit(main())
