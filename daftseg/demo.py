"""The main job on bundled data, behind ``./demo.sh``.

Generates synthetic challenge cases, obtains OpenVINO models (in this order: an existing
``openvinomodels/``; an export of ``models/*.pth``; LiteMedSAM's trained weights exported with
``liteov.py``; random weights only if none can be had), runs ``PerfectMetaOpenVINO.py`` and
``evaluation/compute_metrics.py``, and writes a report folder. Each stage runs as the command a
user would type, printed before it runs.

The demo folder (``--out``, relative to the current folder) is the demo's own: a marker file
``.daftseg-demo`` is written when the demo creates it (or finds it empty), and a later run deletes
only the entries it makes (``imgs``, ``gts``, ``segs``, ``report``, ...) and only in a folder holding
that marker. A folder the demo did not create is refused, and nothing in it is touched.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

from daftseg.atomic import atomic_write_text
from daftseg.inference.model_folder import model_names

ROOT = Path(__file__).resolve().parents[1]
LITE_WEIGHTS = Path("work_dir/LiteMedSAM/lite_medsam.pth")
MARKER = ".daftseg-demo"
# everything the demo writes into its folder; a rerun deletes these and nothing else
OWN_ENTRIES = ("imgs", "gts", "segs", "segs_fast", "report", "openvinocache", "random_openvinomodels", "random_onnx",
               "random_lite_medsam.pth", "scans")


class NotDemoFolder(Exception):
    """The --out folder exists, is not empty and was not made by the demo."""


def claim_folder(out: Path) -> None:
    """Make ``out`` the demo's folder and clear what an earlier demo run left there.

    A missing or empty folder is claimed (marker written). A folder with the marker has the
    demo's own entries removed (a symbolic link among them is unlinked, never followed). Any other
    folder raises ``NotDemoFolder`` before anything is deleted.
    """
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise NotDemoFolder(f"--out {out} is a file, not a folder")
    if out.is_dir() and not marker.is_file() and any(out.iterdir()):
        raise NotDemoFolder(f"--out {out} is not empty and was not created by the demo (no {MARKER} "
                            "file in it); nothing was deleted. Choose a new or empty folder")
    if not marker.is_file():
        atomic_write_text(marker, "This folder was created by daftseg's demo (demo.sh); a rerun replaces "
                                  f"{', '.join(OWN_ENTRIES)} here and nothing else.\n")
    for name in OWN_ENTRIES:
        entry = out / name
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        elif entry.is_dir():
            shutil.rmtree(entry)


def run(cmd: list[str]) -> None:
    shown = " ".join(str(c) for c in cmd).replace(sys.executable, "python")
    print(f"\n$ {shown}", flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def has_ir(folder: Path) -> bool:
    return folder.is_dir() and bool(model_names(folder))


def obtain_models(args: argparse.Namespace, out: Path) -> tuple[Path, str]:
    """Folder of OpenVINO IR to use, and a sentence saying which weights these are."""
    py = sys.executable
    models_dir = Path(args.models_dir)
    if has_ir(models_dir):
        names = model_names(models_dir)
        return models_dir, f"existing OpenVINO models in {models_dir}/ ({', '.join(names)})"
    weights = sorted((ROOT / "models").glob("*.pth"))
    if weights:
        run([py, "export_onnx.py", "--models_dir", "models", "--out_dir", "onnxmodels"])
        run([py, "onnx2openvino.py", "--in_dir", "onnxmodels", "--out_dir", str(models_dir)])
        return models_dir, f"DAFT weights exported from models/ ({', '.join(p.stem for p in weights)})"
    if not (ROOT / LITE_WEIGHTS).is_file() and not args.no_fetch:
        try:
            run([py, "fetch_lite_medsam.py", "-o", str(LITE_WEIGHTS)])
        except subprocess.CalledProcessError:
            print("could not fetch the LiteMedSAM weights", flush=True)
    if (ROOT / LITE_WEIGHTS).is_file():
        run([py, "liteov.py", "--checkpoint", str(LITE_WEIGHTS), "--onnx_dir", "liteonnx", "--ov_dir", str(models_dir)])
        return models_dir, (f"trained LiteMedSAM weights ({LITE_WEIGHTS}); every case routes to the "
                            f"lite_medsam fallback because no DAFT models are present")
    # Kept apart from openvinomodels/ so that a later run never mistakes them for real models.
    random_dir = out / "random_openvinomodels"
    random_ckpt = out / "random_lite_medsam.pth"
    run([py, "-c", ("import torch; from daftseg.models import build_model; torch.manual_seed(0); "
                   f"torch.save(build_model('litemedsam').state_dict(), {str(random_ckpt)!r})")])
    run([py, "liteov.py", "--checkpoint", str(random_ckpt), "--onnx_dir", str(out / "random_onnx"),
         "--ov_dir", str(random_dir)])
    return random_dir, ("RANDOM WEIGHTS: NO TRAINED WEIGHTS COULD BE OBTAINED, "
                        "SO THESE SEGMENTATIONS AND METRICS MEAN NOTHING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="test_demo",
                        help="demo folder (imgs/, gts/, segs/, report/), relative to the current folder; it must be "
                             "new, empty or an earlier demo's (a rerun deletes only what the demo wrote there)")
    parser.add_argument("--models_dir", default=None,
                        help="OpenVINO models to use if present, else where the export goes "
                             f"(relative to the current folder; default {ROOT / 'openvinomodels'})")
    parser.add_argument("--size", type=int, default=512, help="longest in-plane side of the synthetic cases")
    parser.add_argument("--max_slices", type=int, default=40, help="depth cap of the synthetic 3D cases")
    parser.add_argument("--no_fetch", action="store_true", help="never download the LiteMedSAM weights (nor the MNI152 template)")
    parser.add_argument("--fast", action="store_true",
                        help="also write the INT8 image encoders (python -m daftseg.quantize), segment the cases again "
                             "in fast mode and compare exact and fast per modality (report/exact_vs_fast.md)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    py = sys.executable
    # the stages run from the repository root: hand them absolute paths
    out = Path(args.out).resolve()
    args.models_dir = Path(args.models_dir).resolve() if args.models_dir else ROOT / "openvinomodels"
    report = out / "report"
    try:
        claim_folder(out)
    except (NotDemoFolder, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    run([py, "-m", "daftseg.data.synthetic", "-o", str(out), "--size", str(args.size),
         "--max_slices", str(args.max_slices)])
    models_dir, weights_used = obtain_models(args, out)
    report.mkdir(parents=True, exist_ok=True)
    t_infer = time.perf_counter()
    run([py, "PerfectMetaOpenVINO.py", "-i", str(out / "imgs"), "-o", str(out / "segs"), "-m", str(models_dir),
         "--cache_dir", str(out / "openvinocache"), "--timing_csv", str(report / "timing.csv"),
         "--save_overlay", str(report / "overlays")])
    t_infer = time.perf_counter() - t_infer
    run([py, "evaluation/compute_metrics.py", "-s", str(out / "segs"), "-g", str(out / "gts"),
         "-csv_dir", str(report / "metrics.csv"), "-num_workers", "2", "--plot", str(report / "metrics.png")])

    fast_lines: list[str] = []
    if args.fast:
        from daftseg.demo_fast import comparison, fast_run, int8_export

        fast_lines.append(int8_export(models_dir, ROOT, fetch=not args.no_fetch))
        fast_run(out, models_dir, report, ROOT)
        fast_lines += comparison(report)

    # scans as a user has them (NIfTI), through daftseg-segment: daftseg/demo_scans.py
    from daftseg.demo_scans import run as segment_scans

    scan_lines = segment_scans(out / "scans", models_dir, out / "openvinocache", ROOT, fetch=not args.no_fetch)

    overlays = sorted((report / "overlays").glob("*.png"))
    with open(report / "timing.csv", newline="") as f:
        n_cases = sum(1 for _ in csv.DictReader(f))
    print("\n" + "=" * 72)
    print(f"weights used : {weights_used}")
    print(f"cases        : {n_cases} segmented in {t_infer:.1f} s (per case: {report / 'timing.csv'})")
    print(f"metrics      : {report / 'metrics.csv'}, per modality {report / 'metrics_summary.md'}")
    print(f"bar chart    : {report / 'metrics.png'}")
    print(f"overlays     : {len(overlays)} PNG in {report / 'overlays'}"
          + (f" (e.g. {overlays[0]})" if overlays else ""))
    for line in scan_lines:
        print(f"own scans    : {line}")
    if fast_lines:
        print(f"fast mode    : {fast_lines[0]}; exact vs fast per modality in {report / 'exact_vs_fast.md'}:")
        for line in fast_lines[1:]:
            print(f"               {line}")
    print(f"report       : {report}/   (demo took {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
