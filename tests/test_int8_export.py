"""``--int8`` at export time (daftseg/quantize): calibration sources, NNCF quantisation of a toy image
encoder, the agreement gate and the files it writes, and the wiring into onnx2openvino.py / liteov.py.

The toy models (tests/ov_toy_models.py) keep every run to seconds: an image encoder of an average
pool and a 1x1 convolution, and a decoder whose mask border moves with the pooled intensity by
``alpha``. A large ``alpha`` makes the masks sensitive to the encoder's output, so a quantiser
calibrated on flat images (whose activation range is empty) visibly breaks them. The gate's decision
itself (DSC against the ground truth, agreement where there is none) is tested in test_int8_gate.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from ov_toy_models import write_toy_models
from scan_writers import write_volume
from snapshots import tree_snapshot

from daftseg.data.synthetic import PREFIXES
from daftseg.data.synthetic import make_case as make_synthetic
from daftseg.export import lite, openvino_convert
from daftseg.inference.npz_io import make_case
from daftseg.quantize import calibration
from daftseg.quantize.calibration import (
    CalibrationCase,
    CalibrationSet,
    builtin_set,
    encoder_inputs,
    folder_set,
    split,
)
from daftseg.quantize.int8 import Int8Error, Int8Settings, export_int8

ROOT = Path(__file__).resolve().parents[1]
INT8_FLAGS = ["--int8", "--calibration", "--calibration_mr", "--int8_holdout", "--int8_subset_size",
              "--int8_smooth_quant", "--int8_bias_correction", "--int8_accuracy_control", "--int8_validation",
              "--int8_max_drop", "--int8_max_dsc_drop", "--int8_max_case_drop", "--int8_min_agreement"]
# case, DSC f32, DSC INT8, change (or three dashes without ground truth), agreement
TABLE_ROW = re.compile(r"^\s+(\S+\.npz)\s+(?:\d\.\d{4}\s+\d\.\d{4}\s+[+-]\d\.\d{4}|-\s+-\s+-)\s+(\d\.\d{4})$")
SENSITIVE = 20.0  # decoder alpha at which an empty activation range wrecks the masks


def int8_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "_int8" in p.name)


def printed_table(lines: list[str]) -> tuple[dict[str, str], str]:
    """(case -> agreement, mean agreement) as the gate printed them."""
    rows = {m.group(1): m.group(2) for line in lines if (m := TABLE_ROW.match(line))}
    mean = next(line.split()[-1] for line in lines if line.strip().startswith("mean "))
    return rows, mean


def synthetic(prefix: str, index: int, size: int = 128) -> CalibrationCase:
    s = make_synthetic(prefix, seed=5, index=index, size=size, max_slices=10)
    return CalibrationCase(make_case(f"{prefix}_{index:04d}.npz", s.imgs, s.boxes), s.gts)


def flat_case(name: str) -> CalibrationCase:
    """A black image: every encoder activation is 0, so the calibrated range is empty."""
    return CalibrationCase(make_case(name, np.zeros((96, 128, 3), np.uint8), np.array([[10, 10, 90, 70]])))


# -- quantising and writing -----------------------------------------------------------------------
def test_quantising_writes_the_int8_files_with_the_printed_agreement(tmp_path):
    models = write_toy_models(tmp_path / "models", {"CT": {}, "lite_medsam": {"alpha": 1.0}})
    before = tree_snapshot(models)
    lines: list[str] = []
    run = export_int8(models, "lite_medsam", Int8Settings(calibration_mr="none"), log=lines.append)

    xml = models / "lite_medsam_image_encoder_int8.xml"
    assert run.xml == xml
    assert int8_files(models) == ["lite_medsam_image_encoder_int8.bin", "lite_medsam_image_encoder_int8.json",
                                  "lite_medsam_image_encoder_int8.xml"]
    after = tree_snapshot(models)
    assert {k: v for k, v in after.items() if "_int8" not in k} == before  # standard files untouched, no temp left

    # really quantised: an activation FakeQuantize and int8 weights, and outputs close to f32 but not equal
    graph = ov.Core().read_model(str(xml))
    types = [op.get_type_name() for op in graph.get_ops()]
    assert "FakeQuantize" in types
    assert any(op.get_type_name() == "Constant" and op.get_output_element_type(0) == ov.Type.i8
               for op in graph.get_ops())
    x = encoder_inputs([synthetic("2DBox_Endoscopy", 1)])[0]
    f32 = ov.Core().compile_model(str(models / "lite_medsam_image_encoder.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    i8 = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    a, b = f32({"image": x})["image_embedding"], i8({"image": x})["image_embedding"]
    assert 0 < np.abs(a - b).max() < 0.05 * np.abs(a).max()

    record = json.loads(xml.with_suffix(".json").read_text())
    rows, mean = printed_table(lines)
    cases = record["agreement"]["cases"]
    assert rows and {k: f"{v['agreement']:.4f}" for k, v in cases.items()} == rows
    assert f"{record['agreement']['mean']:.4f}" == mean
    assert record["held_out"] == list(rows)
    # the held-out synthetic cases have ground truth: DSC decided, and each map's DSC is recorded
    assert record["gate"]["rule"] == "DSC against the ground truth (every held-out case has it)"
    assert record["gate"]["passed"] and record["gate"]["min_agreement"] is None
    assert all(0 <= v[k] <= 1 for v in cases.values() for k in ("dsc_f32", "dsc_int8"))
    assert all(v["change"] == round(v["dsc_int8"] - v["dsc_f32"], 4) for v in cases.values())
    # the standard weights' size and time, for fast mode's check at load
    weights = models / "lite_medsam_image_encoder.bin"
    assert record["source_bin"]["file"] == weights.name
    assert record["source_bin"]["size"] == weights.stat().st_size
    assert record["source_bin"]["mtime"] == int(weights.stat().st_mtime)
    assert record["model"] == "lite_medsam" and record["source_xml"] == "lite_medsam_image_encoder.xml"
    assert set(record["versions"]) >= {"daftseg", "openvino", "nncf"}
    assert "built-in synthetic set" in record["calibration"]["source"]
    assert "no MR volume (--calibration_mr none)" in record["calibration"]["source"]
    assert f"give {record['calibration']['images']} encoder inputs" in lines[0]
    assert not set(record["held_out"]) & set(record["calibration"]["calibration_cases"])
    assert record["settings"]["smooth_quant"] == 0.95 and record["settings"]["bias_correction"] == "fast"
    assert record["quantization"]["fake_quantize_nodes"] == types.count("FakeQuantize")
    assert any(re.search(r"quantised in \d+\.\d s", line) for line in lines)


def test_without_ground_truth_the_gate_refuses_a_model_calibrated_on_flat_images(tmp_path):
    models = write_toy_models(tmp_path / "models", {"CT": {"alpha": SENSITIVE}})
    before = tree_snapshot(models)
    held_out = [CalibrationCase(synthetic(p, 1).case) for p in ("2DBox_X-Ray", "2DBox_US", "2DBox_Fundus")]
    broken = [flat_case(f"2DBox_flat_{i}.npz") for i in range(3)]
    lines: list[str] = []
    with pytest.raises(Int8Error) as refused:
        export_int8(models, "CT", Int8Settings(), log=lines.append,
                    calibration=CalibrationSet("broken", broken + held_out), split_cases=(broken, held_out))
    rows, mean = printed_table(lines)
    worst = min(rows, key=lambda k: (rows[k], k))
    message = str(refused.value)
    assert any(line.endswith("gate rule: agreement with f32 (no held-out case has ground truth)") for line in lines)
    assert message == (f"CT_image_encoder_int8.xml not written: INT8 agrees with f32 at mean Dice {mean} (worst "
                       f"{rows[worst]}, {worst}) on 3 held-out cases without ground truth, below 0.95 (the default "
                       "for cases without ground truth; --int8_min_agreement sets it)")
    assert float(mean) < 0.95
    assert tree_snapshot(models) == before  # nothing _int8, no temporary left, standard files as they were


def test_accuracy_control_runs_and_reports_its_metric(tmp_path):
    models = write_toy_models(tmp_path / "models", {"lite_medsam": {"alpha": 1.0}})
    cases = [synthetic(p, i) for p in ("2DBox_Endoscopy", "2DBox_Dermoscopy") for i in (1, 2)]
    lines: list[str] = []
    run = export_int8(models, "lite_medsam", Int8Settings(accuracy_control=True), log=lines.append,
                      calibration=CalibrationSet("four cases", cases))
    assert run.record["quantization"]["accuracy_control_metric"] == "mean Dice against the ground truth (gts)"
    assert any("accuracy control: metric mean Dice against the ground truth (gts) on 1 cases" in line
               for line in lines)
    assert run.record["settings"]["accuracy_control"] is True


def test_accuracy_control_on_a_validation_folder_without_ground_truth(tmp_path):
    models = write_toy_models(tmp_path / "models", {"lite_medsam": {"alpha": 1.0}})
    folder = tmp_path / "validation"
    for i in (1, 2):  # routed to lite_medsam (ultrasound), no gts: the metric is the agreement with f32
        c = synthetic("2DBox_US", i)
        save_case(folder / c.name, imgs=c.case.imgs, boxes=c.case.boxes)
    lines: list[str] = []
    cases = [synthetic("2DBox_Endoscopy", i) for i in (1, 2, 3)]
    run = export_int8(models, "lite_medsam", Int8Settings(accuracy_control=True, validation=str(folder)),
                      log=lines.append, calibration=CalibrationSet("three cases", cases))
    assert any("accuracy control: metric agreement with the f32 label maps on 2 cases" in line for line in lines)
    assert run.record["quantization"]["accuracy_control_metric"] == "agreement with the f32 label maps"
    assert run.record["settings"]["validation"] == str(folder)


def test_accuracy_control_reverts_a_broken_quantisation_and_nothing_is_written(tmp_path):
    # without ground truth the metric is the agreement with f32; the broken quantiser drops it far
    # below --int8_max_drop, NNCF reverts the only quantised layer, and a float "INT8" file is refused
    models = write_toy_models(tmp_path / "models", {"CT": {"alpha": SENSITIVE}})
    held_out = [CalibrationCase(synthetic(p, 1).case) for p in ("2DBox_X-Ray", "2DBox_Fundus")]
    broken = [flat_case(f"2DBox_flat_{i}.npz") for i in range(2)]
    lines: list[str] = []
    with pytest.raises(Int8Error, match="accuracy control reverted every quantised layer to float"):
        export_int8(models, "CT", Int8Settings(accuracy_control=True), log=lines.append,
                    calibration=CalibrationSet("broken", broken + held_out), split_cases=(broken, held_out))
    assert any("metric agreement with the f32 label maps" in line for line in lines)
    assert int8_files(models) == []


# -- calibration sources ----------------------------------------------------------------------------
def ellipsoid_volume(shape=(20, 40, 48), centre=(9, 18, 28), radii=(7, 10, 12)) -> tuple[np.ndarray, np.ndarray]:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    inside = sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre, radii, strict=True)) <= 1
    rng = np.random.default_rng(0)
    volume = np.where(inside, 800.0, 40.0) + rng.normal(0, 5, shape)
    return volume.astype(np.float32), inside


def test_builtin_set_adds_two_mr_cases_from_a_nifti(tmp_path):
    volume, inside = ellipsoid_volume()
    path = write_volume(tmp_path / "brain.nii.gz", volume)
    lines: list[str] = []
    got = builtin_set(str(path), log=lines.append)
    mr = [c for c in got.cases if "brain" in c.name]
    assert [c.name for c in mr] == ["3DBox_MR_brain_lower.npz", "3DBox_MR_brain_upper.npz"]
    assert f"MR volume {path} (2 3D cases)" in got.source and not lines
    half = volume.shape[0] // 2
    for c, (lo, hi) in zip(mr, ((0, half), (half, volume.shape[0])), strict=True):
        zs, ys, xs = np.nonzero(inside[lo:hi])
        expected = [xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()]
        assert c.case.is_3d and c.case.imgs.shape == (hi - lo, *volume.shape[1:])
        assert c.case.boxes.tolist() == [expected]
    synthetic_only = [c for c in got.cases if "brain" not in c.name]
    assert {c.name.rsplit("_", 1)[0] for c in synthetic_only} == set(PREFIXES)


def test_builtin_set_without_mr_says_so_and_goes_on(tmp_path, monkeypatch):
    skipped = builtin_set("none", log=pytest.fail)
    assert "no MR volume (--calibration_mr none)" in skipped.source

    def unavailable(cache_dir=None, log=print):
        raise OSError("no network")

    monkeypatch.setattr(calibration, "default_mr_path", unavailable)
    lines: list[str] = []
    got = builtin_set(None, log=lines.append)
    assert len(lines) == 1 and "no MR volume for calibration (OSError: no network)" in lines[0]
    assert "no MR volume (unavailable)" in got.source
    assert len(got.cases) == len(skipped.cases)
    lines.clear()
    builtin_set(str(tmp_path / "missing.nii.gz"), log=lines.append)
    assert len(lines) == 1 and "missing.nii.gz: no such file" in lines[0]


def save_case(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_calibration_folder_uses_the_routed_files(tmp_path):
    folder = tmp_path / "calib"
    xr = make_synthetic("2DBox_X-Ray", seed=3, size=96)
    ct = make_synthetic("3DBox_CT", seed=3, size=64, max_slices=8)
    save_case(folder / "2DBox_X-Ray_0001.npz", imgs=xr.imgs, boxes=xr.boxes)
    save_case(folder / "3DBox_CT_0001.npz", imgs=ct.imgs, boxes=ct.boxes)
    gts = np.zeros(ct.gts.shape, np.uint8)
    gts[ct.gts > 0] = 7  # a training file's label ids need not be consecutive
    save_case(folder / "Abdomen_Vol_0001.npz", imgs=ct.imgs, gts=gts)  # 3D training file: no 3DBox_ name
    (folder / "Garbage_0001.npz").write_bytes(b"not an npz")

    lines: list[str] = []
    xray = folder_set(folder, "XRay", log=lines.append)
    assert [c.name for c in xray.cases] == ["2DBox_X-Ray_0001.npz"] and not lines
    assert "the 1 of 4 files routed to XRay" in xray.source

    # Abdomen_Vol_... and Garbage_... match no rule: they go to the fallback, lite_medsam
    fallback = folder_set(folder, "lite_medsam", log=lines.append)
    assert [c.name for c in fallback.cases] == ["Abdomen_Vol_0001.npz"]
    assert len(lines) == 1 and "Garbage_0001.npz: unreadable npz" in lines[0]
    training = fallback.cases[0]
    zs, ys, xs = np.nonzero(gts)  # one label: one box around all of it
    assert training.case.is_3d
    assert training.case.boxes.tolist() == [[xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()]]
    assert set(np.unique(training.gts).tolist()) == {0, 1}

    everything = folder_set(folder, "Dermoscopy", log=lambda _: None)
    assert "all 4 files (none is routed to Dermoscopy)" in everything.source
    assert len(everything.cases) == 3


def test_challenge_layout_takes_ground_truth_from_the_gts_folder(tmp_path):
    case = make_synthetic("2DBox_Endoscopy", seed=3, size=96)
    save_case(tmp_path / "imgs" / "2DBox_Endoscopy_0001.npz", imgs=case.imgs, boxes=case.boxes)
    save_case(tmp_path / "gts" / "2DBox_Endoscopy_0001.npz", gts=case.gts)
    got = folder_set(tmp_path, "Endoscopy")
    assert np.array_equal(got.cases[0].gts, case.gts)


def test_split_is_deterministic_and_holds_out_at_least_one_case():
    cases = [flat_case(f"2DBox_US_{i:04d}.npz") for i in range(10)]
    train, held = split(cases, 0.25)
    assert len(held) == 2 and len(train) == 8
    assert not {c.name for c in held} & {c.name for c in train}
    again = split(list(reversed(cases)), 0.25)
    assert [c.name for c in again[1]] == [c.name for c in held]
    assert len(split(cases[:2], 0.01)[1]) == 1 and len(split(cases[:2], 0.99)[0]) == 1
    with pytest.raises(calibration.CalibrationError, match="at least 2"):
        split(cases[:1], 0.25)


class RecordingModel:
    """Stands in for ModelSessions: records what the runtime feeds the encoder."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def encode(self, image: np.ndarray) -> np.ndarray:
        self.images.append(image.copy())
        return np.zeros((1, 256, 64, 64), np.float32)

    def decode(self, embedding, boxes256, batch=1):
        return np.full((len(np.reshape(boxes256, (-1, 4))), 256, 256), -1.0, np.float32)


