#!/usr/bin/env python3
"""``daftseg-segment`` on a NIfTI CT against the three steps a user ran before, timed.

The scan: a seeded synthetic CT, ``--slices`` x ``--size`` x ``--size`` int16 Hounsfield units
(default 120 x 512 x 512, spacing 0.8 x 0.8 x 2.5 mm), with four ellipsoid organs and their label
map; the four boxes are the organs' boxes, given to ``daftseg-segment`` as a JSON file.

1. one command: ``python -m daftseg.segment --image ct.nii.gz --boxes boxes.json --modality CT -o seg.nii.gz``
2. by hand: ``python -m daftseg.data.converters nifti`` (needs the label file, for the boxes), then
   ``python PerfectMetaOpenVINO.py``, then a short SimpleITK script that puts ``segs`` back on the
   scan's grid (read the scan's header, copy its geometry, write NIfTI).

Each step is a fresh process, as a user runs it; both share a warmed compiled-model cache. The
outputs are compared voxel for voxel. Printed: wall time of each path, and the read/write share of
``daftseg-segment`` (its own "read in" and "in ...s" figures over its wall time).

Models: ``--models_dir`` (real exported IR); else ``--models random`` exports EfficientViT-SAM l0 with
seeded random weights (real size; needs torch, via ``bench/bench_inference.py``), or ``--models toy``
writes the tiny test models of ``tests/ov_toy_models.py`` (their encoder costs almost nothing, so
the read/write share is an upper bound).

    python bench/bench_segment.py                        # random-weight l0, 120 x 512 x 512
    python bench/bench_segment.py --models toy --slices 60
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WRITE_BACK = """
import sys, numpy as np, SimpleITK as sitk
segs_npz, scan_path, ids, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
reader = sitk.ImageFileReader(); reader.SetFileName(scan_path); reader.ReadImageInformation()
with np.load(segs_npz) as z:
    segs = z["segs"]
