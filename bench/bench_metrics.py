#!/usr/bin/env python3
"""Speed of ``daftseg.metrics.score_case`` on synthetic multi-label 3D cases, same values.

Compares, per case (DSC + NSD at 2 mm, labels 1..max):
  straightforward   the same algorithm done plainly: per label, full-volume masks, neighbour
                    codes and two distance transforms of the whole volume, tables rebuilt
  surface-distance  the challenge's way: DeepMind's package per label (it crops to the
                    label's box, but scans the volume per label and sorts surfels in Python)
  ours (edt)        our code with distance transforms on each label's box
  ours              our code as used (box per label, tolerance test by offset dilation)
and checks that all give the same DSC and NSD.

    python bench/bench_metrics.py            # includes 120x512x512 (about 2 minutes, ~2 GB)
    python bench/bench_metrics.py --quick    # small cases only
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daftseg.metrics.case import score_case
from daftseg.metrics.surface import _area_table

TOL = 2.0


def straightforward_case(gt: np.ndarray, pred: np.ndarray, spacing) -> tuple[float, float]:
    """The challenge's per-case procedure with the surface algorithm written plainly (no crop)."""
    kernel = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])
    labels = range(1, int(gt.max()) + 1)
    dsc = []
    for i in labels:
        g, p = gt == i, pred == i
        total = g.sum() + p.sum()
        dsc.append(2 * (g & p).sum() / total if total else np.nan)
    dsc_mean = float(np.mean(dsc))
    if not dsc_mean > 0.2:
        return dsc_mean, 0.0
    nsd = []
    for i in labels:
        areas = _area_table.__wrapped__(tuple(float(s) for s in spacing))  # rebuilt per label
        surf = []
        for m in (gt == i, pred == i):
            padded = np.pad(m, ((0, 1),) * 3).astype(np.uint8)  # corners past the high end too
            codes = ndimage.correlate(padded, kernel, mode="constant", cval=0)
            surf.append(((codes != 0) & (codes != 255), areas[codes]))
        (bg, ag), (bp, ap) = surf
        dist_g = ndimage.distance_transform_edt(~bg, sampling=spacing) if bg.any() else np.full(bg.shape, np.inf)
        dist_p = ndimage.distance_transform_edt(~bp, sampling=spacing) if bp.any() else np.full(bp.shape, np.inf)
        total = ag[bg].sum() + ap[bp].sum()
        nsd.append((ag[bg][dist_p[bg] <= TOL].sum() + ap[bp][dist_g[bp] <= TOL].sum()) / total)
    return dsc_mean, float(np.mean(nsd))


def package_case(gt: np.ndarray, pred: np.ndarray, spacing) -> tuple[float, float] | None:
    """The challenge's compute_metrics per case on DeepMind's surface-distance, if installed."""
    try:
        import surface_distance as sd
    except ImportError:
        return None
    for name, value in (("Inf", np.inf), ("NaN", np.nan)):  # removed in NumPy 2, still used by 0.1
        if name not in np.__dict__:
            setattr(np, name, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = range(1, int(gt.max()) + 1)
        dsc = float(np.mean([sd.compute_dice_coefficient(gt == i, pred == i) for i in labels]))
        if not dsc > 0.2:
            return dsc, 0.0
        nsd = [sd.compute_surface_dice_at_tolerance(sd.compute_surface_distances(gt == i, pred == i, spacing), TOL)
               for i in labels]
        return dsc, float(np.mean(nsd))


def ellipsoid(shape, centre, radii) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def synthetic_case(shape, n_labels, seed) -> tuple[np.ndarray, np.ndarray]:
    """Organ-like ellipsoids of decreasing size; the prediction is shifted and has a rough edge."""
    rng = np.random.default_rng(seed)
    gt = np.zeros(shape, np.uint16)
    pred = np.zeros(shape, np.uint16)
    for lab in range(1, n_labels + 1):
        frac = rng.uniform(0.12, 0.3) / (1 + 0.5 * (lab - 1))
        radii = [max(2.0, frac * n) for n in shape]
        centre = [rng.uniform(r + 1, n - r - 1) for r, n in zip(radii, shape)]
        gt[ellipsoid(shape, centre, radii)] = lab
        moved = [c + rng.uniform(-1.5, 1.5) for c in centre]
        scaled = [r * rng.uniform(0.92, 1.08) for r in radii]
        pred[ellipsoid(shape, moved, scaled)] = lab
    box = ndimage.find_objects((pred > 0).view(np.uint8))[0]
    noise = ndimage.uniform_filter(rng.random(pred[box].shape).astype(np.float32), 5)
    rough = pred[box]
    rough[noise > np.quantile(noise, 0.97)] = 0  # dents on the predicted surfaces
    return gt, pred


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small cases only")
    ap.add_argument("--no-package", action="store_true", help="skip the surface-distance column")
    args = ap.parse_args(argv)
    cases = [((48, 192, 192), 4, (2.5, 0.8, 0.8)), ((64, 256, 256), 6, (1.0, 1.0, 1.0))]
    if not args.quick:
        cases += [((120, 512, 512), 4, (2.5, 0.8, 0.8)), ((120, 512, 512), 4, (1.0, 0.7, 0.7))]

    head = ("shape", "labels", "spacing", "straightforward s", "surface-distance s", "ours (edt) s", "ours s",
            "speed-up", "max |diff|")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    worst = 0.0
    for k, (shape, n_labels, spacing) in enumerate(cases):
        gt, pred = synthetic_case(shape, n_labels, seed=k)
        (ref_d, ref_n), t_plain = timed(straightforward_case, gt, pred, spacing)
        pkg, t_pkg = (None, float("nan")) if args.no_package else timed(package_case, gt, pred, spacing)
        edt, t_edt = timed(functools.partial(score_case, method="edt"), gt, pred, spacing)
        ours, t_ours = timed(score_case, gt, pred, spacing)
        values = [(ref_d, ref_n), (edt.dsc, edt.nsd), (ours.dsc, ours.nsd)] + ([pkg] if pkg else [])
        diff = max(abs(a - ref_d) + abs(b - ref_n) for a, b in values)
        worst = max(worst, diff)
        print(f"| {'x'.join(map(str, shape))} | {n_labels} | {spacing} | {t_plain:.2f} | {t_pkg:.2f} | "
              f"{t_edt:.2f} | {t_ours:.2f} | {t_plain / t_ours:.0f}x | {diff:.1e} |", flush=True)
        print(f"  dsc={ours.dsc:.6f} nsd={ours.nsd:.6f} (straightforward dsc={ref_d:.6f} nsd={ref_n:.6f})",
              file=sys.stderr)
    print(f"\nsame values: max |DSC diff| + |NSD diff| over all methods = {worst:.1e}")
    return 0 if worst <= 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
