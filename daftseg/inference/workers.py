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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import Any


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
    """A worker's side of its pipe: lines and finished cases go to the parent as they happen.

    A pipe, not a ``multiprocessing.Queue``: a send is written before it returns (a queue hands it
    to a feeder thread), so what a worker reported is not lost when the worker is killed after it.
    """

    def __init__(self, conn: Any, index: int) -> None:
        self._conn, self.index = conn, index

    def line(self, text: str, error: bool = False) -> None:
        self._conn.send(("line", text, error))

    def done(self, item: str, ok: bool, row: Any = None) -> None:
        self._conn.send(("done", item, ok, row))


def _bootstrap(target: Callable[[WorkerJob, Relay], int], job: WorkerJob, conn: Any) -> None:
    if job.cores:
        os.sched_setaffinity(0, job.cores)
    code = 1
    try:
        code = target(job, Relay(conn, job.index))
    finally:
        conn.send(("exit", code))
        conn.close()
    # skip the interpreter's teardown (releasing compiled models takes about 75 ms)
    os._exit(code)


@dataclass
class PoolResult:
    """What the parent saw: the rows workers sent with finished cases (failed ones too, where they sent
    one), the names that failed, and each worker's exit code."""

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
    ctx = mp.get_context("spawn")  # a fresh interpreter: no OpenVINO threads copied by fork
    result = PoolResult(exit_codes=[None] * len(jobs))
    pending = [{name_of(item) for item in job.items} for job in jobs]
    procs, conns = [], {}
    try:
        for i, job in enumerate(jobs):
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_bootstrap, args=(target, job, send), daemon=True)
            proc.start()
            send.close()  # the worker holds the only write end: its end is our EOF
            procs.append(proc)
            conns[recv] = i
        while conns:
            for conn in connection.wait(list(conns)):
                i = conns[conn]
                try:
                    msg = conn.recv()
                except EOFError:  # the worker ended; everything it sent has been read
                    del conns[conn]
                    conn.close()
                    procs[i].join()
                    if result.exit_codes[i] is None:
                        result.exit_codes[i] = procs[i].exitcode
                        why = f"ended (exit code {procs[i].exitcode})"
                    else:
                        why = "stopped"
                    for item in sorted(pending[i]):
                        on_line(f"error: {item}: worker {jobs[i].index} {why} before this case finished", True)
                        result.failed.append(item)
                        on_done()
                    continue
                if msg[0] == "line":
                    on_line(msg[1], msg[2])
                elif msg[0] == "done":
                    pending[i].discard(msg[1])
                    if not msg[2]:
                        result.failed.append(msg[1])
                    if msg[3] is not None:
                        result.rows.append(msg[3])
                    on_done()
                elif msg[0] == "exit":
                    result.exit_codes[i] = msg[1]
    finally:
        for proc in procs:  # interrupted (Ctrl-C): the others stop too
            if proc.is_alive() and conns:
                proc.terminate()
            proc.join()
    return result
