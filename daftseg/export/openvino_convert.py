"""ONNX -> OpenVINO IR, checked against ONNX Runtime (``onnx2openvino.py``). Imports no torch.

Every ``<in_dir>/*.onnx`` becomes ``<out_dir>/<same>.xml`` + ``.bin`` with the same tensor names
and dynamic axes; ``*.npy`` (the positional encoding) is copied. Weights are stored as FP16 by
default, as DAFT's ``ov.save_model`` call did (spec §6.2); at run time the CPU plugin widens them
to f32 again, so only the weight rounding differs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from daftseg.export.files import copy_file, save_openvino_model
from daftseg.export.runners import CheckError, OnnxGraph, OpenVinoGraph, Tolerance, compare, random_inputs
from daftseg.export.specs import CHECK_SIZES, POSITIONAL_ENCODING_FILE

# OpenVINO (f32 hint) vs ONNX Runtime. FP32 weights: kernel-order differences only. FP16 weights:
# every weight is rounded to 11 significant bits (relative error <= 2**-12), which after tens of
# layers moves outputs by about 1e-3 of their range. Measured on the fixture weights: up to 7e-3
# on embeddings (|x| <= 4.3), 5e-3 on logits, 1e-3 on IoU; a conversion fault gives errors of O(1).
FP32_TOLERANCE = Tolerance(atol=1e-3, rtol=1e-4)
FP16_TOLERANCE = Tolerance(atol=1e-2, rtol=2e-2)

Log = Callable[[str], None]


def tolerance_for(compress_to_fp16: bool) -> Tolerance:
    return FP16_TOLERANCE if compress_to_fp16 else FP32_TOLERANCE


def load_positional_encoding(folder: str | os.PathLike) -> np.ndarray | None:
    path = Path(folder) / POSITIONAL_ENCODING_FILE
    return np.load(path) if path.is_file() else None


def check_ir(xml_path: str | os.PathLike, onnx_path: str | os.PathLike, compress_to_fp16: bool,
             image_pe: np.ndarray | None = None, log: Log = print) -> dict[str, float]:
    """IR (CPU, f32 precision hint) vs ONNX Runtime on random inputs; prints and returns max abs diffs."""
    ir, ref = OpenVinoGraph(xml_path), OnnxGraph(onnx_path)
    feeds = random_inputs(ref.inputs, CHECK_SIZES, seed=2, image_pe=image_pe)
    weights = "FP16" if compress_to_fp16 else "FP32"
    return compare(Path(xml_path).stem, f"OpenVINO {weights} vs ONNX Runtime", ir(feeds), ref(feeds),
                   tolerance_for(compress_to_fp16), log)


def convert_onnx(onnx_path: str | os.PathLike, xml_path: str | os.PathLike, compress_to_fp16: bool = True,
                 check: bool = True, image_pe: np.ndarray | None = None, log: Log = print) -> Path:
    """One ONNX file -> IR at ``xml_path`` (+ ``.bin``), written atomically, then checked."""
    import openvino as ov  # optional dependency

    xml_path = save_openvino_model(ov.convert_model(str(onnx_path)), xml_path, compress_to_fp16)
    log(f"  wrote {xml_path}")
    if check:
        check_ir(xml_path, onnx_path, compress_to_fp16, image_pe, log)
    return xml_path


def convert_folder(in_dir: str | os.PathLike, out_dir: str | os.PathLike, compress_to_fp16: bool = True,
                   check: bool = True, log: Log = print) -> list[Path]:
    """Every ``*.onnx`` of ``in_dir`` -> ``out_dir/<same>.xml/.bin``; ``*.npy`` copied. Returns written paths."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f"{in_dir}: no such folder")
    onnx_files = sorted(in_dir.glob("*.onnx"))
    if not onnx_files:
        raise FileNotFoundError(f"{in_dir}: no *.onnx files")
    written = [copy_file(npy, out_dir / npy.name) for npy in sorted(in_dir.glob("*.npy"))]
    for npy in written:
        log(f"copied {npy}")
    image_pe = load_positional_encoding(in_dir)
    for i, onnx_path in enumerate(onnx_files, 1):
        start = time.perf_counter()
        log(f"[{i}/{len(onnx_files)}] {onnx_path}")
        written.append(convert_onnx(onnx_path, out_dir / f"{onnx_path.stem}.xml", compress_to_fp16, check,
                                    image_pe, log))
        log(f"  done in {time.perf_counter() - start:.1f} s")
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="onnx2openvino.py",
        description="Convert every <in_dir>/*.onnx to OpenVINO IR <out_dir>/<same>.xml/.bin (same tensor names), "
                    "copy *.npy, and compare each IR with ONNX Runtime (CPU, f32 precision hint).")
    p.add_argument("--in_dir", default="onnxmodels", help="folder of ONNX files (default: onnxmodels)")
    p.add_argument("--out_dir", default="openvinomodels", help="output folder (default: openvinomodels)")
    p.add_argument("--fp32", action="store_true",
                   help="store FP32 weights; default: FP16-compressed weights as DAFT's release (half the size)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        convert_folder(args.in_dir, args.out_dir, compress_to_fp16=not args.fp32)
    except (CheckError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
