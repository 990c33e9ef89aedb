"""Export of both models: DAFT's files and tensor names, dynamic axes, and numbers equal to PyTorch.

Each model is exported once per module with the fixture weights, through the real CLIs where they
apply (``export_onnx`` for EfficientViT-SAM as ``CT``, ``liteov`` for LiteMedSAM, each with its
self-checks); the other IRs are made with the library call, unchecked, since the tests below compare
them anyway (test_export_cli.py runs ``onnx2openvino``). Every test then reads those files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_weights import FIXTURE_STEMS, filled_state_dict, fixture_reference

from daftseg.export import lite, onnx_export, openvino_convert
from daftseg.export.graphs import dense_pe
from daftseg.export.runners import OnnxGraph, OpenVinoGraph, max_abs_diffs
from daftseg.export.specs import GRAPHS
from daftseg.models import build_model

# DAFT's contract, written out here (not imported from graphs.py) so that a change there fails:
# suffix -> (inputs, outputs) as (name, shape), None = dynamic. The decoder's dynamic axes are
# ours (DAFT fixed them at 1).
DAFT_GRAPHS = {
    "image_encoder": ([("image", (None, 3, 256, 256))], [("image_embedding", (None, 256, 64, 64))]),
    "prompt_encoder": ([("boxes", (None, 1, 1, 4))],
                       [("sparse_embeddings", (None, 2, 256)), ("dense_embeddings", (None, 256, 64, 64))]),
    "mask_decoder": ([("image_embeddings", (None, 256, 64, 64)), ("image_pe", (1, 256, 64, 64)),
                      ("sparse_prompt_embeddings", (None, 2, 256)), ("dense_prompt_embeddings", (None, 256, 64, 64))],
                     [("low_res_masks", (None, 1, 256, 256)), ("iou_predictions", (None, 1))]),
}
RUNTIMES = ["onnx", "ov_fp32", "ov_fp16"]
# Max abs difference to PyTorch, end to end on the fixture input (embeddings have std ~1, logits
# |x| <= ~2, IoU ~0.2). FP32 routes differ only by kernel order; FP16 weights by weight rounding.
TOLERANCES = {
    "onnx": {"image_embedding": 1e-4, "sparse_embeddings": 1e-5, "low_res_masks": 1e-3, "iou_predictions": 1e-4},
    "ov_fp32": {"image_embedding": 1e-4, "sparse_embeddings": 1e-5, "low_res_masks": 1e-3, "iou_predictions": 1e-4},
    "ov_fp16": {"image_embedding": 3e-2, "sparse_embeddings": 2e-3, "low_res_masks": 3e-2, "iou_predictions": 5e-3},
}


@dataclass
class Exported:
    """One model's export: the PyTorch model, its files and its graphs on each runtime."""

    name: str  # file name prefix
    model: torch.nn.Module
    dirs: dict[str, Path]  # "onnx", "ov_fp32", "ov_fp16" -> folder
    graphs: dict[str, dict[str, object]] = field(default_factory=dict)  # runtime -> suffix -> graph

    def graph(self, runtime: str, suffix: str):
        if suffix not in self.graphs.setdefault(runtime, {}):
            stem = f"{self.name}_{suffix}"
            d = self.dirs[runtime]
            self.graphs[runtime][suffix] = (OnnxGraph(d / f"{stem}.onnx") if runtime == "onnx"
                                            else OpenVinoGraph(d / f"{stem}.xml"))
        return self.graphs[runtime][suffix]


def filled_model(arch: str) -> torch.nn.Module:
    model = build_model(arch)
    model.load_state_dict(filled_state_dict(model.state_dict()))
    return model.eval()


@pytest.fixture(scope="module")
def evit(tmp_path_factory) -> Exported:
    root = tmp_path_factory.mktemp("evit")
    model = filled_model("efficientvit_sam_l0")
    (root / "models").mkdir()
    torch.save(model.state_dict(), root / "models" / "CT.pth")
    dirs = {"onnx": root / "onnxmodels", "ov_fp16": root / "openvinomodels", "ov_fp32": root / "ov_fp32"}
    assert onnx_export.main(["--models_dir", str(root / "models"), "--out_dir", str(dirs["onnx"])]) == 0
    for runtime, fp16 in (("ov_fp16", True), ("ov_fp32", False)):
        openvino_convert.convert_folder(dirs["onnx"], dirs[runtime], compress_to_fp16=fp16, check=False)
    return Exported("CT", model, dirs)


