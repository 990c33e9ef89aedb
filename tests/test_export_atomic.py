"""Export writes each graph under a temporary name, checks it, and only then renames it into place:
a failed check or an error half-way leaves the earlier good files untouched and nothing new behind.

A tiny model with SAM's three interfaces stands in for the real ones (whose export takes minutes on a CPU).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from snapshots import tree_snapshot
from torch import nn

from daftseg.export import onnx_export, openvino_convert, openvino_direct
from daftseg.export.graphs import dense_pe, graph_modules
from daftseg.export.runners import CheckError, Tolerance
from daftseg.export.specs import PROMPT_ENCODER


class TinyPromptEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.corner = nn.Linear(2, 256)
        self.no_mask = nn.Parameter(torch.randn(256))
        self.register_buffer("pe", torch.randn(1, 256, 64, 64))

    def forward(self, points, boxes, masks):  # SAM's signature; boxes only
        sparse = self.corner(boxes.reshape(-1, 2, 2))  # (B, 2, 256)
        dense = self.no_mask.view(1, 256, 1, 1) + 0 * boxes.reshape(-1, 4).sum(1).view(-1, 1, 1, 1)
        return sparse, dense.expand(-1, -1, 64, 64)

    def get_dense_pe(self) -> torch.Tensor:
        return self.pe


class TinyMaskDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(256, 1, 1)
        self.iou = nn.Linear(256, 1)

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output):  # always single-mask here
        x = image_embeddings + image_pe + dense_prompt_embeddings  # (N, 256, 64, 64)
        masks = nn.functional.interpolate(self.head(x), scale_factor=4.0, mode="nearest")
        return masks, self.iou(sparse_prompt_embeddings.mean(1))


class TinySamModel(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.image_encoder = nn.Conv2d(3, 256, 4, stride=4)
        self.prompt_encoder = TinyPromptEncoder()
        self.mask_decoder = TinyMaskDecoder()


ONNX_FILES = ["CT_image_encoder.onnx", "CT_mask_decoder.onnx", "CT_prompt_encoder.onnx",
              "positional_encoding.npy"]
IR_FILES = sorted([f"CT_{s}.{e}" for s in ("image_encoder", "mask_decoder", "prompt_encoder")
                   for e in ("bin", "xml")] + ["positional_encoding.npy"])


def _export(seed: int, out: Path) -> Path:
    model = TinySamModel(seed=seed).eval()
    onnx_export.export_model(model, out, "CT", positional_encoding=dense_pe(model), log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    """Made once: a good ONNX folder, its IR folder, and other weights' ONNX (as a retraining gives)."""
    root = tmp_path_factory.mktemp("templates")
    onnx = _export(0, root / "onnxmodels")
    assert sorted(tree_snapshot(onnx)) == ONNX_FILES
    ir = root / "openvinomodels"
    openvino_convert.convert_folder(onnx, ir, compress_to_fp16=False, log=lambda _: None)
    assert sorted(tree_snapshot(ir)) == IR_FILES
    return {"onnx": onnx, "ir": ir, "new_onnx": _export(2, root / "new_onnx")}


@pytest.fixture
def good_onnx(templates, tmp_path) -> Path:
    return Path(shutil.copytree(templates["onnx"], tmp_path / "onnxmodels"))


@pytest.fixture
def good_ir(templates, tmp_path) -> Path:
    return Path(shutil.copytree(templates["ir"], tmp_path / "openvinomodels"))


def test_failed_onnx_check_keeps_the_earlier_files(good_onnx, monkeypatch):
    before = tree_snapshot(good_onnx)
    monkeypatch.setattr(onnx_export, "ONNX_TOLERANCE", Tolerance(atol=-1.0))  # every comparison fails
    model = TinySamModel(seed=1).eval()
    with pytest.raises(CheckError, match="CT_image_encoder"):
        onnx_export.export_model(model, good_onnx, "CT", positional_encoding=dense_pe(model),
                                 log=lambda _: None)
    assert tree_snapshot(good_onnx) == before


