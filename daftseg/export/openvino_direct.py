"""PyTorch -> OpenVINO IR without ONNX (``liteov.py --direct``), checked against PyTorch.

``openvino.convert_model`` traces the same wrapper modules as the ONNX export; the IR gets the
same file names, tensor names and dynamic axes. On the fixture weights its outputs equal those of
the ONNX route to the last bit (both end in the same CPU kernels), so this path exists to skip
the intermediate files, not for accuracy.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from daftseg.atomic import atomic_paths
from daftseg.export.files import ir_group, write_ir
from daftseg.export.onnx_export import torch_outputs
from daftseg.export.openvino_convert import tolerance_for
from daftseg.export.runners import OpenVinoGraph, compare, random_inputs
from daftseg.export.specs import CHECK_SIZES, GraphSpec

Log = Callable[[str], None]


def convert_module(module: nn.Module, spec: GraphSpec, example: tuple[torch.Tensor, ...]) -> object:
    """An ``ov.Model`` of ``module`` with the spec's tensor names and dynamic axes."""
    import openvino as ov  # optional dependency

    shapes = [ov.PartialShape([-1 if isinstance(d, str) else d for d in t.shape]) for t in spec.inputs]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # intended shape branches, as in ONNX export
        # OpenVINO's PyTorch frontend traces with torch.jit, which torch now calls deprecated
        warnings.filterwarnings("ignore", message="`torch.jit.trace", category=FutureWarning)
        model = ov.convert_model(module, example_input=example, input=shapes)
    # inputs are named after forward()'s parameters already; outputs get tracer-made names
    for port, t in zip(model.inputs, spec.inputs, strict=True):
        port.get_tensor().set_names({t.name})
    for port, t in zip(model.outputs, spec.outputs, strict=True):
        port.get_tensor().set_names({t.name})
    return model


def export_module(module: nn.Module, spec: GraphSpec, example: tuple[torch.Tensor, ...],
                  xml_path: str | os.PathLike, compress_to_fp16: bool = True, check: bool = True,
                  image_pe: np.ndarray | None = None, log: Log = print) -> Path:
    """Write the IR of ``module``, compare it with PyTorch on random inputs, then move it into place."""
    export_modules([(module, spec, example, Path(xml_path))], compress_to_fp16, check, image_pe, log)
    return Path(xml_path)


def export_modules(items: Sequence[tuple[nn.Module, GraphSpec, tuple[torch.Tensor, ...], Path]],
                   compress_to_fp16: bool = True, check: bool = True, image_pe: np.ndarray | None = None,
                   log: Log = print, copies: Sequence[tuple[Path, Path]] = ()) -> list[Path]:
    """(module, spec, example inputs, .xml path) items converted together, plus ``copies`` (src, dst).

    Every IR is written under a temporary name and checked there; all files are renamed into
    place only when every check passes, so a failure leaves the destinations as they were.
    """
    finals = [dst for _, dst in copies] + ir_group([xml for *_, xml in items])
    with atomic_paths(finals) as temps:
        for (src, _), tmp in zip(copies, temps, strict=False):
            shutil.copyfile(src, tmp)
        for (module, spec, example, _), tmp_xml in zip(items, temps[len(temps) - len(items):], strict=True):
            write_ir(convert_module(module, spec, example), tmp_xml, compress_to_fp16)
            if check:
                _check_against_torch(module, spec, tmp_xml, compress_to_fp16, image_pe, log)
    for path in finals:
        if path.suffix != ".bin":
            log(f"  wrote {path}" + (" (+ .bin)" if path.suffix == ".xml" else ""))
    return finals


def _check_against_torch(module: nn.Module, spec: GraphSpec, xml_path: Path, compress_to_fp16: bool,
                         image_pe: np.ndarray | None, log: Log) -> None:
    ir = OpenVinoGraph(xml_path)
    feeds = random_inputs([(t.name, t.shape) for t in spec.inputs], CHECK_SIZES, seed=2, image_pe=image_pe)
    weights = "FP16" if compress_to_fp16 else "FP32"
    compare(xml_path.stem, f"OpenVINO {weights} vs PyTorch", ir(feeds), torch_outputs(module, spec, feeds),
            tolerance_for(compress_to_fp16), log)