def test_encoder_inputs_are_what_the_runtime_feeds_the_encoder():
    from daftseg.inference.case2d import segment_2d
    from daftseg.inference.case3d import segment_3d

    c2 = synthetic("2DBox_Dermoscopy", 1)
    runtime = RecordingModel()
    segment_2d(runtime, c2.case.imgs, c2.case.boxes)
    assert len(encoder_inputs([c2])) == 1
    assert np.array_equal(encoder_inputs([c2])[0], runtime.images[0])

    c3 = synthetic("3DBox_CT", 1, size=96)
    runtime = RecordingModel()
    segment_3d(runtime, c3.case.imgs, c3.case.boxes)
    inputs = encoder_inputs([c3])
    assert 1 <= len(inputs) <= 8
    for x in inputs:  # each calibration slice is one the runtime encodes for this case
        assert any(np.array_equal(x, seen) for seen in runtime.images)


# -- the command lines ------------------------------------------------------------------------------
def fake_convert(models: dict):
    """A convert_folder that writes toy IR into the output folder instead of converting ONNX."""
    def convert_folder(in_dir, out_dir, compress_to_fp16=True, check=True, log=print):
        write_toy_models(Path(out_dir), models)
        return sorted(Path(out_dir).iterdir())
    return convert_folder


def test_onnx2openvino_int8_refuses_one_model_and_writes_the_other(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(openvino_convert, "convert_folder",
                        fake_convert({"XRay": {"alpha": SENSITIVE}, "Fundus": {"alpha": 1.0}}))
    folder = tmp_path / "calib"
    # XRay: one flat file to calibrate on, one real case held out (names chosen so the split does that)
    real = synthetic("2DBox_X-Ray", 1)
    names = ["2DBox_X-Ray_a.npz", "2DBox_X-Ray_b.npz"]
    held_name = split([flat_case(n) for n in names], 0.5)[1][0].name
    flat_name = next(n for n in names if n != held_name)
    save_case(folder / flat_name, imgs=np.zeros((96, 128, 3), np.uint8), boxes=np.array([[10, 10, 90, 70]]))
    save_case(folder / held_name, imgs=real.case.imgs, boxes=real.case.boxes)
    for i in (1, 2, 3):
        c = synthetic("2DBox_Fundus", i)
        save_case(folder / c.name, imgs=c.case.imgs, boxes=c.case.boxes)
    out = tmp_path / "ov"
    code = openvino_convert.main(["--in_dir", str(tmp_path), "--out_dir", str(out), "--int8",
                                  "--calibration", str(folder), "--int8_holdout", "0.5"])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert re.fullmatch(r"error: XRay_image_encoder_int8\.xml not written: INT8 agrees with f32 at mean Dice "
                        r"0\.\d{4} \(worst 0\.\d{4}, " + re.escape(held_name) + r"\) on 1 held-out cases without "
                        r"ground truth, below 0\.95 \(the default .*\)", errors[0])
    assert int8_files(out) == ["Fundus_image_encoder_int8.bin", "Fundus_image_encoder_int8.json",
                               "Fundus_image_encoder_int8.xml"]
    assert (out / "XRay_image_encoder.xml").is_file()  # the standard IR stays
    assert "the 2 of 5 files routed to XRay" in captured.out and "the 3 of 5 files routed to Fundus" in captured.out


def test_liteov_int8_with_the_synthetic_set_only(tmp_path, monkeypatch, capsys):
    def fake_run(checkpoint, onnx_dir, ov_dir, *args, **kwargs):
        write_toy_models(ov_dir, {"lite_medsam": {"alpha": 1.0}})
        return []

    monkeypatch.setattr(lite, "run", fake_run)
    out = tmp_path / "liteov"
    assert lite.main(["--ov_dir", str(out), "--int8", "--calibration_mr", "none", "--int8_smooth_quant", "-1",
                      "--int8_bias_correction", "none"]) == 0
    printed = capsys.readouterr().out
    assert "built-in synthetic set" in printed and "no MR volume (--calibration_mr none)" in printed
    assert "SmoothQuant off, bias correction none" in printed
    record = json.loads((out / "lite_medsam_image_encoder_int8.json").read_text())
    assert record["settings"]["smooth_quant"] == -1 and record["settings"]["bias_correction"] == "none"


@pytest.mark.parametrize("main", [openvino_convert.main, lite.main])
def test_int8_without_nncf_names_the_pip_command_before_any_export(main, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now raises ImportError

    def must_not_run(*args, **kwargs):
        raise AssertionError("exported although --int8 cannot be done")

    monkeypatch.setattr(openvino_convert, "convert_folder", must_not_run)
    monkeypatch.setattr(lite, "run", must_not_run)
    assert main(["--int8", "--ov_dir" if main is lite.main else "--out_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --int8 needs NNCF") and "pip install nncf==3.4.0" in err
    assert "model_conversion_requirements.txt" in err


@pytest.mark.parametrize("parser", [openvino_convert.build_parser, lite.build_parser])
def test_help_lists_every_int8_flag_and_bad_values_are_refused(parser, capsys):
    text = parser().format_help()
    for flag in INT8_FLAGS:
        assert flag in text
    for args, what in ((["--int8", "--int8_holdout", "1.5"], "--int8_holdout must be between 0 and 1"),
                       (["--int8_min_agreement", "0.9"], "--int8_min_agreement only with --int8"),
                       (["--int8", "--int8_validation", "x"], "only with --int8_accuracy_control")):
        main = openvino_convert.main if parser is openvino_convert.build_parser else lite.main
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2 and what in capsys.readouterr().err


def test_export_modules_import_without_nncf():
    code = ("import sys, daftseg.export.openvino_convert, daftseg.quantize.int8, daftseg.quantize.calibration; "
            "assert 'nncf' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_quantize_command_picks_models_without_a_current_int8_encoder(tmp_path, capsys):
    from daftseg.quantize.cli import main as quantize_main
    from daftseg.quantize.cli import wanted

    models = write_toy_models(tmp_path / "models", ["CT", "XRay", "lite_medsam"])
    weights = models / "CT_image_encoder.bin"
    for name, size, mtime in (("CT", weights.stat().st_size, int(weights.stat().st_mtime)),  # current
                              ("XRay", 1, 0)):  # made from another encoder
        xml = models / f"{name}_image_encoder_int8.xml"
        ov.save_model(ov.Core().read_model(str(models / f"{name}_image_encoder.xml")), xml, compress_to_fp16=False)
        xml.with_suffix(".json").write_text(json.dumps({"source_bin": {"size": size, "mtime": mtime}}))
    assert wanted(models, None, force=False) == (["XRay", "lite_medsam"], ["CT"])
    assert wanted(models, ["CT"], force=True) == (["CT"], [])
    assert quantize_main([str(models), "--names", "CT"]) == 0  # current: nothing to do
    assert "CT: its INT8 encoder is current" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        quantize_main([str(models), "--names", "Fundus"])
    assert "no standard IR for Fundus" in capsys.readouterr().err