@pytest.fixture(scope="module")
def litemedsam(tmp_path_factory) -> Exported:
    root = tmp_path_factory.mktemp("lite")
    model = filled_model("litemedsam")
    torch.save(model.state_dict(), root / "lite_medsam.pth")
    dirs = {"onnx": root / "liteonnx", "ov_fp16": root / "liteov", "ov_fp32": root / "liteov_fp32"}
    assert lite.main(["--checkpoint", str(root / "lite_medsam.pth"), "--onnx_dir", str(dirs["onnx"]),
                      "--ov_dir", str(dirs["ov_fp16"])]) == 0
    openvino_convert.convert_folder(dirs["onnx"], dirs["ov_fp32"], compress_to_fp16=False, check=False)
    return Exported("lite_medsam", model, dirs)


@pytest.fixture(scope="module", params=["efficientvit_sam_l0", "litemedsam"])
def exported(request) -> Exported:
    return request.getfixturevalue("evit" if request.param == "efficientvit_sam_l0" else "litemedsam")


def fixture_inputs(exp: Exported) -> dict[str, np.ndarray]:
    arch = "efficientvit_sam_l0" if exp.name == "CT" else "litemedsam"
    return fixture_reference(FIXTURE_STEMS[arch])


def test_files_present(exported: Exported):
    stems = [f"{exported.name}_{s}" for s in ("image_encoder", "prompt_encoder", "mask_decoder")]
    npy = "positional_encoding.npy"
    assert sorted(p.name for p in exported.dirs["onnx"].iterdir()) == sorted([f"{s}.onnx" for s in stems] + [npy])
    for runtime in ("ov_fp16", "ov_fp32"):
        want = [f"{s}.{ext}" for s in stems for ext in ("xml", "bin")] + [npy]
        # also: no temporary files left behind
        assert sorted(p.name for p in exported.dirs[runtime].iterdir()) == sorted(want)
    # FP16-compressed weights take about half the space
    for s in stems[::2]:
        fp16, fp32 = (exported.dirs[r] / f"{s}.bin" for r in ("ov_fp16", "ov_fp32"))
        assert fp16.stat().st_size < 0.6 * fp32.stat().st_size


def test_positional_encoding_file(exported: Exported):
    pe = dense_pe(exported.model).numpy()
    for d in exported.dirs.values():
        saved = np.load(d / "positional_encoding.npy")
        assert saved.dtype == np.float32 and saved.shape == (1, 256, 64, 64)
        np.testing.assert_array_equal(saved, pe)


def _onnx_io(path: Path):
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def read(values):
        return [(v.name, tuple(d.dim_value if d.HasField("dim_value") else None
                               for d in v.type.tensor_type.shape.dim)) for v in values]

    return read(graph.input), read(graph.output)


def test_onnx_names_and_shapes(exported: Exported):
    for suffix, want in DAFT_GRAPHS.items():
        got = _onnx_io(exported.dirs["onnx"] / f"{exported.name}_{suffix}.onnx")
        assert got == (want[0], want[1]), suffix


@pytest.mark.parametrize("runtime", ["ov_fp16", "ov_fp32"])
def test_ir_names_and_shapes(exported: Exported, runtime: str):
    import openvino as ov

    core = ov.Core()
    for suffix, (inputs, outputs) in DAFT_GRAPHS.items():
        model = core.read_model(str(exported.dirs[runtime] / f"{exported.name}_{suffix}.xml"))

        def read(ports):
            return [(p.get_any_name(), tuple(None if d.is_dynamic else d.get_length() for d in p.get_partial_shape()))
                    for p in ports]

        assert (read(model.inputs), read(model.outputs)) == (inputs, outputs), suffix
        for port, (name, _) in zip(model.inputs + model.outputs, inputs + outputs, strict=True):
            assert port.get_names() == {name}  # exactly DAFT's name, no exporter-made aliases
            assert port.get_element_type() == ov.Type.f32


