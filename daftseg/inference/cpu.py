"""What fast mode will use on this CPU: read from OpenVINO and from the CPU's flags, never guessed.

OpenVINO reports the CPU's precisions (``OPTIMIZATION_CAPABILITIES``: BF16, FP16, INT8, ...) and
the precision it will run at, but ``INT8`` is listed on every x86 CPU: it does not say whether the
CPU has the instructions that make INT8 fast (VNNI dot products, AMX tiles). Without them INT8
can be slower than f32 (measured on a 2-core AVX2 CPU, issue 4), so those come from the operating
system's CPU flags; where they cannot be read, the report says so instead of assuming either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daftseg.inference.model_folder import INT8_ENCODER, graph_file

CPUINFO = Path("/proc/cpuinfo")
# CPU flag (as Linux names it) -> how it is shown; the first ones found are named in the report
INT8_INSTRUCTIONS = (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"))


@dataclass(frozen=True)
class CpuInfo:
    """device: OpenVINO's name of the CPU; capabilities: its ``OPTIMIZATION_CAPABILITIES``;
    precision: what OpenVINO reports it runs the non-INT8 layers at (``f32``, ``bf16``);
    int8_instructions: VNNI/AMX found in the CPU flags (empty: none), None if the flags are unknown."""

    device: str
    capabilities: tuple[str, ...]
    precision: str
    int8_instructions: tuple[str, ...] | None


def read_cpu_flags(path: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU flags of the first processor in ``/proc/cpuinfo``; None where there is no such file
    or it lists none (not Linux, or not x86: ARM names its features differently)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return None


def cpu_info(core, precision: str, flags: frozenset[str] | None) -> CpuInfo:
    """``CpuInfo`` from an OpenVINO ``Core`` (anything with ``get_property("CPU", key)``) and CPU flags."""
    device = str(core.get_property("CPU", "FULL_DEVICE_NAME")).strip()
    capabilities = tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    found = None if flags is None else tuple(shown for flag, shown in INT8_INSTRUCTIONS if flag in flags)
    return CpuInfo(device, capabilities, precision, found)


def fast_mode_report(info: CpuInfo, int8_models: Mapping[str, tuple[float, float] | None],
                     models_dir: str | Path) -> tuple[str, list[str]]:
    """(the one line saying what fast mode uses on this CPU, warnings to print with it).

    int8_models: model name -> (mean, worst) agreement with f32 recorded by the export's gate, or None.
    """
    warnings = []
    if info.int8_instructions is None:
        isa = "VNNI/AMX unknown"
        warnings.append("cannot tell whether this CPU has VNNI or AMX (OpenVINO does not report it and "
                        f"{CPUINFO} lists no CPU flags here): INT8 may be slower than f32 on CPUs without them")
    elif not info.int8_instructions:
        isa = "no VNNI or AMX"
        warnings.append("this CPU has neither VNNI nor AMX (no " + ", ".join(f for f, _ in INT8_INSTRUCTIONS)
                        + f" in {CPUINFO}): INT8 may be slower than f32 here; without --fast (exact mode) "
                        "may be faster")
    else:
        isa = " and ".join(info.int8_instructions)
    if int8_models:
        models = "; ".join(f"{n}: agreement with f32 {a[0]:.3f} mean, {a[1]:.3f} worst" if a else f"{n}: no record"
                           for n, a in int8_models.items())
        encoders = f"INT8 image encoders ({models}) on {isa}"
    else:
        encoders = f"standard image encoders ({isa})"
        warnings.append(f"no {graph_file('<Name>', INT8_ENCODER)} in {models_dir}: fast mode runs the standard encoders "
                        "(write them with onnx2openvino.py --int8 or liteov.py --int8)")
    line = (f"fast mode on this CPU ({info.device}; OpenVINO reports {', '.join(info.capabilities)}): {encoders}, "
            f"other layers and the decoders at {info.precision}; outputs differ from DAFT's")
    return line, warnings

