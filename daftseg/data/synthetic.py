"""Seeded synthetic cases in the challenge formats, for the demo, the tests and the benchmarks.

One case per call of ``make_case(prefix, seed)``: an image with a few labelled objects
(blobs with texture, blur and noise, with contrast to their surroundings so that a box prompt
is meaningful), the box prompts derived from the labels, and for 3D the voxel spacing.

Formats (spec §3.1, §3.2):
    inference case ``<out>/imgs/<name>.npz``:
        2D: ``imgs`` (H, W, 3) uint8 (grey modalities as three equal channels, as the challenge
            stored them), ``boxes`` (N, 4) int64 ``[x_min, y_min, x_max, y_max]``
        3D: ``imgs`` (D, H, W) uint8, ``boxes`` (N, 6) int64
            ``[x_min, y_min, z_min, x_max, y_max, z_max]``, ``spacing`` (3,) float64
    ground truth ``<out>/gts/<name>.npz``: ``gts`` (H, W) / (D, H, W) uint8 (uint16 above 255
        objects) with label i for box i-1, and for 3D ``spacing``
    training file ``<Modality>_Synthetic_<NNNN>.npz``: ``imgs`` and ``gts`` (plus ``spacing`` in 3D)

Spacing is stored in the arrays' axis order (z, y, x) in millimetres, which is what
``compute_metrics.py`` assumes when it passes ``spacing`` unchanged with the (D, H, W) arrays.
Boxes are the tight inclusive extent of each label; 3D boxes span the object's full x, y and z
extent. Case names follow the challenge, e.g. ``2DBox_US_0001.npz``; the routing table sends
each prefix to its model (spec §7.3; ``2DBox_Mammography`` routes via ``2DBox_Mamm``).

CLI: ``python -m daftseg.data.synthetic -o test_demo --size 256``.
"""

from __future__ import annotations

import argparse
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_paths
from daftseg.data.synthetic_shapes import add_noise, blob_mask, blur, canvas_2d, smooth_noise, to_uint8
from daftseg.io.label_boxes import boxes_from_labels, jitter_boxes

DEFAULT_SEED = 2024


@dataclass(frozen=True)
class ModalityStyle:
    """How one modality looks, at its realistic size (all intensities in grey levels 0..255).

    ``background``/``objects`` are colours: (grey,) for grey modalities, (r, g, b) for colour
    ones. ``radius`` is an object's mean radius as a fraction of the shorter in-plane side.
    """

    shape: tuple[int, ...]  # (H, W) or (D, H, W)
    canvas: str  # see synthetic_shapes.canvas_2d
    background: tuple[float, ...]
    objects: tuple[tuple[float, ...], ...]
    n_objects: tuple[int, int]  # inclusive range
    radius: tuple[float, float]
    noise: float  # Gaussian noise sigma
    blur: float  # Gaussian blur sigma at the realistic size, pixels
    outside: float = 0.0  # grey level outside the canvas
    texture: float = 0.1  # relative amplitude of the smooth texture
    aspect: tuple[float, float] = (0.55, 1.0)  # minor / major axis
    speckle: bool = False
    spacing: tuple[float, float, float] | None = None  # (z, y, x) mm, 3D only
    training_modality: str = ""  # the training-file prefix (spec §3.1)


GREY_BODY_OBJECTS = ((175.0,), (60.0,), (205.0,), (140.0,))

