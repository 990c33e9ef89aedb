#!/usr/bin/env python3
"""Export both models with the fixture weights; print times, files and max abs differences.

    .venv/bin/python bench/bench_export.py [--models litemedsam efficientvit_sam_l0] [--direct] [--keep DIR]

Per model: export+check time (ONNX), conversion+check time (IR, FP16 weights), the files written,
and the max abs difference to PyTorch of the image embedding, mask logits and IoU on the fixture
input (tests/fixtures/*_reference.npz, two boxes) for ONNX Runtime, OpenVINO with FP32 weights and
OpenVINO with FP16 weights (CPU, f32 precision hint); then the decoder time for five boxes as five
calls vs one call. ``--direct`` adds the PyTorch -> OpenVINO route. Not a test: prints numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fixture fill rule
from fixture_weights import FIXTURE_STEMS, filled_state_dict, fixture_reference

from daftseg.export.graphs import dense_pe, graph_modules
from daftseg.export.onnx_export import export_model, save_positional_encoding, tracing_inputs
from daftseg.export.openvino_convert import convert_folder
from daftseg.export.runners import OnnxGraph, OpenVinoGraph, max_abs_diffs
from daftseg.export.specs import GRAPHS
from daftseg.inference.model_folder import LITE_MEDSAM, ONNX, XML
from daftseg.models import build_model

KEYS = {"image_embedding": "embedding", "low_res_masks": "logits", "iou_predictions": "IoU"}


def pipeline(graphs: dict, image: np.ndarray, boxes: np.ndarray, pe: np.ndarray) -> dict[str, np.ndarray]:
    out = graphs["image_encoder"]({"image": image})
    out |= graphs["prompt_encoder"]({"boxes": boxes.reshape(-1, 1, 1, 4)})
    out |= graphs["mask_decoder"]({"image_embeddings": out["image_embedding"], "image_pe": pe,
                                   "sparse_prompt_embeddings": out["sparse_embeddings"],
                                   "dense_prompt_embeddings": out["dense_embeddings"]})
    return out


def torch_pipeline(model: torch.nn.Module, image: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        emb = model.image_encoder(torch.from_numpy(image))
        masks, iou = model.decode(emb, torch.from_numpy(boxes))
    return {"image_embedding": emb.numpy(), "low_res_masks": masks.numpy(), "iou_predictions": iou.numpy()}


def bench(arch: str, root: Path, direct: bool) -> None:
    name = {"litemedsam": LITE_MEDSAM, "efficientvit_sam_l0": "CT"}[arch]
    model = build_model(arch)
    model.load_state_dict(filled_state_dict(model.state_dict()))
    model.eval()
    dirs = {k: root / arch / k for k in ("onnx", "ov_fp16", "ov_fp32", "ov_direct")}
    quiet = [].append

    t0 = time.perf_counter()
    export_model(model, dirs["onnx"], name, log=quiet)
    save_positional_encoding(dense_pe(model), dirs["onnx"])
    t1 = time.perf_counter()
    convert_folder(dirs["onnx"], dirs["ov_fp16"], compress_to_fp16=True, log=quiet)
    t2 = time.perf_counter()
    convert_folder(dirs["onnx"], dirs["ov_fp32"], compress_to_fp16=False, check=False, log=quiet)
    print(f"\n## {arch} ({name})\nexport+check {t1 - t0:.1f} s, convert+check (FP16 weights) {t2 - t1:.1f} s, "
          f"total {t2 - t0:.1f} s")
    for d in ("onnx", "ov_fp16"):
        print(f"{dirs[d]}: " + ", ".join(f"{p.name} ({p.stat().st_size / 2**20:.1f} MiB)"
                                         for p in sorted(dirs[d].iterdir())))

    ref = fixture_reference(FIXTURE_STEMS[arch])
    pe = dense_pe(model).numpy()
    runtimes = {"ONNX Runtime": {s.suffix: OnnxGraph(dirs["onnx"] / s.file_name(name, ONNX)) for s in GRAPHS}}
    for label, d in (("OpenVINO FP32", "ov_fp32"), ("OpenVINO FP16 weights", "ov_fp16")):
        runtimes[label] = {s.suffix: OpenVinoGraph(dirs[d] / s.file_name(name, XML)) for s in GRAPHS}
    if direct:
        from daftseg.export.openvino_direct import export_module

        t3 = time.perf_counter()
        modules = graph_modules(model)
        for s in GRAPHS:
            export_module(modules[s.suffix], s, tracing_inputs(model, s), dirs["ov_direct"] / s.file_name(name, XML),
                          compress_to_fp16=False, image_pe=pe, log=quiet)
        print(f"direct PyTorch -> OpenVINO (FP32 weights) + check: {time.perf_counter() - t3:.1f} s")
        runtimes["OpenVINO direct FP32"] = {s.suffix: OpenVinoGraph(dirs["ov_direct"] / s.file_name(name, XML))
                                            for s in GRAPHS}

    torch_out = torch_pipeline(model, ref["image"], ref["boxes"])
    print("\n| vs PyTorch | " + " | ".join(KEYS.values()) + " |\n|---|" + "---|" * len(KEYS))
    for label, graphs in runtimes.items():
        diffs = max_abs_diffs({k: v for k, v in pipeline(graphs, ref["image"], ref["boxes"], pe).items()
                               if k in KEYS}, torch_out)
        print(f"| {label} | " + " | ".join(f"{diffs[k]:.2e}" for k in KEYS) + " |")
    print("| (reference magnitude, max abs) | " + " | ".join(f"{np.abs(torch_out[k]).max():.2f}" for k in KEYS) + " |")

    graphs = runtimes["OpenVINO FP16 weights"]
    emb = graphs["image_encoder"]({"image": ref["image"]})["image_embedding"]
    boxes = np.array([[[30, 40, 150, 200]], [[100, 20, 250, 90]], [[0, 0, 255, 255]], [[60, 60, 70, 75]],
                      [[10, 180, 120, 250]]], dtype=np.float32).reshape(5, 1, 1, 4)
    prompts = graphs["prompt_encoder"]({"boxes": boxes})

    def decode(sl: slice) -> None:
        graphs["mask_decoder"]({"image_embeddings": emb, "image_pe": pe,
                                "sparse_prompt_embeddings": prompts["sparse_embeddings"][sl],
                                "dense_prompt_embeddings": prompts["dense_embeddings"][sl]})

    decode(slice(0, 5))  # warm-up, both shapes
    decode(slice(0, 1))
    t = time.perf_counter()
    for i in range(5):
        decode(slice(i, i + 1))
    t_single = time.perf_counter() - t
    t = time.perf_counter()
    decode(slice(0, 5))
    print(f"decoder, 5 boxes (OpenVINO FP16 weights): 5 calls {t_single * 1e3:.0f} ms, "
          f"one call {(time.perf_counter() - t) * 1e3:.0f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["efficientvit_sam_l0", "litemedsam"])
    p.add_argument("--direct", action="store_true", help="also time and compare PyTorch -> OpenVINO directly")
    p.add_argument("--keep", type=Path, help="write the files here (default: a temporary folder, removed)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for arch in args.models:
            bench(arch, root, args.direct)


if __name__ == "__main__":
    main()
