#!/usr/bin/env python3
"""INT8 image encoder (NNCF post-training quantisation): accuracy against f32, and speed.

The first INT8 experiment (issue 4: no speed-up on a 2-core AVX2 CPU). The tools now write INT8
encoders with ``onnx2openvino.py/liteov.py --int8`` (gated, ``daftseg.quantize``) and
``bench/bench_fast.py`` compares exact and fast mode; this script stays for a quick encoder-only
comparison on its own calibration set. Needs NNCF (``pip install -e '.[quant]'``).

1. Quantise ``<model>_image_encoder.xml`` of ``--models_dir`` with NNCF (transformer preset,
   SmoothQuant + fast bias correction), calibrated on seeded synthetic cases that are *not* the
   evaluation cases (another seed), every modality, 3D cases by a few slices.
2. Segment every case of ``--cases`` with the f32 and the INT8 encoder (same prompt encoder,
   decoder and runtime; ``--precision f32``) and report per case: Dice between the two label
   maps (mean over labels), DSC of each against ``--gts`` when given, seconds.
3. Encoder latency, median of 10 calls after 3 warm-up calls, f32 vs INT8.

    python bench/bench_int8.py --models_dir openvinomodels --model lite_medsam \\
        --cases test_demo/imgs --gts test_demo/gts
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def calibration_images(n_per_prefix: int, seed: int, size: int) -> list[np.ndarray]:
    """Encoder inputs (1,3,256,256) from synthetic cases of every modality (3D: 4 slices each)."""
    from daftseg.data.synthetic import PREFIXES, make_case
    from daftseg.geometry import preprocess_image

    images = []
    for prefix in PREFIXES:
        for index in range(1, n_per_prefix + 1):
            case = make_case(prefix, seed=seed, index=index, size=size, max_slices=24)
            if case.imgs.ndim == 3 and prefix.startswith("3D"):
                for z in np.linspace(0, case.imgs.shape[0] - 1, 4).astype(int):
                    images.append(preprocess_image(case.imgs[z])[0])
            else:
                images.append(preprocess_image(case.imgs)[0])
    return images


def quantize_encoder(src: Path, dst: Path, images: list[np.ndarray]) -> float:
    """Write the INT8 encoder to ``dst``; returns the seconds NNCF took."""
    try:
        import nncf
    except ImportError:
        sys.exit("bench_int8.py needs NNCF: pip install -e '.[quant]'")
    import openvino as ov

    model = ov.Core().read_model(str(src))
    t = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset(images), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(images))
    seconds = time.perf_counter() - t
    ov.save_model(quantized, str(dst))
    return seconds


def int8_models_dir(models: Path, model: str, work: Path, images: list[np.ndarray]) -> tuple[Path, float]:
    """A folder like ``models`` (links) whose ``model`` image encoder is the INT8 one."""
    from daftseg.inference.model_folder import image_encoder_file

    out = work / "int8_models"
    out.mkdir(parents=True, exist_ok=True)
    encoder = image_encoder_file(models, model)
    for f in models.iterdir():
        link = out / f.name
        if f.is_file() and not link.exists() and not f.name.startswith(f"{encoder.stem}."):
            link.symlink_to(f.resolve())
    seconds = quantize_encoder(encoder, image_encoder_file(out, model), images)
    return out, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models_dir", default="openvinomodels", help="OpenVINO IR folder (f32/FP16 weights)")
    p.add_argument("--model", default="lite_medsam", help="model name whose image encoder is quantised")
    p.add_argument("--cases", default="test_demo/imgs", help="evaluation cases (challenge npz)")
    p.add_argument("--gts", default=None, help="their ground truth (key gts), for DSC")
    p.add_argument("--work", default="/tmp/daftseg_bench_int8", help="quantised model, outputs")
    p.add_argument("--calibration_per_modality", type=int, default=2)
    p.add_argument("--calibration_seed", type=int, default=7, help="not the evaluation cases' seed")
    args = p.parse_args(argv)

    from daftseg.inference import InferenceOptions, Segmenter
    from daftseg.inference.model_folder import image_encoder_file
    from daftseg.inference.npz_io import read_case
    from daftseg.quantize.agreement import label_agreement

    models, work = Path(args.models_dir), Path(args.work)
    images = calibration_images(args.calibration_per_modality, args.calibration_seed, 512)
    int8_dir, q_seconds = int8_models_dir(models, args.model, work, images)
    print(f"quantised {image_encoder_file(models, args.model).stem} with {len(images)} calibration images "
          f"in {q_seconds:.0f}s")

    runs = {}
    for label, folder in (("f32", models), ("int8", int8_dir)):
        seg = Segmenter(folder, cache_dir=str(work / f"cache_{label}"), precision="f32",
                        options=InferenceOptions())
        outs = {}
        for path in sorted(Path(args.cases).glob("*.npz")):
            case = read_case(path)
            t = time.perf_counter()
            outs[path.name] = (seg.run(case, model=args.model).segs, time.perf_counter() - t)
        runs[label] = outs

    print(f"\nmodel {args.model}, cases {args.cases}; Dice f32 vs INT8 = mean over labels of the two label maps")
    print(f"{'case':30s} {'dice f32/int8':>13s} {'DSC f32':>8s} {'DSC int8':>8s} {'s f32':>6s} {'s int8':>6s}")
    agreement = []
    for name, (a, ta) in runs["f32"].items():
        b, tb = runs["int8"][name]
        agreement.append(label_agreement(a, b))
        dsc = ("", "")
        gt_path = Path(args.gts) / name if args.gts else None
        if gt_path and gt_path.is_file():
            with np.load(gt_path) as z:
                gt = z["gts"]
            dsc = (f"{label_agreement(a, gt):.4f}", f"{label_agreement(b, gt):.4f}")
        print(f"{name:30s} {agreement[-1]:13.4f} {dsc[0]:>8s} {dsc[1]:>8s} {ta:6.2f} {tb:6.2f}")
    print(f"{'mean':30s} {np.mean(agreement):13.4f}")
    from bench_fast import encoder_latency  # bench/ is the script's folder, on sys.path

    f32_ms = encoder_latency(image_encoder_file(models, args.model), "f32", 0) * 1000
    int8_ms = encoder_latency(image_encoder_file(int8_dir, args.model), "f32", 0) * 1000
    print(f"\nencoder latency (median of 10): f32 {f32_ms:.0f} ms, INT8 {int8_ms:.0f} ms "
          f"({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