lut = np.array([0] + [int(i) for i in ids.split(",")], np.uint8)
image = sitk.GetImageFromArray(lut[segs])
image.SetSpacing(reader.GetSpacing()); image.SetOrigin(reader.GetOrigin()); image.SetDirection(reader.GetDirection())
sitk.WriteImage(image, out, True)
"""


def make_scan(folder: Path, slices: int, size: int, seed: int = 7) -> tuple[Path, Path, Path]:
    """Write ct.nii.gz, labels.nii.gz and boxes.json (once) and return their paths."""
    import SimpleITK as sitk

    from daftseg.io.labels import object_boxes

    folder.mkdir(parents=True, exist_ok=True)
    ct_path, lab_path, box_path = folder / "ct.nii.gz", folder / "labels.nii.gz", folder / "boxes.json"
    if ct_path.exists() and lab_path.exists() and box_path.exists():
        return ct_path, lab_path, box_path
    rng = np.random.default_rng(seed)
    d, h, w = slices, size, size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    body = ((yy - h / 2) / (0.39 * h)) ** 2 + ((xx - w / 2) / (0.46 * w)) ** 2 < 1
    organs = [  # centre (z, y, x) as fractions, radii (z fraction, y, x fraction of the size), HU
        ((0.45, 0.45, 0.35), (0.30, 0.14, 0.12), 60), ((0.55, 0.55, 0.65), (0.20, 0.09, 0.08), 30),
        ((0.35, 0.60, 0.45), (0.12, 0.05, 0.06), 250), ((0.65, 0.40, 0.55), (0.15, 0.07, 0.10), 120)]
    ct = np.empty((d, h, w), np.int16)
    labels = np.zeros((d, h, w), np.uint8)
    for z in range(d):
        sl = np.where(body, 0.0, -1000.0)
        for k, ((cz, cy, cx), (rz, ry, rx), hu) in enumerate(organs, start=1):
            t = 1 - ((z / d - cz) / rz) ** 2
            if t > 0:
                s = np.sqrt(t)
                inside = ((yy - cy * h) / (ry * h * s)) ** 2 + ((xx - cx * w) / (rx * w * s)) ** 2 < 1
                sl[inside] = hu
                labels[z][inside] = k
        ct[z] = np.clip(sl + rng.normal(0, 15, (h, w)), -1024, 3000)
    for array, path in ((ct, ct_path), (labels, lab_path)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.8, 0.8, 2.5))
        image.SetOrigin((-204.8, -204.8, -150.0))
        sitk.WriteImage(image, str(path), True)
    boxes, ids = object_boxes(labels, str(lab_path))
    box_path.write_text(json.dumps([{"box": b.tolist(), "label": int(i), "name": f"organ{i}"}
                                    for b, i in zip(boxes, ids, strict=True)]))
    return ct_path, lab_path, box_path


def models_folder(kind: str, work: Path) -> Path:
    if kind == "toy":
        sys.path.insert(0, str(REPO / "tests"))
        from ov_toy_models import TOY_MODELS, write_toy_models

        from daftseg.inference.model_folder import positional_encoding_file

        folder = work / "toy_models"
        if not positional_encoding_file(folder).exists():
            write_toy_models(folder, TOY_MODELS)
        return folder
    sys.path.insert(0, str(REPO / "bench"))
    from bench_inference import build_models

    return build_models(work / "random_models")


def timed(cmd: list[str]) -> tuple[float, str]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def one_command(ct: Path, boxes: Path, models: Path, cache: Path, out: Path) -> tuple[float, float, float]:
    """(wall, read, write) seconds of daftseg-segment."""
    wall, text = timed([sys.executable, "-m", "daftseg.segment", "--image", str(ct), "--boxes", str(boxes),
                        "--modality", "CT", "-m", str(models), "--cache_dir", str(cache), "-o", str(out),
                        "--overwrite"])
    read = float(re.search(r"read in ([\d.]+)s", text).group(1))
    write = float(re.search(r"json in ([\d.]+)s", text).group(1))
    return wall, read, write


def by_hand(ct: Path, labels: Path, models: Path, cache: Path, work: Path, out: Path) -> tuple[float, ...]:
    """(convert, infer, write back) wall seconds of the three steps."""
    import shutil

    conv = work / "by_hand"
    shutil.rmtree(conv, ignore_errors=True)
    t_conv, _ = timed([sys.executable, "-m", "daftseg.data.converters", "nifti", str(ct), str(labels), "-o", str(conv),
                       "--modality", "CT", "--name", "3DBox_CT_bench"])
    t_inf, _ = timed([sys.executable, "PerfectMetaOpenVINO.py", "-i", str(conv / "imgs"), "-o", str(conv / "segs"),
                      "-m", str(models), "--cache_dir", str(cache)])
    out.unlink(missing_ok=True)
    t_back, _ = timed([sys.executable, "-c", WRITE_BACK, str(conv / "segs" / "3DBox_CT_bench.npz"), str(ct),
                       "1,2,3,4", str(out)])
    return t_conv, t_inf, t_back


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", type=int, default=120)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--models", choices=("random", "toy"), default="random")
    p.add_argument("--models_dir", type=Path, default=None, help="real exported IR (overrides --models)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_segment"))
    args = p.parse_args()

    import SimpleITK as sitk

    work = args.work
    scan_dir = work / f"scan_{args.slices}x{args.size}"
    t0 = time.perf_counter()
    ct, labels, boxes = make_scan(scan_dir, args.slices, args.size)
    models = args.models_dir or models_folder(args.models, work)
    print(f"scan {ct} ({args.slices}x{args.size}x{args.size} int16, "
          f"{ct.stat().st_size / 2**20:.1f} MiB gz), models {models}; setup {time.perf_counter() - t0:.0f}s",
          flush=True)
    cache = work / "ovcache"
    one_command(ct, boxes, models, cache, work / "warm.nii.gz")  # warms the compiled-model cache
    ours, hand = [], []
    for r in range(args.repeats):  # the order alternates: a machine's load drifts over minutes
        if r % 2:
            hand.append(by_hand(ct, labels, models, cache, work, work / "seg_hand.nii.gz"))
        ours.append(one_command(ct, boxes, models, cache, work / "seg_one.nii.gz"))
        if not r % 2:
            hand.append(by_hand(ct, labels, models, cache, work, work / "seg_hand.nii.gz"))
        print(f"  run {r + 1}: daftseg-segment {ours[-1][0]:.2f}s (read {ours[-1][1]:.2f}s, write {ours[-1][2]:.2f}s)"
              f"; by hand {sum(hand[-1]):.2f}s (convert {hand[-1][0]:.2f}s, PerfectMetaOpenVINO {hand[-1][1]:.2f}s, "
              f"write back {hand[-1][2]:.2f}s)", flush=True)
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "seg_one.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "seg_hand.nii.gz")))
    same = np.array_equal(a, b)
    wall = statistics.median(o[0] for o in ours)
    io_share = statistics.median((o[1] + o[2]) / o[0] for o in ours)
    hand_wall = statistics.median(sum(h) for h in hand)
    print(f"daftseg-segment: {wall:.2f}s median wall (min {min(o[0] for o in ours):.2f}s); reading the scan + "
          f"writing the label map: {io_share:.1%} of it")
    print(f"by hand (convert + PerfectMetaOpenVINO.py + write back): {hand_wall:.2f}s median "
          f"(min {min(sum(h) for h in hand):.2f}s); "
          f"one command takes {wall / hand_wall:.0%} of that")
    print(f"outputs identical voxel for voxel: {same} ({int((a > 0).sum())} labelled voxels)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
