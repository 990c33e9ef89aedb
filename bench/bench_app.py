"""Latency the user of ``daftseg-app`` feels, through the real HTTP server (uvicorn on 127.0.0.1).

    python bench/bench_app.py --models_dir /path/to/ir          # real (or random-weight real-size) IR
    python bench/bench_app.py                                    # seeded random-weight l0, real size (torch)
    python bench/bench_app.py --models toy                       # the tests' toy IR (plumbing only)

Each row is a request as the page sends it, plus the overlay fetch that follows it (what it takes
from releasing the mouse to seeing the mask):

- first box on a new 2D image (512x512 RGB): image encoder + one decoder call;
- another box on the same image: one decoder call (the embedding is cached);
- first box on a new slice of a 3D CT (512x512): slice encoder + one decoder call;
- 3D propagation of one box: seconds per slice (encoder + decoder per slice), progress polled;
- Propagate over 30 slices of the CT: at once after drawing the box with the background encoding
  off (cold), and ``--wait`` seconds (5) after drawing it with the background encoding on (as a user
  who sets the range first), each on slices not encoded before.

The models are compiled once before timing (the first open of a modality; reported separately).
Targets (issue 15): another box < 100 ms; a first box < 0.5 s at f32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def models_folder(kind: str, work: Path) -> Path:
    sys.path.insert(0, str(REPO / "bench"))
    from bench_segment import models_folder as build

    return build(kind, work)


def write_scans(folder: Path, images: int, slices: int, seed: int = 3) -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:512, :512]
    for i in range(images):
        rgb = rng.integers(0, 60, (512, 512, 3), dtype=np.uint8)
        rgb[(yy - 200 - 5 * i) ** 2 + (xx - 260) ** 2 < 90 ** 2] = (200, 160, 120)
        cv2.imwrite(str(folder / f"Dermoscopy_{i}.png"), rgb)
    ct = rng.normal(-900, 30, (slices, 512, 512)).astype(np.int16)
    for z in range(slices):
        ct[z][(yy - 250) ** 2 / 1.5 + (xx - 240) ** 2 < (110 + z) ** 2] = 60
    image = sitk.GetImageFromArray(ct)
    image.SetSpacing((0.8, 0.8, 2.5))
    sitk.WriteImage(image, str(folder / "CT_bench.nii.gz"))


class Client:
    """A script's client: the launch's token as a bearer header, JSON bodies as application/json."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def call(self, method: str, path: str, data: dict | None = None) -> bytes:
        if data is None and method in ("POST", "PUT"):
            data = {}
        body = None if data is None else json.dumps(data).encode()
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.read()
        except urllib.error.HTTPError as err:
            raise SystemExit(f"error: {method} {path}: {err.code} {err.read().decode(errors='replace')}") from None

    def json(self, method: str, path: str, data: dict | None = None) -> dict:
        return json.loads(self.call(method, path, data))


def serve(data: Path, models: Path, precision: str, threads: int):
    import uvicorn

    from daftseg.app.core import AppConfig
    from daftseg.app.handlers import create_app

    app = create_app(AppConfig(data, models, precision, threads, cache_dir=str(data.parent / "ovcache")))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    return server, Client(url, app.state.token), app.state.daft


def decoder_alone(core, model: str, repeats: int) -> list[float]:
    """One prompt-encoder + mask-decoder call on a fixed embedding, in process: the floor under
    "another box" (everything above it is the app: HTTP, preprocessing, the overlay)."""
    sessions = core.segmenter.sessions.model(model)
    emb = np.zeros((1, 256, 64, 64), np.float32)
    box = np.array([[60, 40, 180, 170]], np.float32)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sessions.decode(emb, box)
        times.append(time.perf_counter() - t0)
    return times


