"""Training-loader throughput: samples per second per CPU worker, with and without the cache.

Writes realistic synthetic training files (2D 512x512 RGB microscopy, 3D 100x512x512 CT, via
``daftseg.data.synthetic``), builds the preprocessing cache, then draws samples in this one
process with OpenCV and torch limited to one thread, as a DataLoader worker would. Files are read
from the page cache in both cases (they were just written), so the numbers measure decoding and
resizing, not the disk. Optionally also times a real DataLoader with several workers.

    python bench/bench_loader.py                       # defaults: 8 2D files, 2 volumes
    python bench/bench_loader.py -loader_workers 4     # plus a 4-worker DataLoader
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import torch
from torch.utils.data import DataLoader

from daftseg.data.npz_dataset import NpzDataset
from daftseg.data.preprocess_cache import build_cache
from daftseg.data.synthetic import make_case, training_name, write_training_npz
from daftseg.training.sampling import EpochSampler

PREFIX_2D, PREFIX_3D = "2DBox_Microscope", "3DBox_CT"


def make_files(out: Path, n2d: int, n3d: int) -> tuple[list[str], list[str]]:
    out.mkdir(parents=True, exist_ok=True)

    def write(prefix: str, n: int) -> list[str]:
        paths = []
        for i in range(1, n + 1):
            path = out / training_name(prefix, i)
            if not path.exists():
                write_training_npz(make_case(prefix, index=i), path)
            paths.append(str(path))
        return paths

    return write(PREFIX_2D, n2d), write(PREFIX_3D, n3d)


def samples_per_second(ds: NpzDataset, n: int) -> float:
    ds[(1, 0)]  # warm-up: imports, first file open
    start = time.perf_counter()
    for k in range(n):
        ds[(2 + k // len(ds), k % len(ds))]
    return n / (time.perf_counter() - start)


def loader_samples_per_second(ds: NpzDataset, workers: int, batch: int, n_batches: int) -> float:
    sampler = EpochSampler(len(ds))
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, persistent_workers=True)
    seen, start, epoch = 0, None, 1
    while seen < (n_batches + 1) * batch:
        sampler.set_epoch(epoch)
        for b in loader:
            if start is None:  # the first batch includes worker start-up
                start, seen = time.perf_counter(), 0
            else:
                seen += b["image"].shape[0]
        epoch += 1
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-out", default="", help="folder for the files and the cache (default: a temporary one)")
    p.add_argument("-n2d", type=int, default=8)
    p.add_argument("-n3d", type=int, default=2)
    p.add_argument("-samples", type=int, default=60, help="draws per measurement")
    p.add_argument("-loader_workers", type=int, default=0, help="also time a DataLoader with this many workers")
    p.add_argument("-batch_size", type=int, default=16)
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        t = time.perf_counter()
        files2d, files3d = make_files(root / "npz", args.n2d, args.n3d)
        print(f"synthetic files: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        build_cache(files2d + files3d, root / "cache", num_workers=1, progress=False)
        build_s = time.perf_counter() - t
        npz_mb = sum(Path(f).stat().st_size for f in files2d + files3d) / 2**20
        cache_mb = sum(f.stat().st_size for f in (root / "cache").iterdir()) / 2**20
        print(f"cache build: {build_s:.1f} s for {len(files2d) + len(files3d)} files; "
              f"npz {npz_mb:.1f} MiB -> cache {cache_mb:.1f} MiB")
        cases = [("2D 512x512 RGB", files2d, False), ("3D 100x512x512, random slice", files3d, False),
                 ("3D 100x512x512, every slice", files3d, True)]
        print("\n| data | sampling | no cache (samples/s/worker) | cache (samples/s/worker) | speed-up |")
        print("|---|---|---|---|---|")
        for name, files, every in cases:
            rates = [samples_per_second(NpzDataset(files, every_slice=every, cache_dir=c), args.samples)
                     for c in (None, root / "cache")]
            label, sampling = name.split(", ") if ", " in name else (name, "one per file")
            print(f"| {label} | {sampling} | {rates[0]:.1f} | {rates[1]:.1f} | {rates[1] / rates[0]:.1f}x |")
        if args.loader_workers:
            for c in (None, root / "cache"):
                ds = NpzDataset(files2d + files3d, every_slice=True, cache_dir=c)
                rate = loader_samples_per_second(ds, args.loader_workers, args.batch_size, 8)
                print(f"DataLoader, {args.loader_workers} workers, every slice, "
                      f"{'cache' if c else 'no cache'}: {rate:.1f} samples/s")
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
