"""The three back-ends: print the commands, run them here, or write (and submit) Slurm jobs."""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from daftseg.atomic import atomic_write_text
from daftseg.recipe.plan import (
    LATEST,
    REPO,
    Inputs,
    Stage,
    command,
    done_marker,
    inference_command,
    is_done,
    shell_line,
)


def _header(stage: Stage) -> list[str]:
    needs = f" (after {', '.join(stage.needs)})" if stage.needs else ""
    return [f"# [{stage.id}]{needs}", *(f"# note: {n}" for n in stage.notes)]


def dry_run(stages: list[Stage], inputs: Inputs) -> list[str]:
    """The commands still to run, one per line, as they would run now (completed stages as comments)."""
    lines = [f"cd {shlex.quote(str(REPO))}"]
    for stage in stages:
        if is_done(inputs, stage):
            lines.append(f"# [{stage.id}] done: {', '.join(map(str, stage.outputs))}")
            continue
        lines += [*_header(stage), shell_line(command(stage, inputs.python))]
    return lines


def _mark_done(inputs: Inputs, stage: Stage) -> None:
    missing = [str(p) for p in stage.outputs if not p.is_file()]
    if missing:
        raise RuntimeError(f"stage {stage.id} finished but did not write {', '.join(missing)}")
    marker = done_marker(inputs, stage)
    atomic_write_text(marker, shell_line(command(stage, inputs.python)) + "\n")


def run_local(stages: list[Stage], inputs: Inputs) -> int:
    """Run every stage not yet done, in order; stop at the first failure (later stages need it)."""
    for stage in stages:
        if is_done(inputs, stage):
            print(f"[{stage.id}] done, skipped", flush=True)
            continue
        argv = command(stage, inputs.python)
        print(f"[{stage.id}] {shell_line(argv)}", flush=True)
        rc = subprocess.run(argv, cwd=REPO, check=False).returncode
        if rc != 0:
            print(f"error: stage {stage.id} failed (exit status {rc}); fix the cause and run the same "
                  f"command again: completed stages are skipped, an interrupted training resumes",
                  file=sys.stderr, flush=True)
            return 1
        try:
            _mark_done(inputs, stage)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1
    print(f"all stages done: {inputs.out / 'models'}, {inputs.out / 'openvinomodels'}", flush=True)
    print(f"segment with them (from {REPO}): {shell_line(inference_command(inputs))}", flush=True)
    return 0


# ---- Slurm ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cluster:
    account: str = ""
    partition: str = ""
    time: str = ""
    cpus_per_task: int = 0
    gpus: int = 0  # GPUs per training job; 0: the recipe's --gpus
    extra: tuple[str, ...] = ()  # more "#SBATCH" options, e.g. "--mem=64G"


def slurm_script(stage: Stage, inputs: Inputs, cluster: Cluster) -> str:
    out = inputs.out
    opts = [f"--job-name=daft-{stage.id}", f"--output={out / 'slurm' / stage.id}-%j.out", "--nodes=1",
            "--ntasks=1"]
    opts += [f"--{k}={v}" for k, v in (("account", cluster.account), ("partition", cluster.partition),
                                       ("time", cluster.time), ("cpus-per-task", cluster.cpus_per_task)) if v]
    if stage.training:
        opts.append(f"--gres=gpu:{stage.nproc}")
    opts += list(cluster.extra)
    q = shlex.quote
    lines = ["#!/bin/bash", *(f"#SBATCH {o}" for o in opts), *_header(stage),
             "set -euo pipefail", f"cd {q(str(REPO))}"]
    if stage.training:
        assert stage.work_dir is not None
        lines += [
            f"work={q(str(stage.work_dir))}",
            "# continue the run if it has a checkpoint; a folder left without one (killed before its",
            "# first epoch ended) holds nothing to continue and is started anew",
            (f'if [ -d "$work" ] && [ ! -f "$work/{LATEST}" ] && '
             '[ -n "$(find "$work" -mindepth 1 -maxdepth 1 -print -quit)" ]; then'),
            "  resume=(-resume '' --overwrite)",
            "else",
            f'  resume=(-resume "$work/{LATEST}")',
            "fi",
            shell_line(command(stage, inputs.python, resume=[])) + ' "${resume[@]}"',
        ]
    else:
        lines.append(shell_line(command(stage, inputs.python)))
    for p in stage.outputs:
        lines.append(f'[ -f {q(str(p))} ] || {{ echo "error: stage {stage.id} did not write {p}" >&2; exit 1; }}')
    marker = done_marker(inputs, stage)
    lines += [f"mkdir -p {q(str(marker.parent))}", f"touch {q(str(marker))}", ""]
    return "\n".join(lines)


