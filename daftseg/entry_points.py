"""Console commands installed with the package (``[project.scripts]`` in pyproject.toml).

Each does what a root script of a checkout does, for a user who installed the wheel:

- ``daftseg-infer``: ``PerfectMetaOpenVINO.py`` (numpy, OpenCV, OpenVINO; no torch);
- ``daftseg-eval``: ``evaluation/compute_metrics.py``;
- ``daftseg-export onnx|openvino|lite``: ``export_onnx.py``, ``onnx2openvino.py``, ``liteov.py``;
- ``daftseg-convert``: ``python -m daftseg.data.converters``.

Nothing heavy is imported here: each command imports its own module when it runs, and says
which extra to install when that module's dependencies are missing.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

# step name -> (module whose main() runs it, what it does and the root script it matches)
EXPORT_STEPS: dict[str, tuple[str, str]] = {
    "onnx": ("daftseg.export.onnx_export",
             "models/<Name>.pth -> onnxmodels/<Name>_*.onnx + positional_encoding.npy (export_onnx.py)"),
    "openvino": ("daftseg.export.openvino_convert",
                 "onnxmodels/*.onnx -> openvinomodels/*.xml/.bin, *.npy copied (onnx2openvino.py)"),
    "lite": ("daftseg.export.lite",
             "lite_medsam.pth -> liteonnx/*.onnx and liteov/*.xml/.bin (liteov.py)"),
}


class MissingDependency(Exception):
    """A command's module needs a package this install lacks; the message says which extra adds it."""


def load_main(module: str, command: str, extra: str) -> Callable[..., int]:
    """``module.main``, or MissingDependency naming the absent package and ``daftseg[extra]``."""
    try:
        return importlib.import_module(module).main
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] == "daftseg":
            raise  # our own module missing is a broken install, not a missing extra
        hint = " (torch first, see the README)" if extra == "export" else ""
        raise MissingDependency(f"{command}: needs {e.name}, which is not installed: "
                                f"pip install 'daftseg[{extra}]'{hint}") from None


def _run(module: str, command: str, extra: str, argv: Sequence[str], **kwargs) -> int:
    try:
        main = load_main(module, command, extra)
    except MissingDependency as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return main(list(argv), **kwargs)


def infer() -> int:
    """``daftseg-infer``: segment a folder of npz cases, as ``PerfectMetaOpenVINO.py``."""
    # Before numpy is imported, as in the root script: OpenBLAS threads would spin beside OpenVINO's.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return _run("daftseg.inference.runner", "daftseg-infer", "infer", sys.argv[1:], fast_exit=True)


def evaluate() -> int:
    """``daftseg-eval``: DSC and NSD of segs/*.npz against gts/*.npz, as ``compute_metrics.py``."""
    return _run("daftseg.metrics.evaluate", "daftseg-eval", "eval", sys.argv[1:])


def convert() -> int:
    """``daftseg-convert``: NIfTI / DICOM / 2D images to challenge npz files."""
    return _run("daftseg.data.converters", "daftseg-convert", "data", sys.argv[1:])


def export_usage() -> str:
    steps = "\n".join(f"  {name:<9} {text}" for name, (_, text) in EXPORT_STEPS.items())
    return ("usage: daftseg-export {" + ",".join(EXPORT_STEPS) + "} [options]\n\n"
            "Export weights to ONNX and OpenVINO IR, each graph checked numerically. Steps:\n"
            f"{steps}\n\n'daftseg-export STEP --help' lists the options of a step.\n")


def export(argv: Sequence[str] | None = None) -> int:
    """``daftseg-export STEP ...``: run one export step with the remaining arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        (sys.stdout if args else sys.stderr).write(export_usage())
        return 0 if args else 2
    step, rest = args[0], args[1:]
    if step not in EXPORT_STEPS:
        sys.stderr.write(export_usage() + f"\ndaftseg-export: error: unknown step {step!r}\n")
        return 2
    return _run(EXPORT_STEPS[step][0], f"daftseg-export {step}", "export", rest)