def test_error_half_way_keeps_the_earlier_files(good_onnx, monkeypatch):
    before = tree_snapshot(good_onnx)
    real_export = onnx_export.export_graph
    calls = []

    def fails_on_the_third(module, spec, example, path, opset=onnx_export.DEFAULT_OPSET):
        calls.append(spec.suffix)
        if len(calls) == 3:
            Path(path).write_bytes(b"half a graph")
            raise RuntimeError("exporter crashed")
        return real_export(module, spec, example, path, opset)

    monkeypatch.setattr(onnx_export, "export_graph", fails_on_the_third)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        onnx_export.export_model(TinySamModel(seed=1).eval(), good_onnx, "CT", log=lambda _: None)
    assert calls == ["image_encoder", "prompt_encoder", "mask_decoder"]  # two new graphs were ready
    assert tree_snapshot(good_onnx) == before


def test_failed_check_in_a_new_folder_leaves_it_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "ONNX_TOLERANCE", Tolerance(atol=-1.0))
    model = TinySamModel(seed=0).eval()
    with pytest.raises(CheckError):
        onnx_export.export_model(model, tmp_path / "out", "CT", positional_encoding=dense_pe(model),
                                 log=lambda _: None)
    assert tree_snapshot(tmp_path / "out") == {}


def test_a_passing_export_replaces_all_files(good_onnx):
    before = tree_snapshot(good_onnx)
    model = TinySamModel(seed=1).eval()
    onnx_export.export_model(model, good_onnx, "CT", positional_encoding=dense_pe(model), log=lambda _: None)
    after = tree_snapshot(good_onnx)
    assert sorted(after) == ONNX_FILES and all(after[name] != before[name] for name in ONNX_FILES)


def test_failed_ir_check_keeps_the_earlier_files(good_ir, templates, monkeypatch, capsys):
    new = templates["new_onnx"]
    before = tree_snapshot(good_ir)
    monkeypatch.setattr(openvino_convert, "FP32_TOLERANCE", Tolerance(atol=-1.0))
    assert openvino_convert.main(["--in_dir", str(new), "--out_dir", str(good_ir), "--fp32"]) == 1
    assert "CT_image_encoder" in capsys.readouterr().err
    assert tree_snapshot(good_ir) == before


def test_ir_error_half_way_keeps_the_earlier_files(good_ir, templates, monkeypatch):
    new = templates["new_onnx"]
    before = tree_snapshot(good_ir)
    real_check = openvino_convert.check_ir
    checked = []

    def fails_on_the_last(xml_path, *args, **kwargs):
        checked.append(Path(xml_path).name)
        if len(checked) == 3:
            raise MemoryError("out of memory while compiling")
        return real_check(xml_path, *args, **kwargs)

    monkeypatch.setattr(openvino_convert, "check_ir", fails_on_the_last)
    with pytest.raises(MemoryError):
        openvino_convert.convert_folder(new, good_ir, compress_to_fp16=False, log=lambda _: None)
    assert len(checked) == 3
    assert tree_snapshot(good_ir) == before
    # and once the checks pass, the new model replaces the old one as a whole
    monkeypatch.setattr(openvino_convert, "check_ir", real_check)
    openvino_convert.convert_folder(new, good_ir, compress_to_fp16=False, log=lambda _: None)
    after = tree_snapshot(good_ir)
    assert after.keys() == before.keys()
    assert all(after[n] != before[n] for n in after if n.endswith(".bin") and "encoder" in n)


def test_direct_conversion_failed_check_writes_nothing(tmp_path, monkeypatch):
    model = TinySamModel(seed=0).eval()
    module = graph_modules(model)[PROMPT_ENCODER.suffix]
    example = (torch.tensor([[[[10.0, 20.0, 100.0, 120.0]]], [[[5.0, 5.0, 50.0, 60.0]]]]),)
    out = tmp_path / "ov"
    xml = openvino_direct.export_module(module, PROMPT_ENCODER, example, out / "CT_prompt_encoder.xml",
                                        compress_to_fp16=False, log=lambda _: None)
    before = tree_snapshot(out)
    assert sorted(before) == ["CT_prompt_encoder.bin", "CT_prompt_encoder.xml"]
    monkeypatch.setattr(openvino_direct, "tolerance_for", lambda fp16: Tolerance(atol=-1.0))
    other = graph_modules(TinySamModel(seed=3).eval())[PROMPT_ENCODER.suffix]
    with pytest.raises(CheckError):
        openvino_direct.export_module(other, PROMPT_ENCODER, example, xml, compress_to_fp16=False,
                                      log=lambda _: None)
    assert tree_snapshot(out) == before
