#!/usr/bin/env python3
"""Speed and memory of PerfectMetaOpenVINO.py against a plain implementation over the same IR.

The plain implementation (``plain`` sub-command below) is DAFT 93f1e55's script as specified
(spec §7): full ``import openvino``, prompt encoder compiled at start-up, every needed 3D slice
encoded up front and kept, one box per decoder call, ``np.savez_compressed``. Both use the same
compiled-model cache folder, warmed before timing (the harness's cache persists, spec §9.2).

Measured on a seeded synthetic set in the challenge format (2D modalities at 1024x1024 and
larger, one case with 20+ boxes, a 3D CT of ``--ct_slices`` 512x512 slices with 4 boxes, a 3D MR):

1. each case in a fresh process, as the challenge harness did: wall time and peak RSS
   (``/usr/bin/time -v``), ours vs plain at the same precision, outputs compared voxel for voxel:
   one table at ``--precision f32`` (our default; plain = DAFT's script with an f32 hint) and one
   at ``--precision auto`` (no hint; plain = DAFT's script exactly; bf16 on CPUs with native bf16);
2. the whole folder in one process: ours and plain at both precisions, ours with every model
   kept (``--max_loaded_models 0``), ours ``--decode_batch 8`` (opt-in, not bit-exact);
3. where the time of one fresh-process 2D case goes;
5. with ``--encode_ahead`` only: one 3D CT with the next slice encoded ahead in an asynchronous
   request while the decoder runs (issue 27 item 6; measured, not adopted: see docs/inference.md).

Models: ``--models_dir`` (real exported IR), else EfficientViT-SAM l0 and LiteMedSAM with seeded
random weights exported with ``daftseg.export`` (real sizes, FP16-compressed IR as DAFT) into
``--work``; all DAFT model names link to the l0 export, ``lite_medsam`` (ultrasound) to TinyViT.

    python bench/bench_inference.py                 # about 10 minutes on 2 busy cores
    python bench/bench_inference.py --quick         # smaller cases, fewer runs
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DAFT_NAMES = ("CT", "3D", "XRay", "Fundus", "Endoscopy", "Dermoscopy", "Microscopy", "Mammography", "OCT")


# -- the plain implementation (DAFT 93f1e55, spec §7.4 / §7.5) ---------------------------------------


def plain_main(argv: list[str]) -> int:
    """DAFT's PerfectMetaOpenVINO.py written plainly, with this repo's routing table."""
    p = argparse.ArgumentParser(prog="bench_inference.py plain")
    p.add_argument("-i", "--input_dir", required=True)
    p.add_argument("-o", "--output_dir", required=True)
    p.add_argument("-m", "--models_dir", required=True)
    p.add_argument("--cache_dir", required=True)
    p.add_argument("--precision", choices=("f32", "auto"), default="auto",
                   help="auto: no hint, DAFT's script exactly; f32: the same with an f32 precision hint")
    args = p.parse_args(argv)
    config = {} if args.precision == "auto" else {"INFERENCE_PRECISION_HINT": args.precision}

    import glob
    import tomllib

    import cv2
    import openvino as ov

    core = ov.Core()
    core.set_property({"CACHE_DIR": args.cache_dir})
    models = args.models_dir
    os.makedirs(args.output_dir, exist_ok=True)
    with open(REPO / "daftseg" / "configs" / "modalities.toml", "rb") as f:
        table = tomllib.load(f)

    def route(name: str) -> str:
        for r in table["route"]:
            if ("startswith" in r and name.startswith(tuple(r["startswith"]))) or \
                    ("contains" in r and any(s in name for s in r["contains"])):
                return r["model"]
        return table["fallback"]

    def resize_longest(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        s = 256 * 1.0 / max(h, w)
        return cv2.resize(img, (int(w * s + 0.5), int(h * s + 0.5)), interpolation=cv2.INTER_AREA)

    def pad(img: np.ndarray) -> np.ndarray:
        extra = ((0, 0),) if img.ndim == 3 else ()
        return np.pad(img, ((0, 256 - img.shape[0]), (0, 256 - img.shape[1])) + extra)

    def box256(box: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        out, ratio = np.zeros_like(box), 256 / max(hw)
        for i in range(len(box)):
            out[i] = int(box[i] * ratio)
        return out

    def bbox256(mask: np.ndarray) -> np.ndarray:
        ys, xs = np.where(mask > 0)
        return np.array([max(0, xs.min() - 3), max(0, ys.min() - 3), min(256, xs.max() + 3), min(256, ys.max() + 3)])

    pe_model = core.compile_model(f"{models}/lite_medsam_prompt_encoder.xml", "CPU", config)
    pos = np.load(f"{models}/positional_encoding.npy")
    sessions: dict = {}

    def session(name: str):
        if name not in sessions:
            sessions[name] = (core.compile_model(f"{models}/{name}_image_encoder.xml", "CPU", config),
                              core.compile_model(f"{models}/{name}_mask_decoder.xml", "CPU", config))
        return sessions[name]

    def embed(enc, img: np.ndarray):
        img3 = np.repeat(img[:, :, None], 3, -1) if img.ndim == 2 else img
        small = resize_longest(img3)
        norm = (small - small.min()) / np.clip(small.max() - small.min(), 1e-8, None)
        x = pad(norm).astype(np.float32).transpose(2, 0, 1)[None]
        return enc({"image": x})[0], small.shape[:2]

    def infer(dec, emb, box, new_hw, hw) -> np.ndarray:
        out = pe_model({"boxes": np.asarray(box).reshape(1, 1, 1, 4).astype(np.float32)})
        res = dec({"image_embeddings": emb, "image_pe": pos, "sparse_prompt_embeddings": out["sparse_embeddings"],
                   "dense_prompt_embeddings": out["dense_embeddings"]})
        low = res["low_res_masks"][..., :new_hw[0], :new_hw[1]].squeeze()
        return cv2.resize(low, hw[::-1], interpolation=cv2.INTER_LINEAR) > 0

    for path in sorted(glob.glob(os.path.join(args.input_dir, "*.npz"))):
        name = os.path.basename(path)
        data = np.load(path, "r", allow_pickle=True)
        enc, dec = session(route(name))
        imgs, boxes = data["imgs"], data["boxes"]
        if not name.startswith("3D"):
            h, w = imgs.shape[:2]
            segs = np.zeros((h, w), np.uint16)
            emb, new_hw = embed(enc, imgs)
            for idx, box in enumerate(boxes, start=1):
                segs[infer(dec, emb, box256(box, (h, w)), new_hw, (h, w))] = idx
        else:
            d, h, w = imgs.shape
            segs = np.zeros((d, h, w), np.uint16)
            cache, new_hw = {}, None
            for b in boxes:
                for z in range(max(0, b[2]), min(b[5], d)):
                    if z not in cache:
                        cache[z], new_hw = embed(enc, imgs[z])
            for idx, b in enumerate(boxes, start=1):
                temp = np.zeros((d, h, w), np.uint16)
                x0, y0, z0, x1, y1, z1 = (int(v) for v in b)
                mid = int((z1 - z0) / 2 + z0)
                mid_box = box256(np.array([x0, y0, x1, y1]), (h, w))

                def prompt(prev: np.ndarray, mid_box: np.ndarray = mid_box) -> np.ndarray:
                    if prev.max() > 0:
                        small = pad(resize_longest(prev))
                        if small.max() > 0:
                            return bbox256(small)
                    return mid_box

                for z in range(mid, min(z1, d)):
                    bx = mid_box if z == mid else prompt(temp[z - 1])
                    temp[z, infer(dec, cache[z], bx, new_hw, (h, w))] = idx
                for z in range(mid - 1, max(-1, z0 - 1), -1):
                    temp[z, infer(dec, cache[z], prompt(temp[z + 1]), new_hw, (h, w))] = idx
                segs[temp > 0] = idx
        np.savez_compressed(os.path.join(args.output_dir, name), segs=segs)
    return 0


# -- models and cases ---------------------------------------------------------------------------------


def build_models(folder: Path) -> Path:
    """Real-sized IR with seeded random weights (l0 for the DAFT names, TinyViT for lite_medsam)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / ".complete"
    if done.exists():
        return folder
    import torch

    from daftseg.export.files import save_openvino_model
    from daftseg.export.graphs import GRAPHS, dense_pe, graph_modules
    from daftseg.export.onnx_export import tracing_inputs
    from daftseg.export.openvino_direct import convert_module
    from daftseg.inference.model_folder import (
        BIN,
        IMAGE_ENCODER,
        LITE_MEDSAM,
        MASK_DECODER,
        XML,
        graph_file,
        positional_encoding_file,
    )
    from daftseg.models import build_model

    for name, arch in (("evit_l0", "efficientvit_sam_l0"), (LITE_MEDSAM, "litemedsam")):
        torch.manual_seed(2024)
        model = build_model(arch).eval()
        modules = graph_modules(model)
        for spec in GRAPHS:
            t = time.perf_counter()
            ir = convert_module(modules[spec.suffix], spec, tracing_inputs(model, spec))
            save_openvino_model(ir, folder / spec.file_name(name, XML), compress_to_fp16=True)
            print(f"  exported {spec.file_stem(name)} in {time.perf_counter() - t:.0f}s", flush=True)
        np.save(positional_encoding_file(folder), dense_pe(model).numpy())  # identical for both
    for name in DAFT_NAMES:
        for graph in (IMAGE_ENCODER, MASK_DECODER):
            for ext in (XML, BIN):
                link = folder / graph_file(name, graph, ext)
                if not link.exists():
                    link.symlink_to(graph_file("evit_l0", graph, ext))
    done.touch()
    return folder


