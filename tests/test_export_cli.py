"""Export entry points and helpers that need no full model export: --help, errors, atomic writes,
generic ONNX conversion, the direct PyTorch -> OpenVINO path."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from daftseg.export import lite, onnx_export, openvino_convert
from daftseg.export.files import atomic_path, save_npy
from daftseg.export.runners import OpenVinoGraph, Tolerance, random_inputs

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "export_onnx.py": ["--models_dir", "--out_dir", "--names", "--arch", "--opset", "--pe_from", "--shared_prompt_encoder",
                       "--trust_checkpoint"],
    "onnx2openvino.py": ["--in_dir", "--out_dir", "--fp32"],
    "liteov.py": ["--checkpoint", "--onnx_dir", "--ov_dir", "--fp32", "--opset", "--direct",
                  "--trust_checkpoint"],
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_every_flag(script: str, monkeypatch, capsys):
    # the entry file itself runs, in this process (torch is loaded already: a new one costs seconds)
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in SCRIPTS[script]:
        assert flag in out


def test_onnx2openvino_imports_no_torch():
    # the conversion step runs where only numpy, onnxruntime and openvino are needed
    code = "import sys, daftseg.export.openvino_convert; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_export_onnx_weights_that_do_not_fit_name_the_file(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    bad = models / "Bad.pth"
    torch.save({"image_encoder.foo": torch.zeros(3), "prompt_encoder.bar": torch.zeros(2)}, bad)
    assert onnx_export.main(["--models_dir", str(models), "--out_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "does not fit" in err
    assert not list(tmp_path.glob("out/*.onnx"))


def test_export_onnx_unreadable_and_missing_files(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "Garbage.pth").write_bytes(b"not a checkpoint")
    assert onnx_export.main(["--models_dir", str(models), "--out_dir", str(tmp_path / "out")]) == 1
    assert f"{models / 'Garbage.pth'}: cannot be read" in capsys.readouterr().err
    assert onnx_export.main(["--models_dir", str(models), "--names", "CT", "XRay"]) == 1
    err = capsys.readouterr().err
    assert str(models / "CT.pth") in err and str(models / "XRay.pth") in err
    assert onnx_export.main(["--models_dir", str(tmp_path / "nowhere")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_liteov_checkpoint_errors_name_the_file(tmp_path, capsys):
    args = ["--onnx_dir", str(tmp_path / "onnx"), "--ov_dir", str(tmp_path / "ov")]
    missing = tmp_path / "lite_medsam.pth"
    assert lite.main(["--checkpoint", str(missing), *args]) == 1
    assert f"{missing}: no such checkpoint file" in capsys.readouterr().err
    wrong = tmp_path / "wrong.pth"
    torch.save({"mask_decoder.foo": torch.zeros(1)}, wrong)
    assert lite.main(["--checkpoint", str(wrong), *args]) == 1
    assert f"{wrong} does not fit" in capsys.readouterr().err
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "ov").exists()


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.onnx"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    save_npy(np.ones(3, np.float32), tmp_path / "a.npy")
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]
    assert (tmp_path / "a.npy").stat().st_mode & 0o044  # readable by others, unlike mkstemp's 0600


def test_random_inputs_follow_names_and_sizes():
    feeds = random_inputs([("image", ("batch_size", 3, 8, 8)), ("boxes", (None, 1, 1, 4)),
                           ("sparse_prompt_embeddings", ("num_prompts", 2, 256)), ("image_pe", (1, 2))],
                          {"batch_size": 2, "num_prompts": 5}, image_pe=np.full((1, 2), 7, np.float32))
    assert feeds["image"].shape == (2, 3, 8, 8) and 0 <= feeds["image"].min() and feeds["image"].max() <= 1
    boxes = feeds["boxes"].reshape(-1, 4)
    assert boxes.shape == (1, 4) and (boxes[:, 2:] > boxes[:, :2]).all() and boxes.max() <= 255
    assert feeds["sparse_prompt_embeddings"].shape == (5, 2, 256)
    assert (feeds["image_pe"] == 7).all()
    assert all(v.dtype == np.float32 for v in feeds.values())


def tiny_onnx(path: Path) -> None:
    """y = x @ W + b with a dynamic first axis: any ONNX file, not one of ours."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_onnx2openvino_any_onnx_fp32_and_check_failure(tmp_path, capsys, monkeypatch):
    src, out = tmp_path / "onnxmodels", tmp_path / "openvinomodels"
    src.mkdir()
    tiny_onnx(src / "tiny.onnx")
    save_npy(np.zeros((1, 256, 64, 64), np.float32), src / "positional_encoding.npy")
    assert openvino_convert.main(["--in_dir", str(src), "--out_dir", str(out), "--fp32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["positional_encoding.npy", "tiny.bin", "tiny.xml"]
    assert "OpenVINO FP32 vs ONNX Runtime" in capsys.readouterr().out
    ir = OpenVinoGraph(out / "tiny.xml")
    assert ir.inputs == [("x", (None, 16))] and ir.output_names == ["y"]
    # a check that fails reports the file and stops with exit code 1
    monkeypatch.setattr(openvino_convert, "FP32_TOLERANCE", Tolerance(atol=-1.0))
    assert openvino_convert.main(["--in_dir", str(src), "--out_dir", str(out), "--fp32"]) == 1
    assert "tiny" in capsys.readouterr().err
    assert openvino_convert.main(["--in_dir", str(tmp_path / "empty"), "--out_dir", str(out)]) == 1


def test_direct_conversion_names_and_numbers(tmp_path):
    from daftseg.export.graphs import dense_pe, graph_modules
    from daftseg.export.onnx_export import tracing_inputs
    from daftseg.export.openvino_direct import export_module
    from daftseg.export.specs import PROMPT_ENCODER
    from daftseg.models import build_model

    torch.manual_seed(0)
    model = build_model("litemedsam").eval()
    modules, lines = graph_modules(model), []
    # the prompt encoder only: converting the others takes tens of seconds (bench/bench_export.py --direct)
    for spec in (PROMPT_ENCODER,):
        xml = export_module(modules[spec.suffix], spec, tracing_inputs(model, spec), tmp_path / f"{spec.suffix}.xml",
                            compress_to_fp16=False, image_pe=dense_pe(model).numpy(), log=lines.append)
        ir = OpenVinoGraph(xml)
        assert [n for n, _ in ir.inputs] == spec.input_names and ir.output_names == spec.output_names
        assert [s for _, s in ir.inputs] == [tuple(None if isinstance(d, str) else d for d in t.shape)
                                             for t in spec.inputs]
    assert any("OpenVINO FP32 vs PyTorch" in line for line in lines)


def test_positional_encoding_source(tmp_path, capsys):
    from daftseg.models.sam import build_prompt_encoder

    torch.manual_seed(0)
    prompt_encoder = build_prompt_encoder()
    weights = tmp_path / "models" / "CT.pth"
    weights.parent.mkdir()
    torch.save({f"prompt_encoder.{k}": v for k, v in prompt_encoder.state_dict().items()}, weights)
    pe = onnx_export.positional_encoding_from(weights)
    assert pe.shape == (1, 256, 64, 64) and pe.dtype == torch.float32
    torch.testing.assert_close(pe, prompt_encoder.get_dense_pe(), rtol=0, atol=0)
    first = tmp_path / "models" / "A.pth"
    assert onnx_export.pe_source(None, weights.parent, first) == first
    assert onnx_export.pe_source("CT", weights.parent, first) == weights
    assert onnx_export.pe_source(str(weights), tmp_path, first) == weights
    # an unknown architecture is reported without a traceback
    assert onnx_export.main(["--models_dir", str(weights.parent), "--out_dir", str(tmp_path / "out"),
                             "--arch", "no_such_model"]) == 1
    assert "error: unknown model 'no_such_model'" in capsys.readouterr().err


def test_shared_prompt_encoder_is_written_once_and_must_fit_every_model(tmp_path, capsys):
    """916bd4e kept one prompt_encoder.onnx (spec §11.2 step 9); a model whose prompt encoder
    differs from it would silently get other prompts, so it stops the export."""
    from daftseg.models import build_model

    models = tmp_path / "models"
    models.mkdir()
    state = build_model("efficientvit_sam_l0").state_dict()
    torch.save(state, models / "A.pth")
    other = {k: v.clone() for k, v in state.items()}
    other["prompt_encoder.point_embeddings.2.weight"] += 1e-3
    torch.save(other, models / "B.pth")
    out = tmp_path / "onnxmodels"
    assert onnx_export.main(["--models_dir", str(models), "--out_dir", str(out), "--shared_prompt_encoder"]) == 1
    err = capsys.readouterr().err
    assert "B's prompt encoder differs" in err and "without --shared_prompt_encoder" in err
    assert not out.exists()  # checked before anything is written; tests/test_recipe_slurm.py's 916bd4e
    # chain exports with a shared prompt encoder and runs PerfectMetaOpenVINO.py on the result
