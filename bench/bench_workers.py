#!/usr/bin/env python3
"""Cases per second of ``PerfectMetaOpenVINO.py --workers K`` on the demo's cases, and the scaling to expect.

The cases are the demo's (``daftseg.data.synthetic``: one per modality, 13, at the demo's size 512
and depth cap 40); the models real-sized IR with seeded weights (``bench_inference.build_models``,
or ``--models_dir``), compiled into a warm cache first. For each K the whole folder runs in one
command (K = 1: the plain command, all cores to one process), best of ``--reps``; outputs are
compared byte for byte with K = 1.

Expected scaling on C cores (printed for 16 and 32) from two numbers measured here: the CPU
seconds a case takes with one OpenVINO thread while every core is busy (the K = cores run, its
CPU time over its cases) and one process's start-up (wall time of the K = 1 run that no case
accounts for). With K = C workers of one thread each, M cases take about start-up + M x CPU
seconds per case / C, and never less than the longest single case. CPU seconds, unlike wall
time, do not count the waits for other programs on a shared machine; memory bandwidth and turbo
clocks shared by 32 busy cores make the projection an upper bound.

    python bench/bench_workers.py                    # about 5 minutes on 2 cores
    python bench/bench_workers.py --workers 1,2,4 --reps 1
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_inference import cpu_name  # found through the bench folder put on the path just above


def run(inp: Path, out: Path, models: Path, cache: Path, k: int, timing: Path) -> tuple[float, float, float]:
    """(wall s, CPU s of the command and its workers, peak RSS MB of its largest process) of one folder run."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(REPO / "PerfectMetaOpenVINO.py"), "-i", str(inp), "-o", str(out), "-m", str(models),
           "--cache_dir", str(cache), "--timing_csv", str(timing)]
    if k > 1:
        cmd += ["--workers", str(k)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this command and the workers it waited for, nothing else
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def case_seconds(timing: Path) -> dict[str, float]:
    with open(timing, newline="") as f:
        return {r["case"]: float(r["seconds"]) for r in csv.DictReader(f)}


def same_bytes(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.npz"))
    return names == sorted(p.name for p in b.glob("*.npz")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/daftseg_bench", help="models, cases, outputs (reused across runs)")
    p.add_argument("--models_dir", default=None, help="real exported IR (default: export seeded models)")
    p.add_argument("--workers", default="1,2", help="comma-separated K to time (default 1,2)")
    p.add_argument("--reps", type=int, default=2, help="runs per K, interleaved; the best is reported")
    p.add_argument("--size", type=int, default=512, help="the demo's longest in-plane side")
    p.add_argument("--max_slices", type=int, default=40, help="the demo's depth cap of 3D cases")
    args = p.parse_args(argv)

    from bench_inference import build_models, warm_cache

    from daftseg.data.synthetic import generate
    from daftseg.inference.routing import RoutingTable
    from daftseg.inference.workers import available_cores

    work = Path(args.work)
    models = Path(args.models_dir) if args.models_dir else build_models(work / "models")
    cases = work / f"demo_cases_{args.size}_{args.max_slices}"
    if not (cases / "imgs").is_dir():
        generate(cases, size=args.size, max_slices=args.max_slices)
    inp = cases / "imgs"
    files = sorted(inp.glob("*.npz"))
    cache = work / "ovcache"
    table = RoutingTable.load()
    warm_cache(models, cache, {table.route(f.name).model for f in files})
    ks = [int(v) for v in args.workers.split(",")]
    cores = len(available_cores())

    results: dict[int, list[tuple[float, float, float]]] = {k: [] for k in ks}
    for _ in range(args.reps):
        for k in ks:
            results[k].append(run(inp, work / f"out_workers_{k}", models, cache, k, work / f"timing_workers_{k}.csv"))
            print(f"  K={k}: {results[k][-1][0]:.1f}s", flush=True)

    print(f"\nCPU: {cpu_name()}, {cores} cores available (os.sched_getaffinity); {len(files)} demo cases "
          f"({args.size} px, 3D depth <= {args.max_slices}), best of {args.reps}")
    print(f"{'K':>3s} {'threads':>7s} {'wall s':>7s} {'cases/s':>8s} {'speed-up':>8s} {'CPU s':>7s} "
          f"{'CPU s/case':>10s} {'peak MB/process':>15s}  outputs")
    base = min(r[0] for r in results[ks[0]])
    for k in ks:
        wall, cpu, rss = min(results[k])
        threads = cores if k == 1 else max(1, cores // k)
        same = "identical" if same_bytes(work / f"out_workers_{k}", work / f"out_workers_{ks[0]}") else "DIFFER"
        print(f"{k:3d} {threads:7d} {wall:7.1f} {len(files) / wall:8.3f} {base / wall:8.2f} {cpu:7.1f} "
              f"{cpu / len(files):10.2f} {rss:15.0f}  {same}")

    # -- on paper: C cores -----------------------------------------------------------------------
    one = case_seconds(work / f"timing_workers_{ks[0]}.csv")
    startup = min(r[0] for r in results[ks[0]]) - sum(one.values())
    busy_k = max(ks)  # its workers had one thread each, every core busy (when busy_k = cores)
    cpu_per_case = min(r[1] for r in results[busy_k]) / len(files)
    per_case = case_seconds(work / f"timing_workers_{busy_k}.csv")
    longest = max(per_case, key=per_case.get)
    print(f"\nOn paper, K = C workers of one thread each. Measured: one process's start-up {startup:.1f}s (K={ks[0]} "
          f"wall minus its cases' seconds); CPU seconds per demo case with one thread (K={busy_k}, every core busy): "
          f"{cpu_per_case:.2f}; the longest case {per_case[longest]:.1f}s wall ({longest}), a bound no core count "
          f"beats. Load average now {os.getloadavg()[0]:.1f} on {cores} cores (wall times above include the waits "
          "for other programs' CPU time; CPU seconds do not)")
    print(f"{'cores':>5s} {'cohort':>7s} {'hours':>6s} {'cases/s':>8s}   (cases of the demo's mix: 10 2D, 3 3D)")
    for c in (cores, 16, 32):
        for m in (len(files), 1000, 10000):
            t = startup + max(m * cpu_per_case / c, per_case[longest])
            print(f"{c:5d} {m:7d} {t / 3600:6.2f} {m / t:8.2f}")
    return 0


def _mean(seconds: dict[str, float], prefix: str) -> float:
    values = [v for k, v in seconds.items() if k.startswith(prefix)]
    return sum(values) / len(values) if values else float("nan")


if __name__ == "__main__":
    sys.exit(main())
