"""``--workers K``: K processes, each segmenting its share of a cohort, reporting to one parent.

Each worker is a fresh (spawned) interpreter that compiles its models once and runs its cases in
name order; it sends its lines and one message per finished case through a queue, and the parent
prints the lines above one progress bar for the whole cohort. A case that fails in a worker fails
alone, as in one process; a worker that dies (killed, out of memory) fails the cases it had not
finished, and the others go on.

Workers get disjoint sets of cores where they fit (``os.sched_setaffinity`` before OpenVINO is
imported): OpenVINO pins its threads to cores, and K processes that each pin to "all cores" would
all crowd onto the same ones.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

POLL_SECONDS = 0.2


def available_cores() -> list[int]:
    """The cores this process may run on (a Slurm allocation or taskset limits them)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def default_threads(workers: int, cores: int | None = None) -> int:
    """OpenVINO threads per worker: the cores shared out evenly, at least one."""
    return max(1, (cores or len(available_cores())) // max(1, workers))


def core_sets(workers: int, threads: int, cores: Sequence[int] | None = None) -> list[list[int] | None]:
    """Disjoint cores per worker when ``workers * threads`` fit, else no pinning (None each)."""
    cores = list(cores if cores is not None else available_cores())
    if workers * threads > len(cores):
        return [None] * workers
    return [cores[k * threads:(k + 1) * threads] for k in range(workers)]


@dataclass
class WorkerJob:
    """What one worker runs: ``items`` (picklable) with ``payload`` (picklable), on ``cores``."""

    index: int
    items: list[Any]
    payload: Any
    cores: list[int] | None = None


class Relay:
    """A worker's side of the queue: lines and finished cases go to the parent."""

    def __init__(self, q: Any, index: int) -> None:
        self._q, self.index = q, index

    def line(self, text: str, error: bool = False) -> None:
        self._q.put(("line", self.index, text, error))

    def done(self, item: str, ok: bool, row: Any = None) -> None:
        self._q.put(("done", self.index, item, ok, row))


def _bootstrap(target: Callable[[WorkerJob, Relay], int], job: WorkerJob, q: Any) -> None:
    if job.cores:
        os.sched_setaffinity(0, job.cores)
    code = 1
    try:
        code = target(job, Relay(q, job.index))
    finally:
        q.put(("exit", job.index, code))
        q.close()
        q.join_thread()  # every message sent before the process ends
    # skip the interpreter's teardown (releasing compiled models takes about 75 ms)
    os._exit(code)


@dataclass
class PoolResult:
    """What the parent saw: rows of finished cases, names that failed, and each worker's exit code."""

    rows: list[Any] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)


def run_pool(target: Callable[[WorkerJob, Relay], int], jobs: list[WorkerJob],
             on_line: Callable[[str, bool], None], on_done: Callable[[], None],
             name_of: Callable[[Any], str] = str) -> PoolResult:
    """Run ``target(job, relay)`` in one spawned process per job until all end; see the module doc.

    ``target`` must be a module-level function (it is imported by name in the new process).
    on_line(text, error) prints a worker's line; on_done() is called once per finished case,
    including the cases of a worker that died, which are reported as failed (``error:`` lines).
    """
    return _Pool(target, jobs, on_line, on_done, name_of).run()


class _Pool:
    def __init__(self, target, jobs, on_line, on_done, name_of) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no OpenVINO threads copied by fork
        self.q = ctx.Queue()
        self.jobs = jobs
        self.procs = [ctx.Process(target=_bootstrap, args=(target, job, self.q), daemon=True) for job in jobs]
        self.pending = {job.index: {name_of(item) for item in job.items} for job in jobs}
        self.exited: dict[int, int | None] = {}
        self.on_line, self.on_done = on_line, on_done
        self.result = PoolResult()

    def run(self) -> PoolResult:
        for p in self.procs:
            p.start()
        try:
            while len(self.exited) < len(self.jobs):
                try:
                    self._handle(self.q.get(timeout=POLL_SECONDS))
                except queue.Empty:
                    self._reap()
        finally:
            for p in self.procs:
                if p.is_alive() and len(self.exited) < len(self.jobs):  # interrupted: stop the others
                    p.terminate()
                p.join()
            self.q.close()
        for job in self.jobs:  # a worker that exited with cases unreported failed them
            self._fail_pending(job.index, "stopped")
        self.result.exit_codes = [self.exited.get(job.index, p.exitcode) for job, p in zip(self.jobs, self.procs,
                                                                                             strict=True)]
        return self.result

    def _handle(self, msg: tuple) -> None:
        kind, index = msg[0], msg[1]
        if kind == "line":
            self.on_line(msg[2], msg[3])
        elif kind == "done":
            self.pending[index].discard(msg[2])
            if not msg[3]:
                self.result.failed.append(msg[2])
            elif msg[4] is not None:
                self.result.rows.append(msg[4])
            self.on_done()
        elif kind == "exit":
            self.exited[index] = msg[2]

    def _reap(self) -> None:
        """Workers that died without saying so (killed, out of memory): their unfinished cases fail."""
        for job, p in zip(self.jobs, self.procs, strict=True):
            if job.index in self.exited or p.is_alive():
                continue
            deadline = time.monotonic() + 1.0  # what it sent before dying is still in the pipe
            while time.monotonic() < deadline and job.index not in self.exited:
                try:
                    self._handle(self.q.get(timeout=POLL_SECONDS))
                except queue.Empty:
                    break
            if job.index not in self.exited:
                self.exited[job.index] = p.exitcode
                self._fail_pending(job.index, f"ended (exit code {p.exitcode})")

    def _fail_pending(self, index: int, why: str) -> None:
        for item in sorted(self.pending[index]):
            self.on_line(f"error: {item}: worker {index} {why} before this case finished", True)
            self.result.failed.append(item)
            self.on_done()
        self.pending[index].clear()
