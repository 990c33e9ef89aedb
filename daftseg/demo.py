"""The main job on bundled data, behind ``./demo.sh``.

Generates synthetic challenge cases, obtains OpenVINO models (in this order: an existing
``openvinomodels/``; an export of ``models/*.pth``; LiteMedSAM's trained weights exported with
``liteov.py``; random weights only if none can be had), runs ``PerfectMetaOpenVINO.py`` and
``evaluation/compute_metrics.py``, and writes a report folder. Each stage runs as the command a
user would type, printed before it runs.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LITE_WEIGHTS = Path("work_dir/LiteMedSAM/lite_medsam.pth")


def run(cmd: list[str]) -> None:
    shown = " ".join(str(c) for c in cmd).replace(sys.executable, "python")
    print(f"\n$ {shown}", flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def has_ir(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*_image_encoder.xml"))


def obtain_models(args: argparse.Namespace, out: Path) -> tuple[Path, str]:
    """Folder of OpenVINO IR to use, and a sentence saying which weights these are."""
    py = sys.executable
    models_dir = Path(args.models_dir)
    if has_ir(ROOT / models_dir):
        names = sorted(p.name.removesuffix("_image_encoder.xml") for p in (ROOT / models_dir).glob("*_image_encoder.xml"))
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
    parser.add_argument("--out", default="test_demo", help="demo folder (imgs/, gts/, segs/, report/)")
    parser.add_argument("--models_dir", default="openvinomodels",
                        help="OpenVINO models to use if present, else where the export goes")
    parser.add_argument("--size", type=int, default=512, help="longest in-plane side of the synthetic cases")
    parser.add_argument("--max_slices", type=int, default=40, help="depth cap of the synthetic 3D cases")
    parser.add_argument("--no_fetch", action="store_true", help="never download the LiteMedSAM weights")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    py = sys.executable
    out = Path(args.out)
    report = out / "report"
    for sub in ("imgs", "gts", "segs", "report"):
        shutil.rmtree(ROOT / out / sub, ignore_errors=True)
    run([py, "-m", "daftseg.data.synthetic", "-o", str(out), "--size", str(args.size),
         "--max_slices", str(args.max_slices)])
    models_dir, weights_used = obtain_models(args, out)
    (ROOT / report).mkdir(parents=True, exist_ok=True)
    t_infer = time.perf_counter()
    run([py, "PerfectMetaOpenVINO.py", "-i", str(out / "imgs"), "-o", str(out / "segs"), "-m", str(models_dir),
         "--cache_dir", str(out / "openvinocache"), "--timing_csv", str(report / "timing.csv"),
         "--save_overlay", str(report / "overlays")])
    t_infer = time.perf_counter() - t_infer
    run([py, "evaluation/compute_metrics.py", "-s", str(out / "segs"), "-g", str(out / "gts"),
         "-csv_dir", str(report / "metrics.csv"), "-num_workers", "2", "--plot", str(report / "metrics.png")])

    overlays = sorted((report / "overlays" / p.name) for p in (ROOT / report / "overlays").glob("*.png"))
    with open(ROOT / report / "timing.csv") as f:
        n_cases = sum(1 for _ in csv.DictReader(f))
    print("\n" + "=" * 72)
    print(f"weights used : {weights_used}")
    print(f"cases        : {n_cases} segmented in {t_infer:.1f} s (per case: {report / 'timing.csv'})")
    print(f"metrics      : {report / 'metrics.csv'}, per modality {report / 'metrics_summary.md'}")
    print(f"bar chart    : {report / 'metrics.png'}")
    print(f"overlays     : {len(overlays)} PNG in {report / 'overlays'}"
          + (f" (e.g. {overlays[0]})" if overlays else ""))
    print(f"report       : {report}/   (demo took {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
