"""Cohorts: thousands of cases on a many-core workstation (``--workers``) or a Slurm cluster (``--slurm``).

The pieces ``PerfectMetaOpenVINO.py`` and ``daftseg-segment --manifest`` share: their command-line
options, the shard a run takes (``shards``) and resuming (``resume``). The Slurm jobs are written
by ``daftseg.cohort_slurm`` through the recipe's back-end, outside this package: the challenge
image carries ``daftseg/inference`` without the recipe.

Run as ``python -m daftseg.inference.cohort -i IMGS -o SEGS``, this module is the check job after
a ``--slurm`` job array: it exits 1 naming every case of IMGS without a complete output in SEGS.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from daftseg.inference.resume import RunSettings, case_complete
from daftseg.inference.shards import BALANCES, describe, split

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


def run_settings(args: argparse.Namespace) -> RunSettings:
    """The settings of a batch-script run that decide its outputs (``resume.RunSettings``)."""
    from daftseg.inference.options import resolve_precision
    from daftseg.inference.routing import DEFAULT_TABLE

    routing = str(Path(args.routing or DEFAULT_TABLE).resolve())
    options = {"zmax_inclusive": args.zmax_inclusive, "box_from_fullres": args.box_from_fullres,
               "clip_to_box": args.clip_to_box, "decode_batch": args.decode_batch}
    return RunSettings(str(Path(args.input_dir).resolve()), str(Path(args.models_dir).resolve()), routing,
                       resolve_precision(args.precision, args.fast), bool(args.fast), options)


def write_slurm(args: argparse.Namespace, parser: argparse.ArgumentParser, cases: list[Path], cache_dir: str,
                out: TextIO, err: TextIO) -> int:
    """``PerfectMetaOpenVINO.py --slurm``: the job array, written by ``daftseg.cohort_slurm`` through the
    recipe's Slurm back-end.

    That module and the recipe are not part of the challenge image (``daftseg/inference`` only:
    see .dockerignore), where there is no cluster to submit to either; it is looked up when asked
    for, and its absence is one error line.
    """
    import importlib

    try:
        writer = importlib.import_module("daftseg.cohort_slurm")
    except ModuleNotFoundError as e:
        print(f"error: --slurm needs a full daftseg checkout or package ({e.name} is not installed here)", file=err)
        return 1
    return writer.write_runner_jobs(args, parser, cases, cache_dir, out, err)


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
