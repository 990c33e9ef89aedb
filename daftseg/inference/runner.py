"""Command line of ``PerfectMetaOpenVINO.py``: segment every ``*.npz`` of a folder (spec §7, §9).

Each case prints one line (model, boxes, slices, seconds); a bad case prints one ``error:`` line
naming the file, writes nothing, and the batch goes on; the exit code is 1 if any case failed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from daftseg.inference.cohort import (
    CohortError,
    add_cohort_arguments,
    check_cohort_arguments,
    file_size,
    is_cohort,
    resume_cases,
    run_settings,
    select_shard,
    write_slurm,
)
from daftseg.inference.options import (
    DEFAULT_MAX_CACHED_SLICES,
    DEFAULT_MAX_LOADED_MODELS,
    DEFAULT_MAX_SPILLED_SLICES,
    DEFAULT_PRECISION,
    PRECISIONS,
    InferenceOptions,
)
from daftseg.inference.shards import ShardError, parse_shard

if TYPE_CHECKING:  # imported lazily: `--help` stays fast
    from daftseg.inference.npz_io import Case
    from daftseg.inference.progress import Progress
    from daftseg.inference.segmenter import CaseResult, Segmenter

DOCKER_CACHE_DIR = "/workspace/inputs/openvinocache"
LOCAL_CACHE_DIR = "openvinocache"
UNUSED = "accepted for compatibility with DAFT's command line; does nothing"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="PerfectMetaOpenVINO.py",
        description="Segment challenge npz cases with DAFT's per-modality OpenVINO models. "
                    "Defaults reproduce DAFT 93f1e55's outputs exactly.")
    p.add_argument("-i", "--input_dir", default="test_demo/imgs/", help="folder of *.npz cases")
    p.add_argument("-o", "--output_dir", default="test_demo/segs/",
                   help="folder for the segs npz files (same names; created if missing)")
    p.add_argument("-m", "--models_dir", default="openvinomodels", help="OpenVINO IR folder")
    p.add_argument("--indocker", action="store_true",
                   help=f"model cache in {DOCKER_CACHE_DIR} (the challenge container), as DAFT")
    p.add_argument("--cache_dir", default=None,
                   help=f"compiled-model cache folder (default {LOCAL_CACHE_DIR}, or {DOCKER_CACHE_DIR} with "
                        "--indocker; '' disables; an unusable folder is skipped with a warning)")
    p.add_argument("--threads", type=int, default=0, help="OpenVINO inference threads (0: all cores)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help=f"OpenVINO inference precision. '{DEFAULT_PRECISION}' (default): the same outputs on every CPU, "
                        "equal to DAFT's script with an f32 hint (as its submission was scored, on a CPU without bf16). "
                        "'auto' (default with --fast): no hint, exactly DAFT's script on this CPU (OpenVINO then runs "
                        "bf16 on CPUs with native bf16, AVX512-BF16/AMX, else f32). 'bf16': bf16 where the CPU has it")
    p.add_argument("--max_loaded_models", type=int, default=DEFAULT_MAX_LOADED_MODELS, metavar="N",
                   help="compiled models kept at once, about 300 MB each; the least recently used is released "
                        "(cases run in sorted order, so a modality's cases come together; 0: no limit; default %(default)s)")
    p.add_argument("--routing", default=None, metavar="FILE|93f1e55|916bd4e",
                   help="routing table: a TOML file or a shipped table's name (default: $DAFTSEG_ROUTING, else "
                        "93f1e55, daftseg/configs/modalities.toml; 916bd4e routes CT to 3D, US to US, others to general)")
    p.add_argument("--timing_csv", default=None, metavar="FILE",
                   help="write case,model,boxes,slices,seconds per successful case")
    p.add_argument("--save_overlay", default=None, metavar="DIR",
                   help="PNG overlays of image, boxes and masks (3D: each box's middle slice)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="process only shard K of N (K from 0), for job arrays: cases K, K+N, K+2N, ... of the "
                        "sorted list, or with --balance size a size-balanced share; the selection is printed")
    add_cohort_arguments(p, "cases")
    g = p.add_argument_group("opt-in changes (outputs differ from DAFT's)")
    g.add_argument("--fast", action="store_true",
                   help="fast mode: INT8 image encoders where <Name>_image_encoder_int8.xml exists (written by "
                        "onnx2openvino.py/liteov.py --int8; else the standard encoder, with a warning) and OpenVINO's "
                        "best precision for the rest (bf16 where native; --precision overrides). Prints what it uses "
                        "on this CPU; warns where the CPU has neither VNNI nor AMX (INT8 may then be slower than f32)")
    g.add_argument("--zmax_inclusive", action="store_true",
                   help="3D: segment the box's z_max slice too (the LiteMedSAM baseline; DAFT stops at z_max-1)")
    g.add_argument("--box_from_fullres", action="store_true",
                   help="3D: propagation box from the full-resolution mask (916bd4e's C++ runtime)")
    g.add_argument("--clip_to_box", action="store_true",
                   help="keep mask pixels inside the box only (rows y_min..y_max, columns x_min..x_max), "
                        "the clipping DAFT's code meant but never applied")
    g.add_argument("--decode_batch", type=int, default=1, metavar="N",
                   help="decode up to N boxes per decoder call (2D: all boxes; 3D: boxes on the same slice). "
                        "Fewer calls (no speed-up measured on a 2-core AVX2 CPU); not bit-exact: OpenVINO may choose "
                        "other kernels per batch size (default 1)")
    m = p.add_argument_group("3D memory (never changes outputs)")
    m.add_argument("--max_cached_slices", type=int, default=DEFAULT_MAX_CACHED_SLICES, metavar="N",
                   help="slice embeddings (4 MiB each) kept in memory for a later step (default %(default)s)")
    m.add_argument("--max_spilled_slices", type=int, default=DEFAULT_MAX_SPILLED_SLICES, metavar="N",
                   help="more of them kept in an unlinked temporary file instead of being encoded again "
                        "(default %(default)s: at most 2 GiB of disk; 0: never spill)")
    m.add_argument("--spill_dir", default=None, metavar="DIR",
                   help="folder of that temporary file (default: the system's temporary folder, $TMPDIR)")
    d = p.add_argument_group("DAFT's flags that do nothing")
    d.add_argument("-lite_medsam_checkpoint_path", default=None, help=UNUSED)
    d.add_argument("-device", default=None, help=UNUSED + " (always the OpenVINO CPU device)")
    d.add_argument("-png_save_dir", default=None, help=UNUSED + " (see --save_overlay)")
    d.add_argument("--nopandas", action="store_true", help=UNUSED)
    return p


class _LineHandler(logging.Handler):
    """Log records as one-line 'warning: ...' messages above the progress bar."""

    def __init__(self, emit_line) -> None:
        super().__init__(logging.WARNING)
        self._emit_line = emit_line

    def emit(self, record: logging.LogRecord) -> None:
        self._emit_line(f"{record.levelname.lower()}: {record.getMessage()}")


@contextlib.contextmanager
def _startup_gc_paused() -> Iterator[Callable[[], None]]:
    """Python's cyclic collector paused until the yielded ``end_startup()`` is called.

    Start-up (imports, compiled models, the first case) leaves tens of thousands of objects that
    live as long as the process; the collector would scan them about 60 times during start-up
    and once more at exit, finding a few hundred (30-50 ms of a fresh process's single-threaded
    time, measured with ``gc.callbacks``). They are frozen instead (``gc.freeze``: never scanned
    again), and the collector runs as usual from then on.
    """
    was_enabled = gc.isenabled()
    gc.disable()

    def end_startup() -> None:
        if was_enabled and not gc.isenabled():
            gc.freeze()
            gc.enable()

    try:
        yield end_startup
    finally:
        end_startup()


@dataclass
class _Process:
    """What the command line does with its process around the cases."""

    end_startup: Callable[[], None]  # resumes the collector after the first case
    keep: list[object] = field(default_factory=list)  # alive until main() ends (see fast_exit)


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None,
         fast_exit: bool = False) -> int:
    """Run the command line; returns the exit code (0: all cases written, 1: any failure).

    fast_exit: end the process (``os._exit``) once every output is written and the streams are
    flushed, instead of returning: releasing the compiled models and tearing the interpreter
    down take about 75 ms, paid by every case when the harness starts a process per case.
    For ``PerfectMetaOpenVINO.py``; callers that go on after ``main`` leave it False.
    """
    with _startup_gc_paused() as end_startup:
        process = _Process(end_startup)
        code = _main(argv, stdout, stderr, process)
        if fast_exit:
            for stream in (stdout, stderr, sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
            os._exit(code)
        return code


def _main(argv: list[str] | None, stdout: TextIO | None, stderr: TextIO | None, process: _Process) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        shard = parse_shard(args.shard)
        check_cohort_arguments(args)
    except (ShardError, CohortError) as e:
        parser.error(str(e))
    if args.decode_batch < 1 or min(args.max_cached_slices, args.max_spilled_slices, args.threads,
                                    args.max_loaded_models) < 0:
        parser.error("--decode_batch must be >= 1; --max_cached_slices, --max_spilled_slices, --threads and "
                     "--max_loaded_models >= 0")

    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    if not input_dir.is_dir():
        print(f"error: input folder {input_dir} not found", file=err)
        return 1
    clash = _folder_clash(input_dir, output_dir)
    if clash:
        print(f"error: {clash}: the segs files take the cases' names; choose an output folder "
              "outside the input folder", file=err)
        return 1
    # hidden files (.x.npz) are skipped, as DAFT's glob.glob('*.npz') skips them
    cases = sorted(p for p in input_dir.glob("*.npz") if not p.name.startswith("."))
    files = cases
    if args.shard:
        chosen = select_shard([p.name for p in cases], [file_size(p) for p in cases], shard, args.balance, out)
        files = [cases[i] for i in chosen]
    problem = _unwritable(output_dir)
    if problem:
        print(f"error: output folder {output_dir} is not writable: {problem}", file=err)
        return 1
    if not cases:
        print(f"no .npz cases in {input_dir}", file=out)
        return 0
    if args.slurm:
        return write_slurm(args, build_parser(), cases, _cache_dir(args), out, err)
    if is_cohort(args):
        files = resume_cases(args, files, run_settings(args), out, err)
        if files is None:
            return 1
    if not files:
        return 0

    from daftseg.inference.progress import Progress

    progress = Progress(len(files), out=out, bar=err)
    log = logging.getLogger("daftseg.inference")
    handler = _LineHandler(lambda line: progress.line(line, err))
    log.addHandler(handler)
    log.propagate = False
    try:
        if args.workers and args.workers > 1 and len(files) > 1:
            return _run_workers(args, files, output_dir, progress, err)
        return _run(args, files, output_dir, progress, err, process)
    finally:
        progress.close()
        log.removeHandler(handler)
        log.propagate = True


def _cache_dir(args: argparse.Namespace) -> str:
    return args.cache_dir if args.cache_dir is not None else (DOCKER_CACHE_DIR if args.indocker else LOCAL_CACHE_DIR)


class _Report:
    """Where one process's lines and finished cases go: above the progress bar, and the timing CSV.

    A worker process has ``workers.Relay`` instead, with the same two methods.
    """

    def __init__(self, progress: Progress, err: TextIO, csv: TextIO | None = None) -> None:
        self.progress, self.err, self.csv = progress, err, csv

    def line(self, text: str, error: bool = False) -> None:
        self.progress.line(text, self.err if error else None)

    def done(self, name: str, ok: bool, row: str | None = None) -> None:
        if ok and row is not None and self.csv is not None:
            self.csv.write(row)
            self.csv.flush()
        self.progress.advance()


def _segmenter(args: argparse.Namespace, report, files: list[Path], announce: bool = True) -> Segmenter | None:
    """The process's Segmenter, with the first case's model compiling in the background; None on error."""
    from daftseg.inference.segmenter import Segmenter

    options = InferenceOptions(args.zmax_inclusive, args.box_from_fullres, args.clip_to_box,
                               args.decode_batch, args.max_cached_slices, args.max_spilled_slices, args.spill_dir)
    try:
        segmenter = Segmenter(args.models_dir, _cache_dir(args) or None, args.threads, args.precision, options,
                              args.routing, args.max_loaded_models, fast=args.fast)
    except (OSError, ValueError) as e:
        report.line(f"error: {e}", True)
        return None
    if args.fast and announce:
        line, warnings = segmenter.fast_mode_report()
        report.line(line)
        for warning in warnings:
            report.line(f"warning: {warning}", True)
    # Compile the first case's model while its file is read (a fresh process per case is the
    # challenge's timing); the foreground call reports any error.
    segmenter.sessions.prefetch(segmenter.route(files[0].name, warn=False).model)
    return segmenter


def _run(args: argparse.Namespace, files: list[Path], output_dir: Path, progress: Progress,
         err: TextIO, process: _Process) -> int:
    report = _Report(progress, err)
    segmenter = _segmenter(args, report, files)
    if segmenter is None:
        return 1
    process.keep.append(segmenter)
    t_all = time.perf_counter()
    with _open_csv(args.timing_csv, err) as csv:
        report.csv = csv
        failed = _run_cases(segmenter, args, files, output_dir, report, process)
    _summary(progress, len(files), failed, output_dir, t_all)
    return 1 if failed else 0


def _summary(progress: Progress, n: int, failed: int, output_dir: Path, t0: float) -> None:
    progress.line(f"{n - failed} of {n} cases written to {output_dir}"
                  f"{f', {failed} failed' if failed else ''} in {time.perf_counter() - t0:.1f}s")


def _run_cases(segmenter: Segmenter, args: argparse.Namespace, files: list[Path], output_dir: Path,
               report, process: _Process) -> int:
    """Segment ``files`` in order; returns how many failed (each failure is one ``error:`` line)."""
    from daftseg.inference.npz_io import CaseError, read_case, write_segs

    failed = 0
    for path in files:
        t0 = time.perf_counter()
        try:
            case = read_case(path)
            result = segmenter.run(case)
            write_segs(output_dir / path.name, result.segs)
        except CaseError as e:
            failed += 1
            report.line(f"error: {path.name}: {e}", True)
            report.done(path.name, False)
        except Exception as e:  # noqa: BLE001 - one bad case must not stop the batch
            failed += 1
            report.line(f"error: {path.name}: {type(e).__name__}: {' '.join(str(e).split())[:300]}", True)
            report.done(path.name, False)
        else:
            seconds = time.perf_counter() - t0
            shape = "x".join(str(s) for s in case.imgs.shape)
            report.line(f"{path.name}  model={result.model}  shape={shape}  boxes={result.boxes}  "
                        f"slices={result.slices}  {seconds:.2f}s")
            if args.save_overlay:
                _save_overlays(Path(args.save_overlay), case, result, report)
            report.done(path.name, True, f"{path.name},{result.model},{result.boxes},{result.slices},{seconds:.4f}\n")
        process.end_startup()  # after the first case
    segmenter.sessions.join_prefetch()
    return failed


def _run_workers(args: argparse.Namespace, files: list[Path], output_dir: Path, progress: Progress,
                 err: TextIO) -> int:
    """``--workers K``: K processes over size-balanced shares of ``files`` (see ``workers``)."""
    import copy

    from daftseg.inference.shards import split_by_size
    from daftseg.inference.workers import WorkerJob, core_sets, default_threads, run_pool

    t_all = time.perf_counter()
    k = min(args.workers, len(files))
    threads = args.threads or default_threads(k)
    sizes = [file_size(p) for p in files]
    shares = split_by_size([p.name for p in files], sizes, k)
    cores = core_sets(k, threads)
    jobs = []
    for i, share in enumerate(shares):
        worker_args = copy.copy(args)
        worker_args.threads = threads
        jobs.append(WorkerJob(i, [str(files[j]) for j in share], (worker_args, i == 0), cores[i]))
        progress.line(f"worker {i}: {len(share)} cases, {sum(sizes[j] for j in share) / 2**20:.1f} MB, "
                      f"{threads} OpenVINO thread{'s' if threads > 1 else ''}"
                      f"{', cores ' + ','.join(map(str, cores[i])) if cores[i] else ''}")
    with _open_csv(args.timing_csv, err) as csv:
        result = run_pool(_worker, jobs, lambda text, error: progress.line(text, err if error else None),
                          progress.advance, name_of=lambda p: Path(p).name)
        if csv is not None:
            csv.writelines(sorted(result.rows))  # the order one process writes them in
    _summary(progress, len(files), len(result.failed), output_dir, t_all)
    return 1 if result.failed or any(code != 0 for code in result.exit_codes) else 0


def _worker(job, relay) -> int:
    """One ``--workers`` process: its share of the cases, models compiled once (``workers.run_pool``)."""
    args, announce = job.payload
    files = [Path(p) for p in job.items]
    with _startup_gc_paused() as end_startup:
        process = _Process(end_startup)
        log = logging.getLogger("daftseg.inference")
        log.addHandler(_LineHandler(lambda line: relay.line(line, True)))
        log.propagate = False
        segmenter = _segmenter(args, relay, files, announce)
        if segmenter is None:
            return 1
        process.keep.append(segmenter)
        return 1 if _run_cases(segmenter, args, files, Path(args.output_dir), relay, process) else 0


def _save_overlays(folder: Path, case: Case, result: CaseResult, report) -> None:
    """Overlays are a by-product: a failure is a warning, the case's segs are already written."""
    from daftseg.inference.overlay import save_overlays

    try:
        save_overlays(folder, case, result)
    except Exception as e:  # noqa: BLE001
        report.line(f"warning: {case.name}: overlay not written: {type(e).__name__}: {e}", True)


