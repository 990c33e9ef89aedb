"""``--slurm N`` of ``PerfectMetaOpenVINO.py`` and ``daftseg-segment --manifest``: a job array and a check job.

Written by the recipe's Slurm back-end (``daftseg.recipe.backends``: ``Job``, ``write_jobs``,
``submit``) with the recipe's cluster options:

    OUTPUT/slurm/segment.sbatch   a job array, task K running shard K/N (--balance size) into OUTPUT
    OUTPUT/slurm/check.sbatch     after every task succeeded: every case has a complete output
                                  (python -m daftseg.inference.cohort); with --gts,
                                  compute_metrics.py -> OUTPUT/slurm/metrics.csv
    OUTPUT/slurm/submit.sh        submits both (what --submit does)

A task runs the command that wrote it with its own ``--shard``: the interpreter, the checkout and
every path absolute (a shared file system), the options that change outputs passed on.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from daftseg.inference.cohort import COHORT_KEYS
from daftseg.manifest import ROW_OPTIONS, slurm_dir
from daftseg.recipe.backends import Cluster, Job, submit, write_jobs
from daftseg.recipe.plan import REPO, shell_line
from daftseg.recipe.spec import RecipeError

TASK_ID = "${SLURM_ARRAY_TASK_ID}"


def passthrough_argv(args: argparse.Namespace, parser: argparse.ArgumentParser, drop: Iterable[str],
                     paths: Iterable[str], always: Iterable[str] = ()) -> list[str]:
    """The options of ``args`` that differ from their defaults (and ``always``), as a command line
    for a task that runs elsewhere: ``paths`` made absolute, ``drop`` left out."""
    drop, paths, always = set(drop) | {"help"}, set(paths), set(always)
    argv: list[str] = []
    for action in parser._actions:  # argparse keeps no public list of its options
        if not action.option_strings or action.dest in drop:
            continue
        value = getattr(args, action.dest)
        if value is None or (value == action.default and action.dest not in always):
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, argparse._StoreTrueAction):
            argv += [flag] if value else []
            continue
        words = [str(Path(str(v)).resolve()) if action.dest in paths and str(v) else str(v)
                 for v in (value if isinstance(value, list) else [value])]
        if isinstance(action, argparse._AppendAction):  # --box A --box B
            argv += [w for word in words for w in (flag, word)]
        else:  # one value, or nargs: the flag once before its values
            argv += [flag, *words]
    return argv


def threads_per_task(args: argparse.Namespace) -> list[str]:
    """``--threads C`` for a task of ``--cpus_per_task C`` that chose no threads nor workers itself:
    the task's allocation, whatever OpenVINO would make of the node's cores."""
    if args.threads or args.workers or not args.cpus_per_task:
        return []
    return ["--threads", str(args.cpus_per_task)]


def cluster_from_args(args: argparse.Namespace) -> Cluster:
    """The recipe's ``Cluster`` from --cluster TOML and the flags (``daftseg.recipe.cli``)."""
    from daftseg.recipe.cli import _cluster

    return _cluster(args)


def per_task(path: str) -> str:
    """A shell word for ``path`` with the task index before its suffix (``timing.csv`` -> ``timing-3.csv``)."""
    p = Path(path).resolve()
    return f'{shlex.quote(str(p.with_suffix("")) + "-")}"{TASK_ID}"{shlex.quote(p.suffix)}' if p.suffix else \
        f'{shlex.quote(str(p) + "-")}"{TASK_ID}"'


def write_array(folder: Path, n: int, task_line: str, check_lines: list[str], args: argparse.Namespace,
                out: TextIO, err: TextIO, what: str = "cases") -> int:
    """Write (and with ``--submit`` submit) the job array and the check job; 0 on success."""
    try:
        cluster = cluster_from_args(args)
    except (RecipeError, OSError, ValueError) as e:
        print(f"error: {e}", file=err)
        return 1
    note = (f"task K of {n} runs shard K/{n} (--balance size); {what} with complete outputs are skipped, "
            "so the same submission continues a killed run")
    jobs = [Job("segment", [task_line], array=n, notes=[note]),
            Job("check", check_lines, needs=["segment"])]
    try:
        written = write_jobs(jobs, folder, cluster)
    except OSError as e:
        print(f"error: cannot write the Slurm scripts into {folder}: {e}", file=err)
        return 1
    print(f"wrote {folder / 'segment.sbatch'} (job array of {n} tasks), {folder / 'check.sbatch'} (after them) "
          f"and {folder / 'submit.sh'}; logs go to {folder}", file=out, flush=True)
    if args.submit:
        try:
            submit(written)
        except (RuntimeError, OSError) as e:
            print(f"error: {e}", file=err)
            return 1
    return 0


