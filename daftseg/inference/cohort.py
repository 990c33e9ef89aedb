"""Cohorts: thousands of cases on a many-core workstation (``--workers``) or a Slurm cluster (``--slurm``).

The pieces ``PerfectMetaOpenVINO.py`` and ``daftseg-segment --manifest`` share: their command-line
options, the shard a run takes (``shards``), resuming (``resume``), and the Slurm jobs, written by
the recipe's back-end (``daftseg.recipe.backends``):

    OUTPUT/slurm/segment.sbatch   a job array, task K running shard K/N (--balance size) into OUTPUT
    OUTPUT/slurm/check.sbatch     after every task succeeded: every case has a complete output;
                                  with --gts, compute_metrics.py -> OUTPUT/slurm/metrics.csv
    OUTPUT/slurm/submit.sh        submits both (what --submit does)

Run as ``python -m daftseg.inference.cohort -i IMGS -o SEGS``, this module is the check job: it
exits 1 naming every case of IMGS without a complete output in SEGS.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from daftseg.inference.resume import RunSettings, case_complete
from daftseg.inference.shards import BALANCES, describe, split

TASK_ID = "${SLURM_ARRAY_TASK_ID}"
CLUSTER_KEYS = ("cluster", "account", "partition", "time", "cpus_per_task")
# not passed on to a task: its own shard replaces them (--workers is: processes per task)
COHORT_KEYS = ("shard", "balance", "slurm", "submit", "gts", *CLUSTER_KEYS)


class CohortError(ValueError):
    """Cohort options that do not go together; the message is one line."""


def add_cohort_arguments(p: argparse.ArgumentParser, what: str = "cases", gts: bool = True,
                         overwrite: bool = True) -> None:
    """``--balance --workers [--overwrite] --slurm --submit [--gts]`` and the Slurm cluster options
    (``overwrite=False`` where the command has its own ``--overwrite``)."""
    c = p.add_argument_group(
        "cohorts (a workstation's cores, a Slurm cluster; with --shard, --workers or --slurm a run resumes: "
        f"{what} whose outputs are complete are skipped)")
    c.add_argument("--balance", choices=BALANCES, default="name",
                   help="how --shard splits: 'name' (default) every N-th of the sorted list; 'size' largest "
                        "file first to the lightest shard (one 3D case costs as much as a hundred 2D ones)")
    c.add_argument("--workers", type=int, default=None, metavar="K",
                   help=f"K processes, each on a size-balanced share of the {what}, each compiling its models "
                        "once, with --threads (default: cores // K); one progress bar; outputs as one process")
    if overwrite:
        c.add_argument("--overwrite", action="store_true",
                       help=f"with --shard/--workers/--slurm: run every {what[:-1]} again, replacing complete outputs")
    c.add_argument("--slurm", type=int, default=None, metavar="N",
                   help="write a Slurm job array of N tasks (each its --shard K/N --balance size) and a job "
                        "that checks every output after them, to OUTPUT/slurm/ (the manifest's <name>_slurm/ with "
                        "--manifest; see --submit)")
    c.add_argument("--submit", action="store_true", help="with --slurm: submit the jobs now with sbatch")
    if gts:
        c.add_argument("--gts", default=None, metavar="DIR",
                       help="with --slurm: ground truth; the check job then runs evaluation/compute_metrics.py "
                            "into OUTPUT/slurm/metrics.csv")
    s = p.add_argument_group("Slurm (as python -m daftseg.recipe; flags override --cluster)")
    s.add_argument("--cluster", help="TOML with account, partition, time, cpus_per_task, extra (a list of "
                                     "further #SBATCH options)")
    s.add_argument("--account", help="#SBATCH --account")
    s.add_argument("--partition", help="#SBATCH --partition")
    s.add_argument("--time", help="#SBATCH --time per task, e.g. 04:00:00")
    s.add_argument("--cpus_per_task", type=int, help="#SBATCH --cpus-per-task")


def check_cohort_arguments(args: argparse.Namespace) -> None:
    """Raise ``CohortError`` for cohort options that make no sense together."""
    if args.workers is not None and args.workers < 1:
        raise CohortError(f"--workers must be at least 1, got {args.workers}")
    if args.slurm is not None and args.slurm < 1:
        raise CohortError(f"--slurm must be at least 1, got {args.slurm}")
    if args.slurm and args.shard:
        raise CohortError("--slurm gives each task its own --shard; leave --shard out")
    alone = [f"--{k}" for k in ("submit", "gts", *CLUSTER_KEYS) if getattr(args, k, None) not in (None, False)]
    if alone and not args.slurm:
        raise CohortError(f"{', '.join(alone)} go{'es' if len(alone) == 1 else ''} with --slurm")
    if getattr(args, "gts", None) and not Path(args.gts).is_dir():
        raise CohortError(f"--gts {args.gts}: no such folder")


def is_cohort(args: argparse.Namespace) -> bool:
    """A cohort run resumes (and remembers its settings); the plain command does as DAFT's script."""
    return bool(args.shard or args.workers or args.slurm)


