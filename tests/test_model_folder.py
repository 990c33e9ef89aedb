"""The file names of a model folder (daftseg/inference/model_folder.py).

Expected names are written out here, never computed with the module under test: they are DAFT's
release names, which the runtime, the exporters and the challenge container all depend on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from daftseg.export.openvino_convert import encoder_models, model_groups
from daftseg.inference import model_folder as mf

REPO = Path(__file__).resolve().parents[1]


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def complete_model(folder: Path, name: str) -> None:
    touch(folder, f"{name}_image_encoder.xml", f"{name}_image_encoder.bin",
          f"{name}_mask_decoder.xml", f"{name}_mask_decoder.bin")


def test_graph_file_names(tmp_path: Path) -> None:
    assert mf.image_encoder_file(tmp_path, "CT") == tmp_path / "CT_image_encoder.xml"
    assert mf.mask_decoder_file(tmp_path, "CT") == tmp_path / "CT_mask_decoder.xml"
    assert mf.model_files(tmp_path, "3D") == (tmp_path / "3D_image_encoder.xml", tmp_path / "3D_mask_decoder.xml")
    assert mf.image_encoder_file(tmp_path, "XRay", "onnx") == tmp_path / "XRay_image_encoder.onnx"
    assert mf.mask_decoder_file(tmp_path, "XRay", "onnx") == tmp_path / "XRay_mask_decoder.onnx"
    assert [mf.graph_file("CT", g, "onnx") for g in mf.GRAPH_NAMES] == [
        "CT_image_encoder.onnx", "CT_prompt_encoder.onnx", "CT_mask_decoder.onnx"]
    assert mf.graph_stem("lite_medsam", mf.PROMPT_ENCODER) == "lite_medsam_prompt_encoder"
    assert mf.positional_encoding_file(tmp_path) == tmp_path / "positional_encoding.npy"
    assert str(mf.image_encoder_file("openvinomodels", "CT")) == "openvinomodels/CT_image_encoder.xml"


def test_int8_names(tmp_path: Path) -> None:
    assert mf.int8_encoder_file(tmp_path, "XRay") == tmp_path / "XRay_image_encoder_int8.xml"
    assert mf.int8_record_file(tmp_path, "XRay") == tmp_path / "XRay_image_encoder_int8.json"
    assert mf.int8_files(tmp_path, "lite_medsam") == (tmp_path / "lite_medsam_image_encoder_int8.xml",
                                                      tmp_path / "lite_medsam_image_encoder_int8.bin",
                                                      tmp_path / "lite_medsam_image_encoder_int8.json")


def test_names_read_back_from_file_names() -> None:
    assert mf.model_name("CT_image_encoder.xml") == "CT"
    assert mf.model_name("lite_medsam_image_encoder.xml") == "lite_medsam"
    assert mf.model_name("CT_image_encoder.onnx", ext="onnx") == "CT"
    assert mf.model_name("CT_mask_decoder.xml", mf.MASK_DECODER) == "CT"
    for other in ("CT_image_encoder.onnx", "CT_mask_decoder.xml", "CT_image_encoder_int8.xml",
                  "CT_image_encoder.bin", "positional_encoding.npy", "image_encoder.xml"):
        assert mf.model_name(other) is None, other
    assert mf.split_graph_stem("CT_image_encoder") == ("CT", "image_encoder")
    assert mf.split_graph_stem("lite_medsam_prompt_encoder") == ("lite_medsam", "prompt_encoder")
    assert mf.split_graph_stem("Dermoscopy_mask_decoder") == ("Dermoscopy", "mask_decoder")
    for other in ("prompt_encoder", "CT_image_encoder_int8", "positional_encoding", "CT"):
        assert mf.split_graph_stem(other) is None, other


def test_ir_complete_needs_the_weights(tmp_path: Path) -> None:
    touch(tmp_path, "CT_image_encoder.xml")
    assert not mf.ir_complete(tmp_path / "CT_image_encoder.xml")
    touch(tmp_path, "CT_image_encoder.bin")
    assert mf.ir_complete(tmp_path / "CT_image_encoder.xml")
    assert mf.ir_complete(str(tmp_path / "CT_image_encoder.xml"))
    (tmp_path / "XRay_image_encoder.xml").mkdir()  # a folder is not an IR file
    touch(tmp_path, "XRay_image_encoder.bin")
    assert not mf.ir_complete(tmp_path / "XRay_image_encoder.xml")


def test_model_available_only_when_both_graphs_and_weights_exist(tmp_path: Path) -> None:
    complete_model(tmp_path, "CT")
    assert mf.model_available(tmp_path, "CT")
    assert not mf.model_available(tmp_path, "XRay")  # no files at all
    touch(tmp_path, "XRay_image_encoder.xml", "XRay_image_encoder.bin", "XRay_mask_decoder.xml")
    assert not mf.model_available(tmp_path, "XRay")  # the decoder's .bin is missing
    touch(tmp_path, "XRay_mask_decoder.bin")
    assert mf.model_available(tmp_path, "XRay")
    (tmp_path / "CT_image_encoder.bin").unlink()
    assert not mf.model_available(tmp_path, "CT")  # the encoder's .bin is missing
    # an INT8 encoder does not stand in for the standard one
    touch(tmp_path, "3D_image_encoder_int8.xml", "3D_image_encoder_int8.bin", "3D_mask_decoder.xml",
          "3D_mask_decoder.bin")
    assert not mf.model_available(tmp_path, "3D")


def test_model_names_lists_every_image_encoder_sorted(tmp_path: Path) -> None:
    for name in ("lite_medsam", "XRay", "CT", "3D", "Dermoscopy"):
        complete_model(tmp_path, name)
    touch(tmp_path, "Fundus_image_encoder.xml")  # incomplete: listed (callers check availability)
    touch(tmp_path, "OCT_mask_decoder.xml", "OCT_mask_decoder.bin")  # no encoder: not a model here
    touch(tmp_path, "CT_image_encoder_int8.xml", "CT_image_encoder_int8.bin", "lite_medsam_prompt_encoder.xml",
          "prompt_encoder.xml", "positional_encoding.npy", "Mammography_image_encoder.onnx", "notes.txt")
    # code-point order: digits, then upper case, then lower case
    assert mf.model_names(tmp_path) == ["3D", "CT", "Dermoscopy", "Fundus", "XRay", "lite_medsam"]
    assert [n for n in mf.model_names(tmp_path) if mf.model_available(tmp_path, n)] == [
        "3D", "CT", "Dermoscopy", "XRay", "lite_medsam"]


def test_model_names_of_a_missing_or_empty_folder(tmp_path: Path) -> None:
    assert mf.model_names(tmp_path / "absent") == []
    assert mf.model_names(tmp_path) == []
    assert mf.int8_model_names(tmp_path / "absent") == []


def test_int8_model_names_lists_complete_int8_encoders_sorted(tmp_path: Path) -> None:
    touch(tmp_path, "XRay_image_encoder_int8.xml", "XRay_image_encoder_int8.bin",
          "CT_image_encoder_int8.xml", "CT_image_encoder_int8.bin", "CT_image_encoder_int8.json",
          "lite_medsam_image_encoder_int8.xml", "lite_medsam_image_encoder_int8.bin",
          "3D_image_encoder_int8.xml",  # no .bin: not usable
          "Fundus_image_encoder_int8.json",  # a record without the model
          "OCT_image_encoder.xml", "OCT_image_encoder.bin")  # standard only
    assert mf.int8_model_names(tmp_path) == ["CT", "XRay", "lite_medsam"]


def test_int8_agreement_reads_the_gate_record(tmp_path: Path) -> None:
    record = {"model": "CT", "agreement": {"mean": 0.987, "worst": 0.9, "per_case": {}}}
    (tmp_path / "CT_image_encoder_int8.json").write_text(json.dumps(record), encoding="utf-8")
    assert mf.int8_agreement(tmp_path, "CT") == (0.987, 0.9)
    assert mf.int8_agreement(tmp_path, "XRay") is None  # no record
    for broken in ("{", json.dumps({"agreement": {"mean": 1.0}}), json.dumps([1]),
                   json.dumps({"agreement": {"mean": "high", "worst": 0.5}})):
        (tmp_path / "XRay_image_encoder_int8.json").write_text(broken, encoding="utf-8")
        assert mf.int8_agreement(tmp_path, "XRay") is None, broken


def test_prompt_encoder_lookup_order(tmp_path: Path) -> None:
    assert [p.name for p in mf.prompt_encoder_files(tmp_path, "CT")] == [
        "lite_medsam_prompt_encoder.xml", "prompt_encoder.xml", "CT_prompt_encoder.xml"]
    assert mf.find_prompt_encoder(tmp_path, "CT") is None
    touch(tmp_path, "CT_prompt_encoder.xml")
    assert mf.find_prompt_encoder(tmp_path, "CT") == tmp_path / "CT_prompt_encoder.xml"
    assert mf.find_prompt_encoder(tmp_path, "XRay") is None  # another model's own is not shared
    touch(tmp_path, "prompt_encoder.xml")  # 916bd4e's shared name comes first
    assert mf.find_prompt_encoder(tmp_path, "CT") == tmp_path / "prompt_encoder.xml"
    assert mf.find_prompt_encoder(tmp_path, "XRay") == tmp_path / "prompt_encoder.xml"
    touch(tmp_path, "lite_medsam_prompt_encoder.xml")  # 93f1e55's, first of all
    assert mf.find_prompt_encoder(tmp_path, "CT") == tmp_path / "lite_medsam_prompt_encoder.xml"


def test_export_reads_model_names_from_written_files() -> None:
    written = [Path("out/positional_encoding.npy"), Path("out/CT_image_encoder.xml"), Path("out/CT_image_encoder.bin"),
               Path("out/CT_mask_decoder.xml"), Path("out/lite_medsam_image_encoder.xml"),
               Path("out/XRay_image_encoder_int8.xml")]
    assert encoder_models(written) == ["CT", "lite_medsam"]
    onnx = [Path(n) for n in ("CT_image_encoder.onnx", "CT_mask_decoder.onnx", "CT_prompt_encoder.onnx",
                              "XRay_image_encoder.onnx", "prompt_encoder.onnx", "extra.onnx")]
    assert [[p.name for p in g] for g in model_groups(onnx)] == [
        ["CT_image_encoder.onnx", "CT_mask_decoder.onnx", "CT_prompt_encoder.onnx"],
        ["XRay_image_encoder.onnx"], ["prompt_encoder.onnx"], ["extra.onnx"]]


def test_imports_only_the_standard_library() -> None:
    """Part of the laptop inference path and imported by export and the recipe: nothing heavy."""
    code = ("import sys, daftseg.inference.model_folder\n"
            "print(sorted(m for m in ('numpy', 'cv2', 'openvino', 'torch') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         timeout=120).stdout
    assert out.strip() == "[]"
