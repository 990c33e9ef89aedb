#!/usr/bin/env python3
"""Exact mode against fast mode (``--fast``) on cases with ground truth: seconds, DSC/NSD, agreement.

For every case of ``--cases`` (challenge npz with ``--gts``) and every ``--scan IMAGE LABELS``
(a NIfTI scan and its label map, converted to a challenge case with daftseg-convert):

- seconds of ``Segmenter.run`` in exact mode (the default: f32, DAFT's outputs), at OpenVINO's
  default precision without INT8 (``auto``: what fast mode gives without INT8 files) and in fast
  mode (INT8 image encoders where ``<Name>_image_encoder_int8.xml`` exists, OpenVINO's best
  precision for the rest), one Segmenter per mode, each model compiled before its cases are timed,
  the modes taking turns case by case (a shared machine's changing load hits all three alike);
- DSC and NSD of each against the ground truth, as ``evaluation/compute_metrics.py`` scores them
  (``daftseg.metrics.evaluate.evaluate_case_file``), and their change;
- agreement: mean Dice over labels of the fast label map against the exact one;
- means per modality (``compute_metrics``' targets);
- image encoder latency (median of 10 after 3 warm-up calls) at f32, at OpenVINO's default
  precision, and INT8, and mask decoder milliseconds per box at 1, 4 and all boxes per call (fast
  mode's precision), the measurement behind ``FAST_DECODE_BATCH``.

The CPU's name, flags that matter (AVX2, AVX-512, BF16, VNNI, AMX) and OpenVINO's view of it are
printed first, with fast mode's own capability line.

    python bench/bench_fast.py --models_dir openvinomodels --cases test_demo/imgs --gts test_demo/gts \\
        --scan test_demo/scans/mni152_t1.nii.gz test_demo/scans/mni152_tissue_labels_slab.nii.gz --scan_modality MR
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHOWN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def print_cpu(models: Path) -> None:
    from daftseg.inference import Segmenter
    from daftseg.inference.cpu import read_cpu_flags
    from daftseg.inference.openvino_runtime import import_openvino, reported_precision

    ov = import_openvino()
    core = ov.Core()
    flags = read_cpu_flags()
    shown = "unknown" if flags is None else " ".join(f for f in SHOWN_FLAGS if f in flags) or "none of them"
    print(f"CPU: {core.get_property('CPU', 'FULL_DEVICE_NAME')}, {os.cpu_count()} logical cores")
    print(f"CPU flags ({', '.join(SHOWN_FLAGS)}): {shown}")
    print(f"OpenVINO {ov.get_version()}: capabilities {', '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}; "
          f"default precision {reported_precision(core)}")
    line, warnings = Segmenter(models, fast=True).fast_mode_report()
    print(line)
    for w in warnings:
        print(f"warning: {w}")


def convert_scans(scans: list[list[str]], modality: str, work: Path) -> tuple[Path, Path] | None:
    """The ``--scan`` pairs as challenge cases in ``work/scans/{imgs,gts}``."""
    if not scans:
        return None
    from daftseg.data import converters

    out = work / "scans"
    for image, labels in scans:
        name = f"3DBox_{modality}_{Path(image).name.split('.')[0]}"
        argv = ["nifti", image, labels, "-o", str(out), "--modality", modality, "--name", name]
        if not (out / "imgs" / f"{name}.npz").is_file() and converters.main(argv) != 0:
            sys.exit(f"cannot convert {image}")
    return out / "imgs", out / "gts"


# mode -> Segmenter arguments: exact (the default), OpenVINO's default precision without INT8 (what
# fast mode would give without its INT8 files: bf16 on CPUs with native bf16), fast
MODES = {"exact": {}, "auto": {"precision": "auto"}, "fast": {"fast": True}}


def run_modes(models: Path, cases: list[tuple[Path, Path]], work: Path, threads: int, reps: int) -> dict:
    """label -> case name -> (seconds, model, encoder file): one process-long ``Segmenter`` per mode.

    The modes take turns case by case (exact, auto, fast on one case, then the next case), so that a
    machine whose load changes during the run slows every mode alike; each time is the median of
    ``reps`` runs, every model compiled before it is timed.
    """
    from daftseg.inference import Segmenter
    from daftseg.inference.npz_io import read_case, write_segs

    segmenters = {label: Segmenter(models, cache_dir=str(work / f"cache_{label}"), threads=threads, **kw)
                  for label, kw in MODES.items()}
    rows: dict[str, dict] = {label: {} for label in MODES}
    for path, _gts in cases:
        case = read_case(path)
        for label, seg in segmenters.items():
            model = seg.route(case.name, warn=False).model
            sessions = seg.sessions.model(model)  # compiled (and cached) before timing
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                result = seg.run(case)
                times.append(time.perf_counter() - t)
            out = work / f"segs_{label}"
            out.mkdir(parents=True, exist_ok=True)
            write_segs(out / path.name, result.segs)
            rows[label][path.name] = (statistics.median(times), model, sessions.encoder.path.name)
            print(f"  {label:5s} {path.name:40s} {model:12s} {rows[label][path.name][0]:7.2f}s", flush=True)
    return rows


def encoder_latency(xml: Path, precision: str | None, threads: int) -> float:
    from daftseg.inference.openvino_runtime import import_openvino

    props = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
    if threads:
        props["INFERENCE_NUM_THREADS"] = threads
    request = import_openvino().Core().compile_model(str(xml), "CPU", props).create_infer_request()
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    times = []
    for i in range(13):
        t = time.perf_counter()
        request.infer({"image": x})
        if i >= 3:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def decoder_ms_per_box(models: Path, model: str, threads: int, boxes: int = 12) -> dict[int, float]:
    """Decoder ms per box at 1, 4 and ``boxes`` boxes per call, fast mode's precision, dynamic graphs."""
    from daftseg.inference.options import FAST_PRECISION
    from daftseg.inference.sessions import SessionConfig, Sessions

    m = Sessions(models, SessionConfig(None, threads, FAST_PRECISION, None)).model(model)
    emb = m.encode(np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32))
    rng = np.random.default_rng(1)
    low = rng.uniform(0, 150, (boxes, 2))
    b = np.concatenate([low, low + rng.uniform(20, 100, (boxes, 2))], 1).astype(np.float32)
    out = {}
    for batch in (1, 4, boxes):
        m.decode(emb, b, batch)
        t = time.perf_counter()
        for _ in range(3):
            m.decode(emb, b, batch)
        out[batch] = (time.perf_counter() - t) / 3 / boxes * 1000
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models_dir", default="openvinomodels", help="IR folder, with <Name>_image_encoder_int8.xml")
    p.add_argument("--cases", default=None, help="challenge npz cases (imgs + boxes)")
    p.add_argument("--gts", default=None, help="their ground truth (gts, spacing), same names")
    p.add_argument("--scan", nargs=2, action="append", default=[], metavar=("IMAGE", "LABELS"),
                   help="a NIfTI scan and its label map (one box per label); repeatable")
    p.add_argument("--scan_modality", default="MR", help="modality of the --scan volumes (default MR)")
    p.add_argument("--work", default="/tmp/daftseg_bench_fast", help="outputs and compiled-model caches")
    p.add_argument("--threads", type=int, default=0, help="OpenVINO threads (0: all cores)")
    p.add_argument("--reps", type=int, default=1, help="runs of each case in each mode; the median is shown")
    args = p.parse_args(argv)

    from daftseg.inference.model_folder import INT8_SUFFIX, image_encoder_file, int8_encoder_file
    from daftseg.metrics.evaluate import evaluate_case_file
    from daftseg.metrics.summary import target_of
    from daftseg.quantize.agreement import label_agreement

    models, work = Path(args.models_dir), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print_cpu(models)
    folders = [(Path(args.cases), Path(args.gts))] if args.cases else []
    converted = convert_scans(args.scan, args.scan_modality, work)
    folders += [converted] if converted else []
    cases = [(path, gts) for imgs, gts in folders for path in sorted(imgs.glob("*.npz"))
             if not path.name.startswith(".")]
    if not cases:
        sys.exit("no cases: pass --cases/--gts or --scan")

    print(f"\n{len(cases)} cases; each mode in its own Segmenter, models compiled before timing, the modes "
          f"taking turns case by case, median of {args.reps}")
    runs = run_modes(models, cases, work, args.threads, args.reps)

    print("\nx: exact s / fast s; auto: no hint, no INT8 (bf16 where native); agree: mean Dice over labels "
          "against the exact label map")
    print(f"{'case':40s} {'enc':4s} {'exact s':>7s} {'auto s':>7s} {'fast s':>7s} {'x':>5s} {'DSC ex':>6s} "
          f"{'DSC fa':>6s} {'dDSC':>7s} {'NSD ex':>6s} {'NSD fa':>6s} {'dNSD':>7s} {'agr au':>6s} {'agr fa':>6s}")
    per_target = defaultdict(list)
    for path, gts in cases:
        name = path.name
        te, ta, tf = (runs[label][name][0] for label in MODES)
        encoder = runs["fast"][name][2]
        score = {label: evaluate_case_file(name, work / f"segs_{label}", gts) for label in ("exact", "fast")}
        segs = {}
        for label in MODES:
            with np.load(work / f"segs_{label}" / name) as z:
                segs[label] = z["segs"]
        agree_auto, agree_fast = (label_agreement(segs["exact"], segs[label]) for label in ("auto", "fast"))
        d_dsc = score["fast"].dsc - score["exact"].dsc
        d_nsd = score["fast"].nsd - score["exact"].nsd
        enc = "int8" if INT8_SUFFIX in encoder else "std"
        print(f"{name:40s} {enc:4s} {te:7.2f} {ta:7.2f} {tf:7.2f} {te / tf:5.2f} {score['exact'].dsc:6.4f} "
              f"{score['fast'].dsc:6.4f} {d_dsc:+7.4f} {score['exact'].nsd:6.4f} {score['fast'].nsd:6.4f} "
              f"{d_nsd:+7.4f} {agree_auto:6.4f} {agree_fast:6.4f}")
        per_target[target_of(name)].append((te, ta, tf, d_dsc, d_nsd, agree_fast))

    print(f"\n{'modality':12s} {'cases':>5s} {'exact s':>8s} {'auto s':>8s} {'fast s':>8s} {'x':>5s} "
          f"{'mean dDSC':>9s} {'mean dNSD':>9s} {'agree':>6s} {'worst':>6s}")
    for target, rows in sorted(per_target.items()):
        te, ta, tf, d_dsc, d_nsd, agree = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
        print(f"{target:12s} {len(rows):5d} {te.sum():8.2f} {ta.sum():8.2f} {tf.sum():8.2f} {te.sum() / tf.sum():5.2f} "
              f"{np.nanmean(d_dsc):+9.4f} {np.nanmean(d_nsd):+9.4f} {agree.mean():6.4f} {agree.min():6.4f}")

    print("\nimage encoder latency, median of 10 (ms)")
    for model in sorted({runs["exact"][path.name][1] for path, _ in cases}):
        std, int8 = image_encoder_file(models, model), int8_encoder_file(models, model)
        cells = [f"f32 {encoder_latency(std, 'f32', args.threads) * 1000:.0f}",
                 f"default {encoder_latency(std, None, args.threads) * 1000:.0f}"]
        if int8.is_file():
            cells.append(f"INT8 {encoder_latency(int8, None, args.threads) * 1000:.0f}")
        print(f"  {model:12s} " + ", ".join(cells))
        per_box = decoder_ms_per_box(models, model, args.threads)
        print(f"  {model:12s} decoder at fast mode's precision, ms per box: "
              + ", ".join(f"{k} per call {v:.1f}" for k, v in per_box.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
