"""Run exported graphs with ONNX Runtime or OpenVINO and compare outputs. Imports no torch.

Both runners take and return ``{tensor name: numpy array}``, so a check is one dict comparison
whatever produced the outputs (PyTorch, ONNX Runtime, an FP32 or FP16-weight IR).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# An input as read from a graph: name and shape, with None or a string for a dynamic axis.
InputShape = tuple[str, Sequence[int | str | None]]


class OnnxGraph:
    """An ONNX file on ONNX Runtime's CPU provider."""

    def __init__(self, path: str | os.PathLike) -> None:
        import onnxruntime as ort  # optional dependency: export environment only

        self.path = Path(path)
        options = ort.SessionOptions()
        # idle worker threads otherwise spin for a while after each run, stealing a shared CPU
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.inputs: list[InputShape] = [(i.name, tuple(i.shape)) for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(feeds)), strict=True))


class OpenVinoGraph:
    """An OpenVINO IR (or in-memory ``ov.Model``) compiled for CPU.

    ``precision`` is the CPU ``INFERENCE_PRECISION_HINT``. Checks use "f32": on CPUs with native
    bf16 (AMX, AVX512-BF16) the default is bf16, whose error would hide a conversion fault.
    """

    def __init__(self, model: str | os.PathLike | object, precision: str | None = "f32") -> None:
        import openvino as ov  # optional dependency

        core = ov.Core()
        self.model = core.read_model(str(model)) if isinstance(model, (str, os.PathLike)) else model
        config = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
        self.compiled = core.compile_model(self.model, "CPU", config)
        self.inputs: list[InputShape] = [
            (p.get_any_name(), tuple(None if d.is_dynamic else d.get_length() for d in p.get_partial_shape()))
            for p in self.model.inputs
        ]
        # names as the IR declares them: compiling may fold a trailing no-op (the graphs' final
        # reshape) and give the port its producer's name as well, which get_any_name may pick
        self.output_names = [p.get_any_name() for p in self.model.outputs]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.compiled(dict(feeds))
        # copy: OpenVINO reuses its output buffers on the next call
        return {name: np.array(result[port]) for name, port in zip(self.output_names, self.compiled.outputs,
                                                                   strict=True)}


def random_inputs(inputs: Sequence[InputShape], sizes: Mapping[str, int] | None = None, seed: int = 0,
                  image_pe: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Plausible float32 inputs for a graph, keyed by input name.

    Dynamic axes named in ``sizes`` take that size, others 1. DAFT's names get realistic values
    (``image`` in [0, 1], valid ``boxes`` in 256-space, ``image_pe`` from the .npy when given);
    anything else is standard normal, about the scale of an image embedding.
    """
    sizes = dict(sizes or {})
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in inputs:
        dims = tuple(d if isinstance(d, int) and d > 0 else sizes.get(d, 1) if isinstance(d, str) else 1
                     for d in shape)
        if name == "image":
            value = rng.random(dims)
        elif name == "boxes":
            value = _random_boxes(rng, dims)
        elif name == "image_pe" and image_pe is not None and tuple(image_pe.shape) == dims:
            value = image_pe
        else:
            value = rng.standard_normal(dims)
        feeds[name] = np.ascontiguousarray(value, dtype=np.float32)
    return feeds


def _random_boxes(rng: np.random.Generator, dims: tuple[int, ...]) -> np.ndarray:
    """[x_min, y_min, x_max, y_max] with 8..96 px sides inside 256x256; dims end in 4."""
    n = int(np.prod(dims[:-1]))
    low = rng.uniform(0, 160, size=(n, 2))
    high = np.minimum(low + rng.uniform(8, 96, size=(n, 2)), 255)
    return np.floor(np.concatenate([low, high], axis=1)).reshape(dims)


def max_abs_diffs(got: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Output name -> max |got - ref| (names of ``ref``; shapes must agree)."""
    out = {}
    for name, r in ref.items():
        if got[name].shape != r.shape:
            raise ValueError(f"{name}: shape {got[name].shape} differs from reference {r.shape}")
        out[name] = float(np.max(np.abs(got[name].astype(np.float64) - r))) if r.size else 0.0
    return out


@dataclass(frozen=True)
class Tolerance:
    """Pass when max|got - ref| <= atol + rtol * max|ref| (per output)."""

    atol: float
    rtol: float = 0.0

    def failures(self, diffs: Mapping[str, float], ref: Mapping[str, np.ndarray]) -> list[str]:
        bad = []
        for name, d in diffs.items():
            limit = self.atol + self.rtol * float(np.max(np.abs(ref[name]))) if ref[name].size else self.atol
            if not d <= limit:  # also catches NaN
                bad.append(f"{name}: max abs diff {d:.3g} > {limit:.3g}")
        return bad


def format_diffs(label: str, what: str, diffs: Mapping[str, float]) -> str:
    """One progress line, e.g. ``  CT_image_encoder  ONNX Runtime vs PyTorch  image_embedding 2.1e-06``."""
    return f"  {label:<32} {what:<28} " + "  ".join(f"{k} {v:.2e}" for k, v in diffs.items())


class CheckError(RuntimeError):
    """An exported graph whose outputs do not match its source within tolerance."""


def compare(label: str, what: str, got: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray],
            tolerance: Tolerance, log=print) -> dict[str, float]:
    """Print the max abs differences of ``got`` against ``ref``; raise CheckError beyond ``tolerance``."""
    diffs = max_abs_diffs(got, ref)
    log(format_diffs(label, what, diffs))
    bad = tolerance.failures(diffs, ref)
    if bad:
        raise CheckError(f"{label}: {what} differs: " + "; ".join(bad))
    return diffs