STYLES: dict[str, ModalityStyle] = {
    "2DBox_X-Ray": ModalityStyle((1024, 1024), "full", (150.0,), ((55.0,), (70.0,)), (1, 2), (0.16, 0.24),
                                 noise=4, blur=3.0, texture=0.15, aspect=(0.45, 0.7),
                                 training_modality="XRay"),
    "2DBox_US": ModalityStyle((540, 800), "fan", (125.0,), ((30.0,), (45.0,)), (1, 2), (0.08, 0.18),
                              noise=2, blur=1.5, texture=0.2, speckle=True, training_modality="US"),
    "2DBox_Fundus": ModalityStyle((1024, 1024), "disc", (190.0, 80.0, 35.0),
                                  ((250.0, 215.0, 150.0), (110.0, 35.0, 20.0)), (1, 3), (0.05, 0.1),
                                  noise=3, blur=2.0, training_modality="Fundus"),
    "2DBox_Endoscopy": ModalityStyle((576, 720), "vignette", (190.0, 95.0, 85.0),
                                     ((225.0, 150.0, 125.0), (150.0, 50.0, 55.0)), (1, 2), (0.1, 0.22),
                                     noise=3, blur=2.0, texture=0.12, training_modality="Endoscopy"),
    "2DBox_Dermoscopy": ModalityStyle((768, 1024), "vignette", (225.0, 175.0, 155.0),
                                      ((120.0, 70.0, 55.0), (90.0, 55.0, 45.0)), (1, 1), (0.15, 0.3),
                                      noise=3, blur=2.5, training_modality="Dermoscopy"),
    "2DBox_Microscope": ModalityStyle((512, 512), "full", (235.0, 225.0, 238.0),
                                      ((150.0, 80.0, 170.0), (115.0, 60.0, 150.0), (180.0, 110.0, 195.0)),
                                      (15, 45), (0.02, 0.045), noise=4, blur=1.0,
                                      training_modality="Microscopy"),
    "2DBox_Mammography": ModalityStyle((1024, 832), "breast", (110.0,), ((190.0,), (215.0,)), (1, 2),
                                       (0.04, 0.1), noise=3, blur=2.0, outside=5.0,
                                       training_modality="Mammo"),
    "2DBox_OCT": ModalityStyle((496, 512), "layers", (140.0,), ((25.0,),), (1, 4), (0.03, 0.08),
                               noise=3, blur=1.0, outside=20.0, aspect=(0.5, 0.9), speckle=True,
                               training_modality="OCT"),
    "2DBox_CT": ModalityStyle((512, 512), "body", (105.0,), GREY_BODY_OBJECTS, (1, 4), (0.05, 0.12),
                              noise=5, blur=1.2, training_modality="CT"),
    "2DBox_MR": ModalityStyle((320, 320), "body", (90.0,), ((180.0,), (40.0,), (150.0,)), (1, 3),
                              (0.06, 0.14), noise=4, blur=1.2, outside=3.0, training_modality="MR"),
    "3DBox_CT": ModalityStyle((100, 512, 512), "body", (105.0,), GREY_BODY_OBJECTS, (1, 4), (0.05, 0.12),
                              noise=5, blur=1.2, spacing=(2.5, 0.8, 0.8), training_modality="CT"),
    "3DBox_MR": ModalityStyle((48, 320, 320), "body", (90.0,), ((180.0,), (40.0,), (150.0,)), (1, 3),
                              (0.06, 0.14), noise=4, blur=1.2, outside=3.0, spacing=(3.5, 1.0, 1.0),
                              training_modality="MR"),
    "3DBox_PET": ModalityStyle((128, 200, 200), "body", (35.0,), ((200.0,), (160.0,)), (1, 4), (0.03, 0.08),
                               noise=6, blur=1.5, spacing=(3.0, 4.0, 4.0), training_modality="PET"),
}
PREFIXES_2D = tuple(p for p in STYLES if p.startswith("2D"))
PREFIXES_3D = tuple(p for p in STYLES if p.startswith("3D"))
PREFIXES = PREFIXES_2D + PREFIXES_3D

MIN_RADIUS_PX = 2.0  # keeps objects visible when ``size`` shrinks an image a lot
MIN_OBJECT_PX = 12  # smallest labelled object (pixels or voxels)
MIN_INSIDE = 0.8  # share of a blob that must lie inside the canvas (else it is cut off oddly)


@dataclass
class SyntheticCase:
    """One synthetic case: the arrays of the challenge's image and ground-truth files.

    imgs: (H, W, 3) or (D, H, W) uint8; gts: (H, W) or (D, H, W) uint8/uint16 labels 1..N;
    boxes: (N, 4) or (N, 6) int64, box i-1 <-> label i; spacing: (3,) (z, y, x) mm or None (2D).
    """

    prefix: str
    imgs: np.ndarray
    gts: np.ndarray
    boxes: np.ndarray
    spacing: np.ndarray | None