def _folder_clash(input_dir: Path, output_dir: Path) -> str | None:
    """Why ``output_dir`` is the input folder, holds it or lies inside it; None if it does none."""
    src, dst = input_dir.resolve(), output_dir.resolve()
    if src == dst or (output_dir.exists() and os.path.samefile(input_dir, output_dir)):
        return f"output folder {output_dir} is the input folder {input_dir}"
    if dst in src.parents:
        return f"output folder {output_dir} holds the input folder {input_dir}"
    if src in dst.parents:
        return f"output folder {output_dir} lies inside the input folder {input_dir}"
    return None


def _unwritable(folder: Path) -> str | None:
    """None if ``folder`` exists or can be created and accepts files, else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


@contextlib.contextmanager
def _open_csv(path: str | None, err: TextIO) -> Iterator[TextIO | None]:
    """The timing CSV with its header, or None (no path, or not writable: a warning).

    Rows go to a hidden temporary file that replaces ``path`` when the batch ends (daftseg.atomic):
    an interrupted run leaves the previous CSV or none, never half a table.
    """
    from daftseg.atomic import atomic_open

    with contextlib.ExitStack() as stack:
        f = None
        if path:
            try:
                f = stack.enter_context(atomic_open(path, "w"))
                f.write("case,model,boxes,slices,seconds\n")
            except OSError as e:
                print(f"warning: cannot write timing CSV {path}: {e.strerror or e}; going on without it", file=err)
        yield f


if __name__ == "__main__":
    sys.exit(main())