def write_slurm(stages: list[Stage], inputs: Inputs, cluster: Cluster) -> list[tuple[Stage, Path]]:
    """One sbatch script per stage still to run, plus ``submit.sh`` chaining them with afterok."""
    folder = inputs.out / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    todo = [s for s in stages if not is_done(inputs, s)]
    pending = {s.id for s in todo}
    written = []
    submit = ["#!/bin/bash", "# submits every stage still to run; each waits for the ones it needs",
              "set -euo pipefail"]
    for stage in todo:
        path = folder / f"{stage.id}.sbatch"
        atomic_write_text(path, slurm_script(stage, inputs, cluster))
        path.chmod(0o755)
        written.append((stage, path))
        deps = [_var(n) for n in stage.needs if n in pending]
        dep = f" --dependency=afterok:{':'.join(chr(34) + '${' + d + '}' + chr(34) for d in deps)}" if deps else ""
        submit.append(f"{_var(stage.id)}=$(sbatch --parsable{dep} {shlex.quote(str(path))})")
        submit.append(f'{_var(stage.id)}="${{{_var(stage.id)}%%;*}}"  # "id;cluster" -> id')
        submit.append(f'echo "{stage.id}: job ${{{_var(stage.id)}}}"')
    atomic_write_text(folder / "submit.sh", "\n".join(submit) + "\n")
    (folder / "submit.sh").chmod(0o755)
    return written


def _var(stage_id: str) -> str:
    return "job_" + "".join(c if c.isalnum() else "_" for c in stage_id)


def submit(scripts: list[tuple[Stage, Path]], sbatch: str = "sbatch") -> dict[str, str]:
    """``sbatch --parsable`` each script in order, with ``--dependency=afterok:`` on the jobs it needs."""
    jobs: dict[str, str] = {}
    for stage, path in scripts:
        deps = [jobs[n] for n in stage.needs if n in jobs]
        argv = [sbatch, "--parsable", *([f"--dependency=afterok:{':'.join(deps)}"] if deps else []), str(path)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{shell_line(argv)} failed (exit status {proc.returncode}): "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        jobs[stage.id] = proc.stdout.strip().split(";")[0]
        print(f"{stage.id}: job {jobs[stage.id]}", flush=True)
    return jobs


# ---- jobs that are not recipe stages, job arrays (cohort inference: PerfectMetaOpenVINO --slurm) -----

@dataclass
class Job:
    """A Slurm job given by its shell lines; ``array`` N > 0 makes it a job array of tasks 0..N-1,
    each of which finds its index in ``$SLURM_ARRAY_TASK_ID``. ``needs``: ids of jobs that must
    end successfully first (for an array: every task)."""

    id: str
    lines: list[str]
    needs: list[str] = field(default_factory=list)
    array: int = 0
    notes: list[str] = field(default_factory=list)


def cluster_options(cluster: Cluster) -> list[str]:
    """``#SBATCH`` options of the cluster settings that are set (without the ``#SBATCH`` prefix)."""
    opts = [f"--{k}={v}" for k, v in (("account", cluster.account), ("partition", cluster.partition),
                                      ("time", cluster.time), ("cpus-per-task", cluster.cpus_per_task)) if v]
    return opts + list(cluster.extra)


def job_script(job: Job, folder: Path, cluster: Cluster, cwd: Path = REPO) -> str:
    """The sbatch script of ``job``: logs in ``folder`` (``<id>-<array job>_<task>.out`` for arrays)."""
    log = f"{job.id}-%A_%a.out" if job.array else f"{job.id}-%j.out"
    opts = [f"--job-name=daftseg-{job.id}", f"--output={folder / log}", "--nodes=1", "--ntasks=1"]
    if job.array:
        opts.append(f"--array=0-{job.array - 1}")
    opts += cluster_options(cluster)
    return "\n".join(["#!/bin/bash", *(f"#SBATCH {o}" for o in opts), *_header(job),
                      "set -euo pipefail", f"cd {shlex.quote(str(cwd))}", *job.lines, ""])


def write_jobs(jobs: list[Job], folder: Path, cluster: Cluster, cwd: Path = REPO) -> list[tuple[Job, Path]]:
    """``<id>.sbatch`` per job in ``folder``, plus ``submit.sh`` submitting them in order with afterok."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    submit_sh = ["#!/bin/bash", "# submits every job; each waits for the ones it needs", "set -euo pipefail"]
    for job in jobs:
        path = folder / f"{job.id}.sbatch"
        atomic_write_text(path, job_script(job, folder, cluster, cwd))
        path.chmod(0o755)
        written.append((job, path))
        deps = [f'"${{{_var(n)}}}"' for n in job.needs]
        dep = f" --dependency=afterok:{':'.join(deps)}" if deps else ""
        submit_sh += [f"{_var(job.id)}=$(sbatch --parsable{dep} {shlex.quote(str(path))})",
                      f'{_var(job.id)}="${{{_var(job.id)}%%;*}}"  # "id;cluster" -> id',
                      f'echo "{job.id}: job ${{{_var(job.id)}}}"']
    atomic_write_text(folder / "submit.sh", "\n".join(submit_sh) + "\n")
    (folder / "submit.sh").chmod(0o755)
    return written