def case_rng(seed: int, prefix: str, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, prefix, index), not on which other cases are made."""
    return np.random.default_rng([seed, zlib.crc32(prefix.encode()), index])


def scaled_geometry(style: ModalityStyle, size: int | None,
                    max_slices: int | None = None) -> tuple[tuple[int, ...], tuple | None, float]:
    """Shape, spacing and in-plane scale factor after capping the longest in-plane side at ``size``.

    3D depth shrinks by the same factor (at least 8 slices), and to at most ``max_slices``; the
    spacing grows so that the physical extent stays the same.
    """
    shape, spacing = style.shape, style.spacing
    f = 1.0 if size is None else min(1.0, size / max(shape[-2:]))
    depth_capped = len(shape) == 3 and max_slices is not None and shape[0] > max_slices
    if f == 1.0 and not depth_capped:
        return shape, spacing, 1.0
    h, w = max(8, round(shape[-2] * f)), max(8, round(shape[-1] * f))
    if len(shape) == 2:
        return (h, w), None, f
    d = max(8, min(shape[0], round(shape[0] * f), max_slices or shape[0]))
    assert spacing is not None
    new_spacing = (spacing[0] * shape[0] / d, spacing[1] * shape[1] / h, spacing[2] * shape[2] / w)
    return (d, h, w), new_spacing, f


def make_case(prefix: str, seed: int = DEFAULT_SEED, index: int = 1, size: int | None = None,
              box_jitter: int = 0, max_slices: int | None = None) -> SyntheticCase:
    """Render one case of modality ``prefix`` (a key of ``STYLES``).

    Args:
        size: cap on the longest in-plane side (None: the realistic size of ``STYLES``).
        box_jitter: move box edges by up to this many pixels (0: tight boxes).
        max_slices: cap on the depth of 3D cases (None: as ``size`` scales it).
    """
    if prefix not in STYLES:
        raise ValueError(f"unknown prefix {prefix!r}; known: {', '.join(PREFIXES)}")
    style = STYLES[prefix]
    rng = case_rng(seed, prefix, index)
    shape, spacing, f = scaled_geometry(style, size, max_slices)
    volume = len(shape) == 3

    canvas, shading = _canvas(style.canvas, shape, rng)
    gts = _place_objects(style, shape, spacing, f, canvas, rng)
    image = _paint(style, shape, canvas, shading, gts, rng)
    image = blur(image, max(0.6, style.blur * f), volume=volume)
    image = to_uint8(add_noise(image, rng, style.noise, style.speckle))
    if not volume:
        # OpenCV drops a single channel axis; grey is stored as three equal channels.
        image = np.ascontiguousarray(np.broadcast_to(image.reshape(*shape, -1), (*shape, 3)))

    boxes = jitter_boxes(boxes_from_labels(gts), shape, box_jitter, rng)
    spacing_arr = None if spacing is None else np.asarray(spacing, dtype=np.float64)
    return SyntheticCase(prefix, image, gts, boxes, spacing_arr)


def _canvas(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """2D canvas as is; 3D: the body outline tapers towards both ends of the volume."""
    mask, shading = canvas_2d(kind, shape[-2], shape[-1], rng)
    if len(shape) == 2:
        return mask, shading
    h, w = shape[1:]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Normalised radius of the 2D outline, so slices can shrink it by a z-dependent factor.
    ry, rx = _extent(mask)
    d2 = ((yy - (h - 1) / 2) / ry) ** 2 + ((xx - (w - 1) / 2) / rx) ** 2
    z = np.linspace(-1, 1, shape[0], dtype=np.float32)
    scale2 = (1.0 - 0.15 * z**2) ** 2
    return d2[None] < scale2[:, None, None], np.broadcast_to(shading, shape)


def _extent(mask: np.ndarray) -> tuple[float, float]:
    """Half height and half width of a centred 2D mask."""
    ys, xs = np.nonzero(mask)
    return max(1.0, (ys.max() - ys.min() + 1) / 2), max(1.0, (xs.max() - xs.min() + 1) / 2)


def _place_objects(style: ModalityStyle, shape: tuple[int, ...], spacing: tuple | None, f: float,
                   canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label map with non-overlapping blobs inside the canvas, labels 1..N in placement order."""
    n_wanted = int(rng.integers(style.n_objects[0], style.n_objects[1] + 1))
    labels = np.zeros(shape, dtype=np.uint8 if n_wanted < 256 else np.uint16)
    ref = canvas if canvas.ndim == 2 else canvas[shape[0] // 2]
    centres = np.argwhere(ref)  # candidate (y, x) centres, from the middle slice in 3D
    side = min(shape[-2:])
    n = 0
    for _ in range(40 * n_wanted):
        if n == n_wanted:
            break
        r = max(MIN_RADIUS_PX, rng.uniform(*style.radius) * side)
        radii = np.array([r, r * rng.uniform(*style.aspect)])
        yx = centres[rng.integers(len(centres))].astype(np.float32)
        if (yx < r).any() or (yx > np.array(shape[-2:]) - 1 - r).any():
            continue  # keep whole objects in the frame: a box cut by the border says less
        if len(shape) == 3:
            assert spacing is not None
            # Physically roughly round: the z radius in slices follows the in-plane size in mm.
            rz = max(1.0, r * spacing[2] / spacing[0] * rng.uniform(0.8, 1.6))
            cz = rng.uniform(min(rz, shape[0] / 2), max(shape[0] - rz, shape[0] / 2))
            radii, centre = np.array([rz, *radii]), np.array([cz, *yx])
        else:
            centre = yx
        sl, blob = blob_mask(shape, centre, radii, rng.uniform(0, np.pi), rng)
        inside = blob & canvas[sl]
        if (inside.sum() < MIN_OBJECT_PX or inside.sum() < MIN_INSIDE * blob.sum()
                or (labels[sl][blob] > 0).any()):
            continue
        n += 1
        labels[sl][inside] = n
    if n == 0:
        raise RuntimeError(f"could not place any object in a {shape} image; is size too small?")
    return labels


def _paint(style: ModalityStyle, shape: tuple[int, ...], canvas: np.ndarray, shading: np.ndarray,
           labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Float image: textured background inside the canvas, textured objects, ``outside`` elsewhere.

    Returns (H, W, C) for 2D (C = 1 or 3) or (D, H, W) for 3D, float32 in about 0..255.
    In-place arithmetic keeps a realistic CT volume at a few full-size temporaries.
    """
    volume = len(shape) == 3
    channels = 1 if volume else len(style.background)
    colours = np.asarray(style.objects, dtype=np.float32)[:, :channels]
    # Two scales of texture (large patches and finer grain), modulating the background ...
    light = smooth_noise(rng, shape, 24)
    light *= 0.5
    light += smooth_noise(rng, shape, 6)
    light *= style.texture
    light += 1
    light *= shading
    # ... and a separate, weaker texture inside the objects.
    obj_light = smooth_noise(rng, shape, 12)
    obj_light *= 0.6 * style.texture
    obj_light += 1
    obj_light *= shading
    choice = rng.integers(len(colours), size=int(labels.max()) + 1)
    lut = colours[choice]  # (N + 1, C): a colour per label, row 0 unused
    fg = labels > 0
    if volume:
        image = light
        image *= np.float32(style.background[0])
        image[~canvas] = style.outside
        image[fg] = lut[labels[fg], 0] * obj_light[fg]
        return image
    image = light[..., None] * np.asarray(style.background, dtype=np.float32)
    image[~canvas] = style.outside
    image[fg] = lut[labels[fg]] * obj_light[fg][:, None]
    return image


def case_name(prefix: str, index: int) -> str:
    """Challenge-style file name, e.g. ``2DBox_US_0001.npz``."""
    return f"{prefix}_{index:04d}.npz"


def write_case(case: SyntheticCase, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``<out_dir>/imgs/<name>`` (imgs, boxes[, spacing]) and ``<out_dir>/gts/<name>`` (gts[, spacing])."""
    img_path, gt_path = Path(out_dir) / "imgs" / name, Path(out_dir) / "gts" / name
    extra = {} if case.spacing is None else {"spacing": case.spacing}
    # both or neither: an image without its ground truth would be scored as a missing case
    with atomic_paths([img_path, gt_path]) as (img_tmp, gt_tmp):
        np.savez_compressed(img_tmp, imgs=case.imgs, boxes=case.boxes, **extra)
        np.savez_compressed(gt_tmp, gts=case.gts, **extra)
    return img_path, gt_path


def training_name(prefix: str, index: int) -> str:
    """Training-file name ``<Modality>_<Dataset>_<case>.npz`` (spec §3.1), e.g. ``XRay_Synthetic_0001.npz``.

    2D slices of CT/MR get the dataset name ``Synthetic2D`` so that they never collide with the
    3D volumes of the same modality.
    """
    modality = STYLES[prefix].training_modality
    dataset = "Synthetic2D" if prefix in ("2DBox_CT", "2DBox_MR") else "Synthetic"
    return f"{modality}_{dataset}_{index:04d}.npz"


def write_training_npz(case: SyntheticCase, path: Path) -> Path:
    """Write a training-format file: ``imgs`` and ``gts`` (and ``spacing`` for 3D, which training ignores)."""
    extra = {} if case.spacing is None else {"spacing": case.spacing}
    with atomic_paths([path]) as (tmp,):  # keeps the name: savez adds no second ".npz"
        np.savez_compressed(tmp, imgs=case.imgs, gts=case.gts, **extra)
    return Path(path)


def generate(out_dir: Path, prefixes: tuple[str, ...] = PREFIXES, per_prefix: int = 1,
             seed: int = DEFAULT_SEED, size: int | None = None, box_jitter: int = 0,
             training: bool = False, max_slices: int | None = None) -> list[Path]:
    """Write ``per_prefix`` cases of every prefix; returns the image (or training) file paths.

    Challenge format goes to ``<out_dir>/imgs`` and ``<out_dir>/gts``; training format
    (``training=True``) to ``<out_dir>/<Modality>_Synthetic_<NNNN>.npz``.
    """
    written = []
    for prefix in prefixes:
        for index in range(1, per_prefix + 1):
            case = make_case(prefix, seed, index, size, box_jitter, max_slices)
            if training:
                written.append(write_training_npz(case, Path(out_dir) / training_name(prefix, index)))
            else:
                written.append(write_case(case, Path(out_dir), case_name(prefix, index))[0])
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m daftseg.data.synthetic",
        description="Write seeded synthetic cases: challenge format (<out>/imgs, <out>/gts) or training format.")
    parser.add_argument("-o", "--out_dir", type=Path, default=Path("test_demo"))
    parser.add_argument("--prefixes", default=",".join(PREFIXES),
                        help="comma-separated case prefixes (default: every modality of the routing table)")
    parser.add_argument("-n", "--per_prefix", type=int, default=1, help="cases per prefix (default 1)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--size", type=int, default=None,
                        help="cap on the longest in-plane side in pixels (default: realistic sizes)")
    parser.add_argument("--max_slices", type=int, default=None,
                        help="cap on the depth of 3D cases (default: realistic depths, scaled with --size)")
    parser.add_argument("--jitter", type=int, default=0, help="box edge jitter in pixels (default 0: tight)")
    parser.add_argument("--training", action="store_true",
                        help="write training-format npz (imgs, gts) into OUT_DIR instead")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prefixes = tuple(p.strip() for p in args.prefixes.split(",") if p.strip())
    unknown = [p for p in prefixes if p not in STYLES]
    if unknown:
        build_parser().error(f"unknown prefixes {unknown}; known: {', '.join(PREFIXES)}")
    start = time.perf_counter()
    paths = generate(args.out_dir, prefixes, args.per_prefix, args.seed, args.size, args.jitter, args.training,
                     args.max_slices)
    where = args.out_dir if args.training else f"{args.out_dir / 'imgs'} and {args.out_dir / 'gts'}"
    print(f"wrote {len(paths)} {'training' if args.training else 'challenge'} cases to {where} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