def run_pipeline(exp: Exported, runtime: str, image: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
    """image (1,3,256,256), boxes (N,1,4) -> embedding, prompt embeddings, logits, IoU on ``runtime``."""
    out = exp.graph(runtime, "image_encoder")({"image": image})
    out |= exp.graph(runtime, "prompt_encoder")({"boxes": boxes.reshape(-1, 1, 1, 4)})
    out |= exp.graph(runtime, "mask_decoder")({
        "image_embeddings": out["image_embedding"], "image_pe": dense_pe(exp.model).numpy(),
        "sparse_prompt_embeddings": out["sparse_embeddings"], "dense_prompt_embeddings": out["dense_embeddings"],
    })
    return out


def torch_pipeline(exp: Exported, image: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
    model = exp.model
    with torch.no_grad():
        emb = model.image_encoder(torch.from_numpy(image))
        sparse, dense = model.encode_prompts(torch.from_numpy(boxes))
        masks, iou = model.decode(emb, torch.from_numpy(boxes))
    out = {"image_embedding": emb, "sparse_embeddings": sparse, "dense_embeddings": dense,
           "low_res_masks": masks, "iou_predictions": iou}
    return {k: v.detach().numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def pipelines(exported: Exported) -> dict[str, dict[str, np.ndarray]]:
    ref = fixture_inputs(exported)
    out = {"torch": torch_pipeline(exported, ref["image"], ref["boxes"])}
    for runtime in RUNTIMES:
        out[runtime] = run_pipeline(exported, runtime, ref["image"], ref["boxes"])
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_numerical_agreement_with_pytorch(exported: Exported, pipelines, runtime: str):
    diffs = max_abs_diffs(pipelines[runtime], pipelines["torch"])
    print(f"\n{exported.name} {runtime} vs PyTorch: " + "  ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    for key, tol in TOLERANCES[runtime].items():
        assert diffs[key] <= tol, (key, diffs[key], tol)
    assert diffs["dense_embeddings"] <= TOLERANCES[runtime]["sparse_embeddings"]


def test_pytorch_route_reproduces_fixture(exported: Exported, pipelines):
    # ties the export checks to the official numbers (test_models checks the same in PyTorch)
    ref = fixture_inputs(exported)
    assert np.abs(pipelines["torch"]["image_embedding"] - ref["image_embedding"]).max() < 1e-4
    assert np.abs(pipelines["onnx"]["low_res_masks"] - ref["low_res_masks"]).max() < 2e-3


@pytest.mark.parametrize("runtime", ["ov_fp16"])  # the IR as shipped; the ONNX graph is the same
def test_image_encoder_batch_2(exported: Exported, pipelines, runtime: str):
    image = fixture_inputs(exported)["image"]
    other = np.ascontiguousarray(image[:, :, ::-1, :])  # a different, still plausible image
    batch = exported.graph(runtime, "image_encoder")({"image": np.concatenate([other, image])})["image_embedding"]
    assert batch.shape == (2, 256, 64, 64) and np.isfinite(batch).all()
    # the second item equals the batch-1 run; the first is another image's embedding
    np.testing.assert_allclose(batch[1:], pipelines[runtime]["image_embedding"], atol=1e-4, rtol=0)
    assert np.abs(batch[0] - batch[1]).max() > 0.1


BOXES_5 = np.array([[[30, 40, 150, 200]], [[100, 20, 250, 90]], [[0, 0, 255, 255]], [[60, 60, 70, 75]],
                    [[10, 180, 120, 250]]], dtype=np.float32)  # (5, 1, 4) in 256-space


@pytest.mark.parametrize("runtime", ["onnx", "ov_fp16"])  # the ONNX files and the IR as shipped
def test_decoder_many_prompts_equals_single_calls(exported: Exported, pipelines, runtime: str):
    prompt_encoder, decoder = exported.graph(runtime, "prompt_encoder"), exported.graph(runtime, "mask_decoder")
    emb = pipelines[runtime]["image_embedding"]  # (1, 256, 64, 64)
    pe = dense_pe(exported.model).numpy()
    prompts = prompt_encoder({"boxes": BOXES_5.reshape(5, 1, 1, 4)})
    assert prompts["sparse_embeddings"].shape == (5, 2, 256)
    assert prompts["dense_embeddings"].shape == (5, 256, 64, 64)

    def decode(e, sparse, dense):
        return decoder({"image_embeddings": e, "image_pe": pe, "sparse_prompt_embeddings": sparse,
                        "dense_prompt_embeddings": dense})

    many = decode(emb, prompts["sparse_embeddings"], prompts["dense_embeddings"])
    assert many["low_res_masks"].shape == (5, 1, 256, 256) and many["iou_predictions"].shape == (5, 1)
    for i in range(5):
        one = decode(emb, prompts["sparse_embeddings"][i:i + 1], prompts["dense_embeddings"][i:i + 1])
        np.testing.assert_allclose(many["low_res_masks"][i:i + 1], one["low_res_masks"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(many["iou_predictions"][i:i + 1], one["iou_predictions"], atol=1e-5, rtol=0)
    # B embeddings with B prompts pair up (embedding i with prompt i), as in the PyTorch model
    rng = np.random.default_rng(0)
    embs = np.concatenate([emb, rng.standard_normal((4, 256, 64, 64), dtype=np.float32)])
    paired = decode(embs, prompts["sparse_embeddings"], prompts["dense_embeddings"])
    np.testing.assert_allclose(paired["low_res_masks"][:1], many["low_res_masks"][:1], atol=1e-4, rtol=0)
    one = decode(embs[3:4], prompts["sparse_embeddings"][3:4], prompts["dense_embeddings"][3:4])
    np.testing.assert_allclose(paired["low_res_masks"][3:4], one["low_res_masks"], atol=1e-4, rtol=0)
    if runtime == "onnx":  # and equals PyTorch decoding the same five boxes
        with torch.no_grad():
            masks, iou = exported.model.decode(torch.from_numpy(emb), torch.from_numpy(BOXES_5))
        np.testing.assert_allclose(many["low_res_masks"], masks.numpy(), atol=1e-3, rtol=0)
        np.testing.assert_allclose(many["iou_predictions"], iou.numpy(), atol=1e-4, rtol=0)


def test_graph_specs_match_contract():
    for spec in GRAPHS:
        inputs, outputs = DAFT_GRAPHS[spec.suffix]
        assert [(t.name, tuple(None if isinstance(d, str) else d for d in t.shape)) for t in spec.inputs] == inputs
        assert [(t.name, tuple(None if isinstance(d, str) else d for d in t.shape)) for t in spec.outputs] == outputs


# -- the INT8 gate on a real-sized encoder ------------------------------------------------------------
GATE_ROW = r"^\s+(\S+\.npz)\s+(\d\.\d{4})\s+(\d\.\d{4})\s+([+-]\d\.\d{4})\s+(\d\.\d{4})$"


def test_int8_gate_arithmetic_on_a_real_sized_litemedsam(litemedsam, tmp_path):
    """NNCF on the real-sized (fixture-filled) LiteMedSAM encoder, gated on two synthetic cases with
    ground truth: every printed change, mean and the decision follow from the printed per-case DSCs."""
    import re
    import shutil

    from daftseg.data.synthetic import make_case as make_synthetic
    from daftseg.inference.npz_io import make_case
    from daftseg.quantize.calibration import CalibrationCase, CalibrationSet
    from daftseg.quantize.int8 import Int8Error, Int8Settings, export_int8

    folder = shutil.copytree(litemedsam.dirs["ov_fp16"], tmp_path / "ov")
    cases = []
    for i, prefix in enumerate(("2DBox_Dermoscopy", "2DBox_US", "2DBox_Endoscopy", "2DBox_Fundus")):
        s = make_synthetic(prefix, seed=11, index=i + 1, size=128)
        cases.append(CalibrationCase(make_case(f"{prefix}_{i + 1:04d}.npz", s.imgs, s.boxes), s.gts))
    lines: list[str] = []
    try:
        # the quickest NNCF settings: the gate's arithmetic is what is checked here
        settings = Int8Settings(subset_size=2, smooth_quant=-1, bias_correction="none")
        run = export_int8(folder, "lite_medsam", settings, log=lines.append,
                          calibration=CalibrationSet("four", cases), split_cases=(cases[:2], cases[2:]))
        refused = None
    except Int8Error as e:
        run, refused = None, str(e)
    rows = {m.group(1): [float(v) for v in m.groups()[1:]] for line in lines if (m := re.match(GATE_ROW, line))}
    assert sorted(rows) == sorted(c.name for c in cases[2:])
    f32, int8 = np.array([r[0] for r in rows.values()]), np.array([r[1] for r in rows.values()])
    assert f32.max() > 0.05  # the filled weights segment something: the DSCs are real decisions
    for name, (a, b, change, _) in rows.items():
        assert change == round(b - a, 4), name
    mean_line = next(line.split() for line in lines if line.strip().startswith("mean "))
    assert mean_line[1:4] == [f"{round(f32.mean(), 4):.4f}", f"{round(int8.mean(), 4):.4f}",
                              f"{round(round(int8.mean(), 4) - round(f32.mean(), 4), 4):+.4f}"]
    mean_drop = round(f32.mean(), 4) - round(int8.mean(), 4)
    worse = [k for k, r in rows.items() if -r[2] > 0.10]
    if round(mean_drop, 4) <= 0.01 and not worse:
        assert refused is None and run.verdict.passed
        assert {k: [v["dsc_f32"], v["dsc_int8"], v["change"], v["agreement"]]
                for k, v in run.record["agreement"]["cases"].items()} == rows
    else:
        assert refused is not None and all(k in refused for k in worse)
        assert ("--int8_max_dsc_drop" in refused) == (round(mean_drop, 4) > 0.01)
        assert not (folder / "lite_medsam_image_encoder_int8.xml").exists()