def box_latency(c: Client, sid: str, box: dict, z: int | None = None) -> float:
    t0 = time.perf_counter()
    c.json("POST", f"/api/scans/{sid}/boxes", {"box": box})
    c.call("GET", f"/api/scans/{sid}/overlay" + (f"?z={z}" if z is not None else ""))
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", choices=("random", "toy"), default="random",
                   help="random: seeded random-weight EfficientViT-SAM l0 IR, real size (needs torch); toy: test IR")
    p.add_argument("--models_dir", type=Path, default=None, help="an IR folder to use instead (real models)")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_app")
    p.add_argument("--precision", choices=("f32", "auto", "bf16"), default="f32")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--slices", type=int, default=96,
                   help="CT depth (512x512 slices): a box over 16 of them, and two over 30 (cold and prefetched)")
    p.add_argument("--wait", type=float, default=5.0, help="seconds between drawing and Propagate (prefetch row)")
    args = p.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    models = args.models_dir or models_folder(args.models, args.work)
    kind = f"IR in {args.models_dir}" if args.models_dir else (
        "seeded random-weight EfficientViT-SAM l0, real size" if args.models == "random" else "toy IR (tests)")
    data = Path(tempfile.mkdtemp(dir=args.work, prefix="data-"))
    write_scans(data, args.repeats + 1, args.slices)
    server, c, core = serve(data, models, args.precision, args.threads)

    t0 = time.perf_counter()  # compile the models once (the first box of a session pays it)
    warm = c.json("POST", "/api/open", {"path": f"Dermoscopy_{args.repeats}.png", "modality": "Dermoscopy"})
    box_latency(c, warm["id"], {"coords": [100, 100, 300, 300]})
    ct = c.json("POST", "/api/open", {"path": "CT_bench.nii.gz", "modality": "CT"})
    box_latency(c, ct["id"], {"coords": [120, 130, 0, 380, 360, 1], "slice": 0}, 0)
    load = time.perf_counter() - t0

    first, again = [], []
    for i in range(args.repeats):
        sid = c.json("POST", "/api/open", {"path": f"Dermoscopy_{i}.png", "modality": "Dermoscopy"})["id"]
        first.append(box_latency(c, sid, {"coords": [150, 90, 360, 330], "label": 1}))
        again.append(box_latency(c, sid, {"coords": [40 + 10 * i, 300, 200, 480], "label": 2}))
    sid = c.json("POST", "/api/open", {"path": "CT_bench.nii.gz", "modality": "CT"})["id"]  # 4 scans stay open
    new_slice = [box_latency(c, sid, {"coords": [120, 130, 1, 380, 360, 2], "slice": z}, z)
                 for z in range(1, 1 + args.repeats)]
    lo = min(args.slices - 17, 1 + args.repeats)
    state = c.json("POST", f"/api/scans/{sid}/boxes", {"box": {"coords": [110, 120, lo, 390, 370, lo + 16],
                                                               "slice": lo + 8}})
    box_id = state["box"]["id"]
    t0 = time.perf_counter()
    job = c.json("POST", f"/api/scans/{sid}/propagate", {"box_id": box_id})
    while job["state"] == "running":
        time.sleep(0.02)
        job = c.json("GET", f"/api/scans/{sid}/job")
    seconds = time.perf_counter() - t0
    assert job["state"] == "done", job
    cold = propagate_after(c, core, sid, lo + 18, 0.0, prefetch=False)
    warm_start = propagate_after(c, core, sid, lo + 18 + 31, args.wait, prefetch=True)
    floor = decoder_alone(core, warm["model"], args.repeats)
    server.should_exit = True

    ms = lambda xs: f"{1000 * statistics.median(xs):7.0f} ms (min {1000 * min(xs):.0f}, max {1000 * max(xs):.0f})"
    print(f"daftseg-app latency through HTTP, {kind}, precision {args.precision}, "
          f"median of {args.repeats} (models compiled beforehand in {load:.1f} s)")
    print(f"  first box on a new 2D image (512x512)   {ms(first)}   target < 500 ms")
    print(f"  another box on the same image           {ms(again)}   target < 100 ms")
    print(f"  (decoder call alone, in process          {ms(floor)})")
    print(f"  first box on a new 3D slice (512x512)   {ms(new_slice)}   target < 500 ms")
    print(f"  3D propagation, {job['total']} slices             {seconds:7.2f} s  = "
          f"{1000 * seconds / job['total']:.0f} ms per slice (its drawn slice was encoded for the preview)")
    print(f"  Propagate over 30 slices, at once, no prefetch   {cold:7.2f} s")
    print(f"  Propagate over 30 slices, {args.wait:g} s after the box was drawn (prefetch)   {warm_start:7.2f} s")
    return 0


def propagate_after(c: Client, core, sid: str, lo: int, wait: float, prefetch: bool) -> float:
    """Seconds from Propagate to done for a new box over slices lo..lo+29, drawn ``wait`` s before."""
    if lo + 30 >= core.scan(sid).geometry.size[2]:
        raise SystemExit(f"error: --slices too small for the Propagate rows (need more than {lo + 30})")
    core.config.prefetch = prefetch
    state = c.json("POST", f"/api/scans/{sid}/boxes", {"box": {"coords": [110, 120, lo, 390, 370, lo + 30],
                                                               "slice": lo + 15}})
    time.sleep(wait)
    t0 = time.perf_counter()
    job = c.json("POST", f"/api/scans/{sid}/propagate", {"box_id": state["box"]["id"]})
    while job["state"] == "running":
        time.sleep(0.02)
        job = c.json("GET", f"/api/scans/{sid}/job")
    assert job["state"] == "done" and job["total"] == 30, job
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
