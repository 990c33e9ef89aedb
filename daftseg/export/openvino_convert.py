"""ONNX -> OpenVINO IR, checked against ONNX Runtime (``onnx2openvino.py``). Imports no torch.

Every ``<in_dir>/*.onnx`` becomes ``<out_dir>/<same>.xml`` + ``.bin`` with the same tensor names
and dynamic axes; ``*.npy`` (the positional encoding) is copied. Each IR is checked under a
temporary name and renamed into place only when the check passes. Weights are stored as FP16 by
default, as DAFT's ``ov.save_model`` call did (spec §6.2); at run time the CPU plugin widens them
to f32 again, so only the weight rounding differs. With ``--int8`` every ``<Name>_image_encoder``
converted also gets ``<Name>_image_encoder_int8.xml/.bin/.json`` (``daftseg.quantize.int8``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_paths
from daftseg.export.files import ir_group, write_ir
from daftseg.export.runners import CheckError, OnnxGraph, OpenVinoGraph, Tolerance, compare, random_inputs
from daftseg.export.specs import CHECK_SIZES
from daftseg.inference.model_folder import POSITIONAL_ENCODING, model_name, split_graph_stem

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
    path = Path(folder) / POSITIONAL_ENCODING
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
    """One ONNX file -> IR at ``xml_path`` (+ ``.bin``): converted, checked, then moved into place."""
    convert_group([(Path(onnx_path), Path(xml_path))], compress_to_fp16, check, image_pe, log)
    return Path(xml_path)


def convert_group(pairs: Sequence[tuple[Path, Path]], compress_to_fp16: bool = True, check: bool = True,
                  image_pe: np.ndarray | None = None, log: Log = print,
                  copies: Sequence[tuple[Path, Path]] = ()) -> list[Path]:
    """(ONNX file, IR .xml path) pairs converted together, plus (source, destination) file ``copies``.

    Everything is written under temporary names and each IR checked against ONNX Runtime there;
    only when all checks pass are the files renamed into place. A failed check or any error
    leaves the destinations as they were. Returns the written paths.
    """
    import openvino as ov  # optional dependency

    ir_files = ir_group([xml for _, xml in pairs])
    finals = [dst for _, dst in copies] + ir_files
    with atomic_paths(finals) as temps:
        for (src, _), tmp in zip(copies, temps, strict=False):
            shutil.copyfile(src, tmp)
        tmp_xmls = temps[len(temps) - len(pairs):]
        for (onnx_path, _), tmp_xml in zip(pairs, tmp_xmls, strict=True):
            write_ir(ov.convert_model(str(onnx_path)), tmp_xml, compress_to_fp16)
            if check:
                check_ir(tmp_xml, onnx_path, compress_to_fp16, image_pe, log)
    for path in finals:
        if path.suffix != ".bin":
            log(f"  wrote {path}" + (" (+ .bin)" if path.suffix == ".xml" else ""))
    return finals


def model_groups(onnx_files: Sequence[Path]) -> list[list[Path]]:
    """``<Name>_{image_encoder,prompt_encoder,mask_decoder}.onnx`` grouped by ``<Name>``; others alone."""
    groups: dict[str, list[Path]] = {}
    for path in onnx_files:
        graph = split_graph_stem(path.stem)
        groups.setdefault(f"{graph[0]}_*" if graph else path.stem, []).append(path)
    return list(groups.values())


def convert_folder(in_dir: str | os.PathLike, out_dir: str | os.PathLike, compress_to_fp16: bool = True,
                   check: bool = True, log: Log = print) -> list[Path]:
    """Every ``*.onnx`` of ``in_dir`` -> ``out_dir/<same>.xml/.bin``; ``*.npy`` copied. Returns written paths.

    A model's graphs are converted and checked together and appear together (``convert_group``);
    the ``*.npy`` copies come with the first model. A failed check stops the run and leaves that
    model's earlier files in place.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f"{in_dir}: no such folder")
    onnx_files = sorted(in_dir.glob("*.onnx"))
    if not onnx_files:
        raise FileNotFoundError(f"{in_dir}: no *.onnx files")
    copies = [(npy, out_dir / npy.name) for npy in sorted(in_dir.glob("*.npy"))]
    image_pe = load_positional_encoding(in_dir)
    written: list[Path] = []
    groups = model_groups(onnx_files)
    for i, group in enumerate(groups, 1):
        start = time.perf_counter()
        log(f"[{i}/{len(groups)}] " + ", ".join(str(p) for p in group))
        written += convert_group([(p, out_dir / f"{p.stem}.xml") for p in group], compress_to_fp16, check,
                                 image_pe, log, copies=copies if i == 1 else ())
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
    from daftseg.quantize.int8 import add_int8_arguments

    add_int8_arguments(p)
    return p


def encoder_models(written: Sequence[Path]) -> list[str]:
    """``<Name>`` of every ``<Name>_image_encoder.xml`` among ``written``, in order."""
    return [name for p in written if (name := model_name(p.name)) is not None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from daftseg.quantize.int8 import Int8Error, export_int8_models, import_nncf, settings_from_args

    int8 = settings_from_args(args, parser)
    try:
        if int8:
            import_nncf()  # before the conversion, not after minutes of it
        written = convert_folder(args.in_dir, args.out_dir, compress_to_fp16=not args.fp32)
    except (CheckError, FileNotFoundError, Int8Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if int8 and export_int8_models(Path(args.out_dir), encoder_models(written), int8):
        return 1
    return 0
