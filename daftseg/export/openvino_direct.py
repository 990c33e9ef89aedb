"""PyTorch -> OpenVINO IR without ONNX (``liteov.py --direct``), checked against PyTorch.

``openvino.convert_model`` traces the same wrapper modules as the ONNX export; the IR gets the
same file names, tensor names and dynamic axes. On the fixture weights its outputs equal those of
the ONNX route to the last bit (both end in the same CPU kernels), so this path exists to skip
the intermediate files, not for accuracy.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from daftseg.export.files import save_openvino_model
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
    """Write the IR of ``module`` (atomically) and compare it with PyTorch on random inputs."""
    xml_path = save_openvino_model(convert_module(module, spec, example), xml_path, compress_to_fp16)
    log(f"  wrote {xml_path}")
    if check:
        ir = OpenVinoGraph(xml_path)
        feeds = random_inputs([(t.name, t.shape) for t in spec.inputs], CHECK_SIZES, seed=2, image_pe=image_pe)
        weights = "FP16" if compress_to_fp16 else "FP32"
        compare(xml_path.stem, f"OpenVINO {weights} vs PyTorch", ir(feeds), torch_outputs(module, spec, feeds),
                tolerance_for(compress_to_fp16), log)
    return xml_path