RUNNER_DROP = {*COHORT_KEYS, "overwrite", "timing_csv", "cache_dir", "indocker", "lite_medsam_checkpoint_path",
               "device", "png_save_dir", "nopandas"}
RUNNER_PATHS = {"input_dir", "output_dir", "models_dir", "routing", "save_overlay", "spill_dir"}


def write_runner_jobs(args: argparse.Namespace, parser: argparse.ArgumentParser, cases: list[Path],
                      cache_dir: str, out: TextIO, err: TextIO) -> int:
    """``PerfectMetaOpenVINO.py --slurm N``: the array over ``cases`` and the check job (module doc)."""
    n = min(args.slurm, len(cases))
    if n < args.slurm:
        print(f"note: {len(cases)} cases: {n} tasks, not {args.slurm}", file=out)
    python = sys.executable
    inp, output = Path(args.input_dir).resolve(), Path(args.output_dir).resolve()
    folder = output / "slurm"
    task = [python, "PerfectMetaOpenVINO.py",
            *passthrough_argv(args, parser, RUNNER_DROP, RUNNER_PATHS, always=("input_dir", "output_dir", "models_dir")),
            "--cache_dir", str(Path(cache_dir).resolve()) if cache_dir else "", *threads_per_task(args)]
    if args.overwrite:
        task.append("--overwrite")
    line = shell_line(task) + f' --shard "{TASK_ID}/{n}" --balance size'
    if args.timing_csv:
        line += f" --timing_csv {per_task(args.timing_csv)}"
    check = [shell_line([python, "-m", "daftseg.inference.cohort", "-i", str(inp), "-o", str(output)])]
    if args.gts:
        workers = str(max(1, args.cpus_per_task or 1))
        check.append(shell_line([python, str(REPO / "evaluation" / "compute_metrics.py"), "-s", str(output),
                                 "-g", str(Path(args.gts).resolve()), "-csv_dir", str(folder / "metrics.csv"),
                                 "-num_workers", workers, "--no-progress"]))
    return write_array(folder, n, line, check, args, out, err)


MANIFEST_DROP = {"manifest", "summary", *COHORT_KEYS, "cache_dir", *ROW_OPTIONS}
MANIFEST_PATHS = {"models_dir", "routing"}


def write_manifest_jobs(args: argparse.Namespace, parser: argparse.ArgumentParser, rows: list) -> int:
    """``daftseg-segment --manifest --slurm N``: a job array over the manifest's rows, and the check job
    (``python -m daftseg.manifest``), in ``<manifest>_slurm/`` next to the manifest."""
    from daftseg.inference.runner import LOCAL_CACHE_DIR

    n = min(args.slurm, len(rows))
    folder = slurm_dir(args.manifest)
    manifest = str(args.manifest.resolve())
    cache = args.cache_dir if args.cache_dir is not None else LOCAL_CACHE_DIR
    task = [sys.executable, "-m", "daftseg.segment", "--manifest", manifest,
            *passthrough_argv(args, parser, MANIFEST_DROP, MANIFEST_PATHS, always=("models_dir",)),
            "--cache_dir", str(Path(cache).resolve()) if cache else "", *threads_per_task(args)]
    line = (shell_line(task) + f' --shard "{TASK_ID}/{n}" --balance size --summary '
            f'{shell_line([str(folder / "summary-")])}"{TASK_ID}".csv')
    check = [shell_line([sys.executable, "-m", "daftseg.manifest", manifest, "--slurm_dir", str(folder)])]
    return write_array(folder, n, line, check, args, sys.stdout, sys.stderr, "rows")
