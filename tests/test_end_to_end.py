"""The whole pipeline on tiny synthetic data: distill -> merge -> fine-tune -> extract -> export ->
convert -> infer -> evaluate, each stage through the same ``main(argv)`` its script calls."""

from __future__ import annotations

import csv

import numpy as np
import torch
from fixture_weights import filled_state_dict
from reference import daft_plain as daft
from test_inference_equivalence import MODES, random_boxes_2d, textured

from daftseg.data.synthetic import main as synthetic_main
from daftseg.export.onnx_export import main as export_main
from daftseg.export.openvino_convert import main as convert_main
from daftseg.inference import InferenceOptions, Segmenter
from daftseg.inference.runner import main as infer_main
from daftseg.merge import extract_main, merge_main
from daftseg.metrics.evaluate import main as metrics_main
from daftseg.models import build_model
from daftseg.training.distill import main as distill_main
from daftseg.training.finetune import main as finetune_main

COMMON = ["-num_epochs", "1", "-batch_size", "2", "-max_steps", "1", "-num_workers", "0", "-device", "cpu"]


def test_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    assert synthetic_main(["-o", "train_npz", "--training", "--size", "64",
                           "--prefixes", "2DBox_CT,3DBox_MR"]) == 0
    names = sorted(p.name for p in (tmp_path / "train_npz").glob("*.npz"))
    assert names
    with open("train.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename"], *[[n] for n in names]])
    torch.save(build_model("litemedsam").state_dict(), "lite_medsam.pth")
    data = ["-data_root", "train_npz", "-datacsv", "train.csv"]

    assert distill_main([*data, *COMMON, "--nopretrain", "-teacher_checkpoint", "lite_medsam.pth",
                         "-work_dir", "distill", "-resume", ""]) == 0
    assert merge_main(["distill/medsam_lite_latest.pth", "distilled.pth", "--lite_medsam", "lite_medsam.pth"]) == 0
    assert finetune_main([*data, *COMMON, "-pretrained_checkpoint", "distilled.pth",
                          "-work_dir", "finetune", "-resume", ""]) == 0
    assert extract_main(["finetune/medsam_lite_latest.pth", "models/CT.pth"]) == 0
    # One training step leaves every mask empty, and empty masks agree with anything. The fixtures'
    # fill rule, applied to the extracted state dict (same keys and shapes), gives masks that cover
    # about a quarter of the image, so the runtime check below compares real decisions.
    extracted = torch.load("models/CT.pth", weights_only=True)
    torch.save(filled_state_dict(extracted), "models/CT.pth")

    assert export_main(["--models_dir", "models", "--out_dir", "onnxmodels"]) == 0
    assert convert_main(["--in_dir", "onnxmodels", "--out_dir", "openvinomodels"]) == 0
    for part in ("image_encoder", "prompt_encoder", "mask_decoder"):
        assert (tmp_path / "openvinomodels" / f"CT_{part}.xml").is_file()

    check_runtime_on_real_models(tmp_path / "openvinomodels", "CT")

    assert synthetic_main(["-o", "cases", "--size", "64", "--prefixes", "2DBox_CT,3DBox_CT"]) == 0
    assert infer_main(["-i", "cases/imgs", "-o", "cases/segs", "-m", "openvinomodels",
                       "--cache_dir", "", "--precision", "f32"]) == 0
    for gt_path in sorted((tmp_path / "cases" / "gts").glob("*.npz")):
        with np.load(gt_path) as gt, np.load(tmp_path / "cases" / "segs" / gt_path.name) as seg:
            assert seg["segs"].shape == gt["gts"].shape
            assert seg["segs"].dtype == np.uint16

    assert metrics_main(["-s", "cases/segs", "-g", "cases/gts", "-csv_dir", "metrics.csv",
                         "-num_workers", "1"]) == 0
    with open("metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == sorted(p.name for p in (tmp_path / "cases" / "gts").glob("*.npz"))
    assert all(0.0 <= float(r["dsc"]) <= 1.0 for r in rows if r["dsc"] != "nan")


def check_runtime_on_real_models(folder, name):
    """The runtime equals DAFT's script (tests/reference/daft_plain.py) on real-sized IR, in every mode.

    The reference compiles the graphs as stored with a plain ``ov.Core``; the runtime by default
    compiles them at batch 1 (f32) through copies in its cache folder, so this also checks that the
    reshape changes no bit of a real model's outputs where it is used. bf16 is compared only on
    CPUs with native bf16 (elsewhere a bf16 hint changes nothing). The weights follow the fill
    rule: every comparison is asserted to involve non-empty masks.
    """
    prompt_encoder = f"{name}_prompt_encoder.xml"  # DAFT's prompt encoders are all the same graph
    img = textured((300, 420, 3), seed=1)
    boxes = random_boxes_2d(4, 300, 420, seed=2, min_size=20)
    vol = textured((6, 200, 160), seed=3)
    boxes3 = np.array([[20, 30, 0, 120, 150, 6], [40, 20, 2, 150, 100, 5]])
    modes = [m for m in MODES if m != "bf16" or daft.cpu_has_native_bf16()]
    for mode in modes:
        kwargs, precision = MODES[mode]
        ref = daft.DaftModels(folder, name, precision, prompt_encoder=prompt_encoder)
        seg = Segmenter(folder, cache_dir=str(folder.parent / f"ovcache-{mode}"), **kwargs)
        expected = daft.infer_2d(ref, img, boxes)
        assert len(np.unique(expected)) >= 3, f"{mode}: masks of the fill-rule weights should not be empty"
        np.testing.assert_array_equal(seg.segment(img, boxes, model=name, is_3d=False), expected, err_msg=mode)
        expected = daft.infer_3d(ref, vol, boxes3)
        assert set(np.unique(expected)) == {0, 1, 2}, f"{mode}: both 3D boxes should leave labels"
        np.testing.assert_array_equal(seg.segment(vol, boxes3, model=name, is_3d=True), expected, err_msg=mode)
        if mode == "default":
            default = seg
    assert default.sessions.model(name).decoder_max_batch == 1  # f32: compiled at batch 1

    # --decode_batch is opt-in because it is not bit-exact: it may flip only borderline pixels
    boxes = random_boxes_2d(16, 256, 256, seed=5, min_size=20)
    img = textured((256, 256, 3), seed=4)
    single = default.segment(img, boxes, model=name, is_3d=False)
    batched = Segmenter(folder, options=InferenceOptions(decode_batch=16)).segment(img, boxes, model=name, is_3d=False)
    assert single.any() and int((single != batched).sum()) <= 0.001 * single.size
