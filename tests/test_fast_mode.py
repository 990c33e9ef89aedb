"""Fast mode (--fast): INT8 image encoders where exported, the standard ones elsewhere, a capability
line that says what the CPU has, and default outputs that never change because INT8 files exist.

The "INT8" encoder here is a stand-in with DAFT's tensor names whose masks visibly differ from the
standard toy encoder's (channel 0 carries the negated intensity), so which graph ran shows in the
outputs. Quantisation itself is tested in test_int8_export.py. Every run pins a precision or reads
it from a fake core, so nothing depends on the host CPU.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from ov_toy_models import (  # noqa: F401 - fixture
    _named,
    _param,
    negated_image_encoder,
    toy_image_encoder,
    toy_models_dir,
    write_toy_models,
)

from daftseg import segment
from daftseg.inference import Segmenter
from daftseg.inference.cpu import cpu_info, fast_mode_report, read_cpu_flags
from daftseg.inference.model_folder import int8_agreement, int8_encoder_file, int8_model_names
from daftseg.inference.npz_io import make_case
from daftseg.inference.runner import main as run_batch
from daftseg.quantize.calibration import CalibrationCase, CalibrationSet
from daftseg.quantize.int8 import Int8Settings, export_int8

REPO = Path(__file__).resolve().parents[1]
BOXES = np.array([[5, 6, 40, 30], [20, 10, 60, 45]])


@pytest.fixture
def models(toy_models_dir, tmp_path) -> Path:  # noqa: F811
    """The toy models plus an INT8 encoder for XRay only."""
    folder = shutil.copytree(toy_models_dir, tmp_path / "models")
    ov.save_model(negated_image_encoder(), int8_encoder_file(folder, "XRay"), compress_to_fp16=False)
    return folder


def cases(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for name in ("2DBox_XRay_0001.npz", "2DBox_Unknown_0002.npz"):  # XRay, and the fallback lite_medsam
        np.savez_compressed(folder / name, imgs=rng.integers(0, 256, (60, 64, 3)).astype(np.uint8), boxes=BOXES)
    return folder


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return run_batch([str(a) for a in argv], stdout=out, stderr=err), out.getvalue(), err.getvalue()


def segs_of(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for p in sorted(folder.glob("*.npz")):
        with np.load(p) as z:
            out[p.name] = z["segs"]
    return out


def test_fast_uses_the_int8_encoder_where_present_and_the_standard_one_elsewhere(models, caplog) -> None:
    image = np.random.default_rng(0).integers(0, 256, (60, 64, 3)).astype(np.uint8)
    exact = Segmenter(models, precision="f32")
    fast = Segmenter(models, precision="f32", fast=True)  # f32 pinned: only the encoder choice differs
    assert int8_model_names(models) == ["XRay"]

    assert exact.sessions.model("XRay").encoder.path.name == "XRay_image_encoder.xml"
    assert fast.sessions.model("XRay").encoder.path.name == "XRay_image_encoder_int8.xml"
    a, b = (s.segment(image, BOXES, model="XRay") for s in (exact, fast))
    assert (a > 0).sum() > 100 and not np.array_equal(a, b)  # the INT8 graph really ran

    with caplog.at_level(logging.WARNING, logger="daftseg.inference"):
        assert fast.sessions.model("CT").encoder.path.name == "CT_image_encoder.xml"
        fast.sessions._models.clear()  # compiled again: the warning is still given once per model
        fast.sessions.model("CT")
    warnings = [r.getMessage() for r in caplog.records if "CT_image_encoder_int8.xml" in r.getMessage()]
    assert len(warnings) == 1 and "standard image encoder" in warnings[0]
    assert np.array_equal(exact.segment(image, BOXES, model="CT"), fast.segment(image, BOXES, model="CT"))


def test_default_outputs_do_not_change_when_int8_files_exist(models, toy_models_dir, tmp_path) -> None:  # noqa: F811
    inp = cases(tmp_path / "imgs")
    common = ("--cache_dir", "", "--precision", "f32")
    assert run_cli("-i", inp, "-o", tmp_path / "plain", "-m", toy_models_dir, *common)[0] == 0
    rc, stdout, _ = run_cli("-i", inp, "-o", tmp_path / "with_int8", "-m", models, *common)
    assert rc == 0 and "fast mode" not in stdout
    plain, with_int8 = segs_of(tmp_path / "plain"), segs_of(tmp_path / "with_int8")
    assert plain.keys() == with_int8.keys() == {"2DBox_XRay_0001.npz", "2DBox_Unknown_0002.npz"}
    for name in plain:
        assert np.array_equal(plain[name], with_int8[name]), name

    # the same folder with --fast: the XRay case changes, the fallback (no INT8 file) does not
    assert run_cli("-i", inp, "-o", tmp_path / "fast", "-m", models, "--fast", *common)[0] == 0
    fast = segs_of(tmp_path / "fast")
    assert not np.array_equal(fast["2DBox_XRay_0001.npz"], plain["2DBox_XRay_0001.npz"])
    assert np.array_equal(fast["2DBox_Unknown_0002.npz"], plain["2DBox_Unknown_0002.npz"])


def test_default_mode_never_reads_an_int8_file(models, tmp_path) -> None:
    broken = int8_encoder_file(models, "lite_medsam")
    broken.write_text("not an IR")
    broken.with_suffix(".bin").write_bytes(b"")
    inp = cases(tmp_path / "imgs")
    rc, _, stderr = run_cli("-i", inp, "-o", tmp_path / "exact", "-m", models, "--cache_dir", "")
    assert rc == 0 and stderr.count("error") == 0
    rc, _, stderr = run_cli("-i", inp, "-o", tmp_path / "fast", "-m", models, "--cache_dir", "", "--fast")
    assert rc == 1 and "error: 2DBox_Unknown_0002.npz" in stderr  # fast mode did read it


class ReportingCore(ov.Core):
    """A real Core that reports the CPU name, capabilities and default precision the test chooses."""

    def __init__(self, capabilities: list[str], precision: str) -> None:
        super().__init__()
        self.fake = {"FULL_DEVICE_NAME": "Test CPU", "OPTIMIZATION_CAPABILITIES": capabilities,
                     "INFERENCE_PRECISION_HINT": ov.Type.bf16 if precision == "bf16" else ov.Type.f32}

    def get_property(self, *args):
        if len(args) == 2 and args[0] == "CPU" and args[1] in self.fake:
            return self.fake[args[1]]
        return super().get_property(*args)


@pytest.mark.parametrize("flags, capabilities, precision, names, warning", [
    ({"avx2", "avx512f", "avx512_vnni"}, ["FP32", "BF16", "INT8"], "bf16", "AVX512-VNNI", None),
    ({"avx2", "avx_vnni"}, ["FP32", "INT8"], "f32", "AVX-VNNI", None),
    ({"amx_int8", "amx_bf16", "avx512_vnni"}, ["FP32", "BF16", "INT8"], "bf16", "AMX-INT8 and AVX512-VNNI", None),
    ({"avx2", "fma"}, ["FP32", "INT8"], "f32", "no VNNI or AMX", "neither VNNI nor AMX"),
    (None, ["FP32", "INT8"], "f32", "VNNI/AMX unknown", "cannot tell whether this CPU has VNNI or AMX"),
])
def test_capability_line_for_a_core_reporting_vnni_amx_or_neither(models, flags, capabilities, precision,
                                                                    names, warning) -> None:
    # the export's record (daftseg.quantize): its gate numbers are shown with the model
    record = {"model": "XRay", "agreement": {"mean": 0.97124, "worst": 0.88007, "per_case": {}}}
    int8_encoder_file(models, "XRay").with_suffix(".json").write_text(json.dumps(record))
    seg = Segmenter(models, fast=True)  # auto: the precision is what the (fake) core reports
    seg.sessions._set_core(ReportingCore(capabilities, precision))
    line, warnings = seg.fast_mode_report(cpu_flags=lambda: None if flags is None else frozenset(flags))
    assert line == (f"fast mode on this CPU (Test CPU; OpenVINO reports {', '.join(capabilities)}): INT8 image "
                    f"encoders (XRay: agreement with f32 0.971 mean, 0.880 worst) on {names}, other layers and the "
                    f"decoders at {precision}; outputs differ from DAFT's")
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warning in warnings[0] and "INT8 may be slower than f32" in warnings[0]


def test_capability_report_without_int8_files_says_so(toy_models_dir) -> None:  # noqa: F811
    info = cpu_info(ReportingCore(["FP32", "INT8"], "f32"), "f32", frozenset({"avx512_vnni"}))
    line, warnings = fast_mode_report(info, {}, toy_models_dir)
    assert "standard image encoders (AVX512-VNNI)" in line
    assert warnings == [(f"no <Name>_image_encoder_int8.xml in {toy_models_dir}: fast mode runs the standard "
                         "encoders (write them with onnx2openvino.py --int8 or liteov.py --int8)")]


def test_cpu_flags_are_read_from_cpuinfo_or_unknown(tmp_path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\n"
                   "flags\t\t: fpu\n")
    assert read_cpu_flags(x86) == frozenset({"fpu", "avx2", "avx512_vnni"})
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n")
    assert read_cpu_flags(arm) is None
    assert read_cpu_flags(tmp_path / "missing") is None


def test_batch_prints_the_capability_line_and_the_warning(models, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("daftseg.inference.cpu.read_cpu_flags", lambda: frozenset({"avx2"}))
    rc, stdout, stderr = run_cli("-i", cases(tmp_path / "imgs"), "-o", tmp_path / "segs", "-m", models,
                                 "--cache_dir", "", "--fast")
    assert rc == 0
    assert stdout.splitlines()[0].startswith("fast mode on this CPU (") and "INT8 image encoders (XRay: no record)" in stdout
    assert "warning: this CPU has neither VNNI nor AMX" in stderr
    assert "model lite_medsam has no lite_medsam_image_encoder_int8.xml" in stderr


def test_segment_and_app_take_fast(models, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("daftseg.inference.cpu.read_cpu_flags", lambda: frozenset({"avx512_vnni"}))
    picture = tmp_path / "x.npz"
    np.savez_compressed(picture, imgs=np.random.default_rng(1).integers(0, 256, (60, 64, 3)).astype(np.uint8),
                        boxes=BOXES)
    assert segment.main(["--image", str(picture), "--box", "5,6,40,30", "-m", str(models), "--model", "XRay",
                         "--cache_dir", "", "--fast", "-o", str(tmp_path / "x_seg.npz")]) == 0
    out = capsys.readouterr().out
    assert "fast mode on this CPU" in out and "INT8 image encoders (XRay: no record) on AVX512-VNNI" in out

    pytest.importorskip("starlette", reason="the app extra (starlette) is not installed")
    import daftseg.app.cli as app_cli
    from daftseg.app.core import App

    config = app_cli.make_config(app_cli.build_parser().parse_args(
        ["--data", str(tmp_path), "-m", str(models), "--fast", "--no_browser"]))
    app = App(config)  # --fast: the Fast switch starts on; the exact Segmenter stays exact
    assert config.fast and not app.segmenter.sessions.config.int8 and app.segmenter.sessions.config.precision == "f32"
    sessions = app.segmenter_for(True).sessions
    assert sessions.config.int8 and sessions.config.precision == "auto"
    assert sessions.encoder_path("XRay").name == "XRay_image_encoder_int8.xml"


def _predict_args(tmp_path: Path, fast: str | None) -> subprocess.CompletedProcess:
    """predict.sh with a stub python3 that prints its arguments."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "python3").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    (stub / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DAFTSEG_FAST"}
    env.update(PATH=f"{stub}:{env['PATH']}", INPUT_DIR=str(tmp_path / "in"), OUTPUT_DIR=str(tmp_path / "out"),
               TMPDIR=str(tmp_path))
    if fast is not None:
        env["DAFTSEG_FAST"] = fast
    return subprocess.run(["sh", str(REPO / "predict.sh")], env=env, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("value, expect_fast", [(None, False), ("0", False), ("1", True), ("yes", True)])
def test_predict_sh_turns_fast_mode_on_from_the_environment(tmp_path, value, expect_fast) -> None:
    done = _predict_args(tmp_path, value)
    assert done.returncode == 0, done.stderr
    args = done.stdout.splitlines()
    assert args[0] == "PerfectMetaOpenVINO.py" and ("--fast" in args) == expect_fast


def test_predict_sh_refuses_an_unknown_fast_value(tmp_path) -> None:
    done = _predict_args(tmp_path, "maybe")
    assert done.returncode == 2 and "DAFTSEG_FAST must be" in done.stderr and done.stdout == ""


def test_fast_decode_batch_applies_only_where_nothing_else_was_asked(tmp_path, monkeypatch) -> None:
    from daftseg.inference.options import FAST_DECODE_BATCH, InferenceOptions

    assert FAST_DECODE_BATCH == 1  # measured: batching was not faster at fast mode's precision (options.py)
    assert Segmenter(tmp_path, fast=True).options.decode_batch == 1
    monkeypatch.setattr("daftseg.inference.segmenter.FAST_DECODE_BATCH", 4)  # a CPU where it were faster
    assert Segmenter(tmp_path, fast=True).options.decode_batch == 4
    assert Segmenter(tmp_path, fast=True, options=InferenceOptions(decode_batch=8)).options.decode_batch == 8
    assert Segmenter(tmp_path).options.decode_batch == 1  # exact mode never batches by itself


@pytest.mark.parametrize("text", [None, "{not json", '{"agreement": {"mean": 0.9}}', '{"agreement": null}', "[1]"])
def test_a_missing_or_unreadable_int8_record_shows_as_no_record(models, text) -> None:
    if text is not None:
        int8_encoder_file(models, "XRay").with_suffix(".json").write_text(text)
    assert int8_agreement(models, "XRay") is None


def test_an_int8_encoder_older_than_a_re_export_is_noticed_and_the_standard_one_runs(tmp_path, caplog) -> None:
    models = write_toy_models(tmp_path / "models", {"XRay": {"alpha": 1.0}})
    weights = models / "XRay_image_encoder.bin"
    earlier = weights.stat().st_mtime - 3600  # the first export, an hour ago
    os.utime(weights, (earlier, earlier))
    rng = np.random.default_rng(4)
    imgs = [rng.integers(0, 256, (64, 64, 3)).astype(np.uint8) for _ in range(3)]
    calib = [CalibrationCase(make_case(f"2DBox_XRay_{i}.npz", im, BOXES)) for i, im in enumerate(imgs)]
    export_int8(models, "XRay", Int8Settings(min_agreement=0.0), log=lambda _: None,
                calibration=CalibrationSet("three", calib), split_cases=(calib[:2], calib[2:]))
    image = imgs[0]
    with caplog.at_level(logging.WARNING, logger="daftseg.inference"):
        current = Segmenter(models, precision="f32", fast=True)
        assert current.sessions.model("XRay").encoder.path.name == "XRay_image_encoder_int8.xml"
    assert not caplog.records

    # the standard encoder exported again (same size, written now): the INT8 file was made from the old one
    ov.save_model(toy_image_encoder(seed=7), models / "XRay_image_encoder.xml", compress_to_fp16=False)
    record = json.loads((models / "XRay_image_encoder_int8.json").read_text())
    assert record["source_bin"]["size"] == weights.stat().st_size  # same size: only the time tells
    with caplog.at_level(logging.WARNING, logger="daftseg.inference"):
        fast = Segmenter(models, precision="f32", fast=True)
        assert fast.sessions.model("XRay").encoder.path.name == "XRay_image_encoder.xml"
        fast.sessions._models.clear()
        fast.sessions.model("XRay")  # compiled again: still one warning
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert str(models / "XRay_image_encoder_int8.xml") in warnings[0] and str(weights) in warnings[0]
    assert "runs the standard image encoder XRay_image_encoder.xml" in warnings[0]
    exact = Segmenter(models, precision="f32")
    assert np.array_equal(fast.segment(image, BOXES, model="XRay"), exact.segment(image, BOXES, model="XRay"))
    line, report = fast.fast_mode_report(cpu_flags=lambda: frozenset({"avx512_vnni"}))
    assert "XRay: agreement" not in line
    assert any(w.startswith("XRay_image_encoder_int8.xml was made from another XRay encoder") for w in report)