def _upscale(imgs: np.ndarray, boxes: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    h, w = imgs.shape[:2]
    return cv2.resize(imgs, (w * f, h * f), interpolation=cv2.INTER_LINEAR), boxes * f


def _ct_volume(d: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(d,512,512) CT-like volume with 4 ellipsoid organs of different z extents, and their boxes."""
    rng = np.random.default_rng(seed)
    h = w = 512
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    body = ((yy - 256) / 200) ** 2 + ((xx - 256) / 235) ** 2 < 1
    organs = [  # centre (z, y, x) as fractions, radii (z, y, x) in voxels / pixels, grey
        ((0.45, 0.45, 0.35), (0.30, 70, 60), 190), ((0.55, 0.55, 0.65), (0.20, 45, 40), 60),
        ((0.35, 0.60, 0.45), (0.12, 25, 30), 220), ((0.65, 0.40, 0.55), (0.15, 35, 50), 150)]
    vol = np.empty((d, h, w), np.uint8)
    boxes = []
    for (cz, cy, cx), (rz, ry, rx), _ in organs:
        z0, z1 = int((cz - rz) * d), int((cz + rz) * d)
        boxes.append([int(cx * w - rx), int(cy * h - ry), z0, int(cx * w + rx), int(cy * h + ry), z1])
    for z in range(d):
        sl = np.where(body, 100.0, 5.0)
        for (cz, cy, cx), (rz, ry, rx), grey in organs:
            t = 1 - ((z / d - cz) / rz) ** 2
            if t > 0:
                s = np.sqrt(t)
                sl[((yy - cy * h) / (ry * s)) ** 2 + ((xx - cx * w) / (rx * s)) ** 2 < 1] = grey
        vol[z] = np.clip(sl + rng.normal(0, 6, (h, w)), 0, 255)
    return vol, np.array(boxes, np.int64)


def make_cases(folder: Path, quick: bool, ct_slices: int) -> list[Path]:
    """Write the seeded benchmark cases (once) and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    from daftseg.data.synthetic import make_case

    def syn(prefix: str, index: int = 1):
        c = make_case(prefix, seed=2024, index=index, size=512 if quick else None)
        return c.imgs, c.boxes, c.spacing

    plans = {
        "2DBox_X-Ray_0001.npz": lambda: syn("2DBox_X-Ray"),
        "2DBox_Fundus_0001.npz": lambda: syn("2DBox_Fundus"),
        "2DBox_Dermoscopy_0001.npz": lambda: syn("2DBox_Dermoscopy"),
        "2DBox_Endoscopy_0001.npz": lambda: syn("2DBox_Endoscopy"),
        "2DBox_US_0001.npz": lambda: syn("2DBox_US"),
        "2DBox_Mamm_0001.npz": lambda: (*_upscale(*syn("2DBox_Mammography")[:2], 1 if quick else 2), None),
        "2DBox_Microscope_0001.npz": lambda: _many_boxes(syn, quick),
        "3DBox_CT_0001.npz": lambda: (*_ct_volume(ct_slices // 3 if quick else ct_slices), np.array([2.5, .8, .8])),
        "3DBox_MR_0001.npz": lambda: syn("3DBox_MR"),
    }
    paths = []
    for name, make in plans.items():
        path = folder / name
        if not path.exists():
            imgs, boxes, spacing = make()
            arrays = {"imgs": imgs, "boxes": boxes}
            if spacing is not None:
                arrays["spacing"] = spacing
            np.savez_compressed(path, **arrays)
        paths.append(path)
    return paths


def _many_boxes(syn, quick: bool):
    """The first microscopy case with at least 20 cells, upscaled to 1024x1024."""
    for index in range(1, 50):
        imgs, boxes, _ = syn("2DBox_Microscope", index)
        if len(boxes) >= 20:
            return (*_upscale(imgs, boxes, 1 if quick else 2), None)
    raise RuntimeError("no synthetic microscopy case with 20+ cells")


# -- running and measuring ------------------------------------------------------------------------------


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, CPU seconds user+sys) of ``cmd`` run under /usr/bin/time -v.

    CPU seconds are reported too because wall time on a shared machine mostly measures the others.
    """
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", proc.stderr).group(1)) for k in ("User", "System"))
    return wall, rss, cpu


def ours_cmd(inp: Path, out: Path, models: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "PerfectMetaOpenVINO.py"), "-i", str(inp), "-o", str(out), "-m", str(models),
            "--cache_dir", str(cache), *extra]


def plain_cmd(inp: Path, out: Path, models: Path, cache: Path, precision: str = "f32") -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "plain", "-i", str(inp), "-o", str(out), "-m", str(models),
            "--cache_dir", str(cache), "--precision", precision]


def compare(a: Path, b: Path) -> int:
    """Number of voxels where two segs files differ (-1: shapes differ)."""
    with np.load(a) as x, np.load(b) as y:
        sa, sb = x["segs"], y["segs"]
    return -1 if sa.shape != sb.shape else int((sa != sb).sum())


def warm_cache(models: Path, cache: Path, names: set[str]) -> None:
    """Compile every model once per precision setting (plain's graphs and ours, batch-1 copies
    included), so all timed runs load from the cache."""
    code = ("import sys, openvino as ov\n"
            "core = ov.Core(); core.set_property({'CACHE_DIR': sys.argv[1]})\n"
            "for props in ({}, {'INFERENCE_PRECISION_HINT': 'f32'}):\n"
            "    for xml in sys.argv[2:]: core.compile_model(xml, 'CPU', props)\n")
    from daftseg.inference.model_folder import SHARED_PROMPT_ENCODERS, model_files

    xmls = [str(models / SHARED_PROMPT_ENCODERS[0])]
    xmls += [str(p) for n in sorted(names) for p in model_files(models, n)]
    subprocess.run([sys.executable, "-c", code, str(cache), *xmls], check=True)
    ours = ("import sys\n"
            "from daftseg.inference.sessions import SessionConfig, Sessions\n"
            "for precision in ('f32', 'auto'):\n"
            "    s = Sessions(sys.argv[1], SessionConfig(sys.argv[2], precision=precision, max_loaded_models=0))\n"
            "    for name in sys.argv[3:]: s.model(name)\n")
    subprocess.run([sys.executable, "-c", ours, str(models), str(cache), *sorted(names)], check=True, cwd=REPO)


def where_time_goes(case: Path, models: Path, cache: Path) -> list[tuple[str, float]]:
    """Seconds per stage of one 2D case, measured in fresh interpreters and in-process."""
    rows = []
    for label, code in (("python start", "pass"), ("import numpy", "import numpy"),
                        ("import cv2 (+numpy)", "import cv2"), ("import openvino (plain)", "import openvino"),
                        ("import openvino (ours, no ovc)",
                         "from daftseg.inference.openvino_runtime import import_openvino; import_openvino()")):
        best = min(_subprocess_seconds(code) for _ in range(3))
        rows.append((label, best))
    from daftseg.geometry import postprocess_logits, preprocess_image, scale_box_to_256
    from daftseg.inference.npz_io import read_case, write_segs
    from daftseg.inference.sessions import SessionConfig, Sessions

    t = time.perf_counter()
    case_ = read_case(case)
    rows.append(("read + validate npz", time.perf_counter() - t))
    s = Sessions(models, SessionConfig(str(cache)))
    t = time.perf_counter()
    m = s.model("XRay")
    rows.append(("load 3 compiled models from cache", time.perf_counter() - t))
    t = time.perf_counter()
    x, new_hw = preprocess_image(case_.imgs)
    rows.append(("preprocess (resize, normalise, pad)", time.perf_counter() - t))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        emb = m.encode(x)
        times.append(time.perf_counter() - t)
    rows.append(("image encoder (first call)", times[0]))
    rows.append(("image encoder (later calls)", min(times[1:])))
    h, w = case_.imgs.shape[:2]
    b = scale_box_to_256(case_.boxes[:1], h, w).astype(np.float32)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        logits = m.decode(emb, b)
        times.append(time.perf_counter() - t)
    rows.append(("prompt encoder + decoder, 1 box", min(times)))
    t = time.perf_counter()
    mask = postprocess_logits(logits[0], new_hw, (h, w))
    rows.append(("postprocess 1 box (crop, resize, > 0)", time.perf_counter() - t))
    segs = np.zeros((h, w), np.uint16)
    t = time.perf_counter()
    np.copyto(segs, np.uint16(1), where=mask)
    rows.append(("write label into segs", time.perf_counter() - t))
    tmp = cache.parent / "tmp_segs.npz"
    t = time.perf_counter()
    write_segs(tmp, segs)
    rows.append(("write segs (ours, zlib level 1)", time.perf_counter() - t))
    t = time.perf_counter()
    np.savez_compressed(tmp, segs=segs)
    rows.append(("write segs (np.savez_compressed)", time.perf_counter() - t))
    tmp.unlink()
    return rows


def rss_scaling(folder: Path, depths: tuple[int, ...] = (60, 120, 240)) -> list[tuple[int, float, float]]:
    """(slices, ours MB, plain MB) on toy models: DAFT keeps every slice embedding (4 MiB each)."""
    sys.path.insert(0, str(REPO / "tests"))
    from ov_toy_models import write_toy_models

    models = write_toy_models(folder / "models", ["CT"])
    rows = []
    for d in depths:
        inp = folder / f"d{d}"
        if not inp.exists():
            vol, _ = _ct_volume(d)
            # middle slices 0.33d .. 0.68d apart: 0.35d slices are needed by both sweeps
            z = [(0.1, 0.9), (0.2, 0.8), (0.05, 0.6), (0.4, 0.95)]
            boxes = np.array([[100 + 10 * i, 100 + 10 * i, int(a * d), 400 + 10 * i, 400 + 10 * i, int(b * d)]
                              for i, (a, b) in enumerate(z)])
            inp.mkdir(parents=True)
            np.savez_compressed(inp / "3DBox_CT_0001.npz", imgs=vol, boxes=boxes, spacing=np.ones(3))
        ours = timed(ours_cmd(inp, folder / "out_ours", models, folder / "cache"), REPO)[1]
        plain = timed(plain_cmd(inp, folder / "out_plain", models, folder / "cache"), REPO)[1]
        rows.append((d, ours, plain))
        print(f"  rss scaling {d} slices: ours {ours:.0f} MB, plain {plain:.0f} MB", flush=True)
    return rows


def encode_ahead(models: Path, cache: Path, ct_slices: int, reps: int, precisions: list[str]) -> list[tuple]:
    """Issue 27 item 6, measured and left out: 3D slices encoded ahead while the decoder runs.

    A slice's embedding does not depend on the previous mask, so the next slice to encode can run
    in a second infer request of the image encoder (OpenVINO's asynchronous API) while the current
    slice is decoded and post-processed. The prototype replaces ``SliceEmbeddings`` for one call of
    ``segment_3d``; rows: (precision, (runtime wall s, CPU s), (ahead wall s, CPU s), identical).
    """
    from daftseg.geometry import preprocess_image
    from daftseg.inference import case3d
    from daftseg.inference.segmenter import Segmenter
    from daftseg.inference.slice_cache import SliceEmbeddings

    class Ahead(SliceEmbeddings):
        model = volume = None  # set before each call (the prototype's only way in)

        def __init__(self, encode, visits, *rest) -> None:
            super().__init__(self._encode_ahead, visits, *rest)
            self._order = list(dict.fromkeys(visits))  # distinct slices in the order first needed
            self._next = {z: i + 1 for i, z in enumerate(self._order)}
            self._request = Ahead.model.encoder.compiled.create_infer_request()
            self._pending = None  # (slice, its input, kept alive while the request reads it)

        def _encode_ahead(self, z: int) -> np.ndarray:
            if self._pending is not None and self._pending[0] == z:
                self._request.wait()
                emb = self._request.get_tensor("image_embedding").data.copy()
            else:
                if self._pending is not None:
                    self._request.wait()
                emb = Ahead.model.encode(preprocess_image(Ahead.volume[z])[0])
            self._pending = None
            i = self._next[z]
            if i < len(self._order):
                nxt = self._order[i]
                image = preprocess_image(Ahead.volume[nxt])[0]
                self._request.start_async({"image": image}, share_inputs=True)
                self._pending = (nxt, image)
            return emb

    volume, boxes = _ct_volume(ct_slices)
    rows = []
    for precision in precisions:
        model = Segmenter(models, str(cache), precision=precision).sessions.model("CT")
        samples: dict[str, list[float]] = {"runtime": [], "ahead": []}
        outs = {}
        for _ in range(reps):
            for label, cls in (("runtime", SliceEmbeddings), ("ahead", Ahead)):
                Ahead.model, Ahead.volume = model, volume
                case3d.SliceEmbeddings = cls
                try:
                    t, c = time.perf_counter(), time.process_time()  # CPU: every thread of this process
                    outs[label] = case3d.segment_3d(model, volume, boxes).segs
                    samples[label].append((time.perf_counter() - t, time.process_time() - c))
                finally:
                    case3d.SliceEmbeddings = SliceEmbeddings
                print(f"  encode ahead {precision} {label}: {samples[label][-1][0]:.2f}s, "
                      f"CPU {samples[label][-1][1]:.2f}s", flush=True)
        same = np.array_equal(outs["runtime"], outs["ahead"])
        rows.append((precision, min(samples["runtime"]), min(samples["ahead"]), same))
    return rows


def _subprocess_seconds(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plain"]:
        return plain_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/daftseg_bench", help="cases, models, outputs (reused across runs)")
    p.add_argument("--models_dir", default=None, help="real exported IR (default: export seeded models)")
    p.add_argument("--quick", action="store_true", help="smaller cases (512 px, CT 1/3 of the slices)")
    p.add_argument("--ct_slices", type=int, default=120)
    p.add_argument("--skip_fresh", action="store_true", help="skip the per-case fresh-process runs")
    p.add_argument("--precisions", default="f32,auto",
                   help="comma-separated --precision values to time, each against plain at the same precision "
                        "(default f32,auto; the first also runs the folder options)")
    p.add_argument("--reps", type=int, default=1,
                   help="runs per 2D case (fresh) and per folder configuration, interleaved; the best is reported")
    p.add_argument("--encode_ahead", action="store_true",
                   help="only time 3D slices encoded ahead with asynchronous requests (issue 27 item 6, left out)")
    args = p.parse_args(argv)

    work = Path(args.work)
    t_start = time.perf_counter()
    models = Path(args.models_dir) if args.models_dir else build_models(work / "models")
    if args.encode_ahead:
        warm_cache(models, work / "ovcache", {"CT"})
        rows = encode_ahead(models, work / "ovcache", args.ct_slices, args.reps, [v for v in args.precisions.split(",") if v])
        print(f"\n5. 3D CT {args.ct_slices}x512x512, 4 boxes, one process, all {os.cpu_count()} cores, best of "
              f"{args.reps}: slices encoded when needed (the runtime) or the next one ahead in an asynchronous "
              "request while the decoder runs")
        print(f"{'precision':10s} {'runtime s':>9s} {'ahead s':>8s} {'ratio':>6s} {'CPU s':>7s} {'ahead':>7s}  identical")
        for precision, base, ahead, same in rows:
            print(f"{precision:10s} {base[0]:9.2f} {ahead[0]:8.2f} {ahead[0] / base[0]:6.3f} {base[1]:7.1f} "
                  f"{ahead[1]:7.1f}  {'yes' if same else 'NO'}")
        return 0

    cases = make_cases(work / ("cases_quick" if args.quick else "cases"), args.quick, args.ct_slices)
    cache = work / "ovcache"
    from daftseg.inference.routing import RoutingTable

    table = RoutingTable.load()
    warm_cache(models, cache, {table.route(c.name).model for c in cases})
    print(f"models {models}, {len(cases)} cases, cache warmed ({time.perf_counter() - t_start:.0f}s)", flush=True)

    info = {}
    for c in cases:
        with np.load(c) as z:
            info[c.name] = (z["imgs"].shape, len(z["boxes"]))

    # 1. fresh process per case, at each precision: ours against plain at the same precision
    precisions = [v for v in args.precisions.split(",") if v]
    fresh_rows: dict[str, list[dict]] = {}
    if not args.skip_fresh:
        for precision in precisions:
            fresh_rows[precision] = rows = []
            for c in cases:
                single = work / "single" / c.stem  # the case alone, as the harness copies it
                shutil.rmtree(single, ignore_errors=True)
                single.mkdir(parents=True)
                shutil.copy(c, single / c.name)
                row = {"case": c.name}
                outs = {who: work / f"out_fresh_{who}_{precision}" for who in ("ours", "plain")}
                cmds = {"ours": ours_cmd(single, outs["ours"], models, cache, "--precision", precision,
                                         "--timing_csv", str(work / "fresh_timing.csv")),
                        "plain": plain_cmd(single, outs["plain"], models, cache, precision)}
                samples: dict[str, list] = {"ours": [], "plain": []}
                for _ in range(args.reps if c.name.startswith("2D") else 1):  # interleaved, best of
                    for who, cmd in cmds.items():
                        samples[who].append(timed(cmd, REPO))
                for who, got in samples.items():
                    row[who] = (min(g[0] for g in got), max(g[1] for g in got), min(g[2] for g in got))
                with open(work / "fresh_timing.csv") as f:
                    row["slices"] = f.read().splitlines()[1].split(",")[3]
                row["diff"] = compare(outs["ours"] / c.name, outs["plain"] / c.name)
                rows.append(row)
                print(f"  fresh {precision} {c.name}: ours {row['ours'][0]:.2f}s plain {row['plain'][0]:.2f}s "
                      f"diff {row['diff']}", flush=True)

    # 2. the folder in one process; the 3D cases, when timed fresh above, are left out: they take
    #    most of the time and are the same work in either mode (one case, models loaded once)
    folder_cases = [c for c in cases if not (c.name.startswith("3D") and fresh_rows)]
    folder = work / "folder_in"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for c in folder_cases:
        shutil.copy(c, folder / c.name)
    runs: dict[str, tuple[list[str], str]] = {}  # label -> (command, the plain run it is compared with)
    for precision in precisions:
        plain_label = f"plain {precision}"
        runs[plain_label] = (plain_cmd(folder, work / f"out_folder_plain_{precision}", models, cache, precision),
                             plain_label)
        runs[f"ours --precision {precision}"] = (ours_cmd(folder, work / f"out_folder_ours_{precision}", models,
                                                          cache, "--precision", precision), plain_label)
    base_label = runs[next(iter(runs))][1]  # plain at the first precision (f32: our default)
    runs["ours --max_loaded_models 0"] = (ours_cmd(folder, work / "out_folder_all", models, cache,
                                                   "--precision", precisions[0], "--max_loaded_models", "0"),
                                          base_label)
    runs["ours --decode_batch 8"] = (ours_cmd(folder, work / "out_folder_b8", models, cache, "--precision",
                                              precisions[0], "--decode_batch", "8"), base_label)
    samples = {label: [] for label in runs}
    for _ in range(args.reps):  # the runs interleaved, best of
        for label, (cmd, _) in runs.items():
            samples[label].append(timed(cmd, REPO))
    folder_rows = {}
    for label, (cmd, against) in runs.items():
        wall, rss, cpu = (min(g[0] for g in samples[label]), max(g[1] for g in samples[label]),
                          min(g[2] for g in samples[label]))
        out = Path(cmd[cmd.index("-o") + 1])
        ref = Path(runs[against][0][runs[against][0].index("-o") + 1])
        diffs = [compare(out / c.name, ref / c.name) for c in folder_cases]
        folder_rows[label] = (wall, cpu, rss, sum(d for d in diffs if d > 0), sum(d != 0 for d in diffs), against)
        print(f"  folder {label}: {wall:.1f}s", flush=True)

    # 3. where the time of a fresh 2D case goes
    profile = where_time_goes(next(c for c in cases if c.name.startswith("2DBox_X-Ray")), models, cache)

    # 4. peak memory against the number of slices
    scaling = [] if args.quick else rss_scaling(work / "scaling")

    # -- report -------------------------------------------------------------------------------------
    print(f"\nCPU: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    precision_says = _precision_in_effect()
    for precision, rows in fresh_rows.items():
        print(f"\n1{'abcdefgh'[precisions.index(precision)]}. Fresh process per case (the harness), --precision "
              f"{precision} ({precision_says.get(precision, '?')} on this CPU), ours against plain at the same "
              f"precision: wall and CPU seconds (2D: best of {args.reps}), peak RSS MB; identical: outputs equal "
              "voxel for voxel")
        print(f"{'case':26s} {'shape':>13s} {'boxes':>5s} {'slices':>6s} {'wall ours':>9s} {'plain':>6s} {'ratio':>5s} "
              f"{'cpu ours':>8s} {'plain':>6s} {'ratio':>5s} {'MB ours':>7s} {'plain':>6s}  identical")
        for r in rows:
            shape, n = info[r["case"]]
            (to, ro, co), (tp, rp, cp) = r["ours"], r["plain"]
            print(f"{r['case']:26s} {'x'.join(map(str, shape)):>13s} {n:5d} {r['slices']:>6s} {to:9.2f} {tp:6.2f} "
                  f"{to / tp:5.2f} {co:8.2f} {cp:6.2f} {co / cp:5.2f} {ro:7.0f} {rp:6.0f}  "
                  f"{'yes' if r['diff'] == 0 else r['diff']}")
        two_d = [r for r in rows if r["case"].startswith("2D")]
        so, sp = sum(r["ours"][0] for r in two_d), sum(r["plain"][0] for r in two_d)
        co, cp = sum(r["ours"][2] for r in two_d), sum(r["plain"][2] for r in two_d)
        print(f"{'all 2D cases':26s} {'':>13s} {'':>5s} {'':>6s} {so:9.2f} {sp:6.2f} {so / sp:5.2f} "
              f"{co:8.2f} {cp:6.2f} {co / cp:5.2f}")
    print(f"\n2. Folder in one process, best of {args.reps} ({len(folder_cases)} cases: "
          f"{', '.join(c.stem for c in folder_cases)}); ratios and differences against the plain run named")
    print(f"{'run':28s} {'wall s':>7s} {'ratio':>6s} {'cpu s':>7s} {'ratio':>6s} {'peak MB':>8s}  "
          "voxels differing (in how many cases) from")
    for label, (wall, cpu, rss, diff, ncases, against) in folder_rows.items():
        base, base_cpu = folder_rows[against][:2]
        print(f"{label:28s} {wall:7.1f} {wall / base:6.2f} {cpu:7.1f} {cpu / base_cpu:6.2f} {rss:8.0f}  "
              f"{diff} ({ncases}) {against}")
    print("\n3. Where the time of a fresh 2D case goes (2DBox_X-Ray, 1024x1024)")
    for label, sec in profile:
        print(f"{label:40s} {sec * 1000:8.1f} ms")
    if scaling:
        print("\n4. Peak RSS (MB) against depth: 3D CT 512x512, 4 boxes over 55-80% of the slices, toy models\n"
              "   (tests/ov_toy_models.py: tiny weights, so only the runtime's own memory shows)")
        print(f"{'slices':>6s} {'ours':>6s} {'plain':>6s}  (volume + segs alone: 3 bytes/voxel)")
        for d, ours, plain in scaling:
            print(f"{d:6d} {ours:6.0f} {plain:6.0f}  {3 * d * 512 * 512 / 2**20:.0f}")
    print(f"\nbenchmark took {time.perf_counter() - t_start:.0f}s")
    return 0


def _precision_in_effect() -> dict[str, str]:
    """What OpenVINO's CPU plugin reports for each --precision value on this machine."""
    import openvino as ov

    from daftseg.inference.openvino_runtime import reported_precision

    out = {}
    for precision in ("f32", "auto"):
        core = ov.Core()
        if precision != "auto":
            core.set_property("CPU", {"INFERENCE_PRECISION_HINT": precision})
        out[precision] = reported_precision(core)
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