def select_shard(names: Sequence[str], sizes: Sequence[int], shard: tuple[int, int], balance: str,
                 out: TextIO) -> list[int]:
    """Indices of shard ``shard`` = (K, N) of the items (in name order), printed as one line."""
    k, n = shard
    chosen = split(names, sizes, n, balance)[k]
    print(describe(k, n, balance, names, sizes, chosen), file=out, flush=True)
    return chosen


def file_size(path: Path) -> int:
    """Bytes of a file, or of the files of a folder (a DICOM series); 0 if it is missing (the item
    still gets a shard, and fails there with its own message)."""
    try:
        if path.is_dir():
            return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def resume_cases(args: argparse.Namespace, files: list[Path], settings: RunSettings, out: TextIO,
                 err: TextIO) -> list[Path] | None:
    """The cases still to run (all with ``--overwrite``); None if the folder holds another run's outputs."""
    output_dir = Path(args.output_dir)
    if not args.overwrite:
        why = settings.mismatch(output_dir)
        if why:
            print(f"error: output folder {output_dir} holds outputs of a run with other settings ({why}); "
                  "pass --overwrite to replace them, or choose another output folder", file=err)
            return None
    settings.save(output_dir)
    if args.overwrite:
        return files
    todo = [p for p in files if not case_complete(p, output_dir)]
    if len(todo) < len(files):
        print(f"skipped {len(files) - len(todo)} of {len(files)} cases: their outputs in {output_dir} are "
              "complete (--overwrite runs them again)", file=out, flush=True)
    return todo


# ---- Slurm ---------------------------------------------------------------------------------------

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


def cluster_from_args(args: argparse.Namespace):
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
    from daftseg.recipe.backends import Job, submit, write_jobs
    from daftseg.recipe.spec import RecipeError

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
    from daftseg.recipe.plan import REPO, shell_line

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


# ---- the check job -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daftseg.inference.cohort",
                                description="Check that every *.npz case of a folder has a complete output "
                                            "(the job that runs after a --slurm job array).")
    p.add_argument("-i", "--input_dir", required=True, help="folder of *.npz cases")
    p.add_argument("-o", "--output_dir", required=True, help="folder of the segs files")
    args = p.parse_args(argv)
    cases = sorted(c for c in Path(args.input_dir).glob("*.npz") if not c.name.startswith("."))
    missing = [c.name for c in cases if not case_complete(c, args.output_dir)]
    for name in missing:
        print(f"error: {name}: no complete output in {args.output_dir}", file=sys.stderr)
    print(f"{len(cases) - len(missing)} of {len(cases)} cases of {args.input_dir} have a complete output in "
          f"{args.output_dir}", flush=True)
    return 1 if missing or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
