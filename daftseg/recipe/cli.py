"""``python -m daftseg.recipe RECIPE --data_root ... --out RUN_DIR (--dry-run | --local | --slurm)``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tomllib
from pathlib import Path

from daftseg.atomic import atomic_write_text
from daftseg.recipe.backends import Cluster, dry_run, run_local, submit, write_slurm
from daftseg.recipe.checks import apply_skip_missing, check_inputs
from daftseg.recipe.plan import REPO, SCRIPTS, Inputs, inference_command, plan_stages
from daftseg.recipe.shipped_lists import SPLIT_DIR
from daftseg.recipe.spec import Recipe, RecipeError, load_recipe

RUN_FILE = "recipe_run.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m daftseg.recipe",
        description="Train DAFT's models from a recipe file: distillation -> modelmerge -> general "
                    "fine-tuning -> extract_evit -> DAFT -> extract_evit -> models/<Name>.pth -> ONNX -> "
                    "OpenVINO. Runs shared by several models are trained once; a completed stage is "
                    "skipped and an interrupted training resumes from its latest checkpoint, so the same "
                    "command continues a run.")
    p.add_argument("recipe", help="recipe file, or the name of a shipped one: 93f1e55 (the challenge "
                                  "submission, spec §5.6) or 916bd4e (70 epochs with validation, §11.2)")
    p.add_argument("--data_root", required=True, help="folder of the flat training npz files")
    p.add_argument("--out", required=True, help="run folder: work/, weights/, models/, onnxmodels/, "
                                                "openvinomodels/, done/ (reused to continue a run)")
    p.add_argument("--csv_dir", default=None,
                   help="folder of the recipe's CSVs (fulldataset.csv, train.csv, val.csv). Default: the recipe's "
                        "own: 93f1e55 uses the original's lists shipped with the package (fulldataset.csv "
                        "reconstructed as train.csv + val.csv), 916bd4e datasplit/ (split_dataset.py's output)")
    p.add_argument("--l0", default="l0.pt", help="EfficientViT-SAM l0 weights that initialise the "
                                                 "distillation student (default: l0.pt)")
    p.add_argument("--lite_medsam", default="work_dir/LiteMedSAM/lite_medsam.pth",
                   help="LiteMedSAM weights: teacher, prompt encoder and decoder source, US model "
                        "(default: work_dir/LiteMedSAM/lite_medsam.pth)")
    p.add_argument("--models", nargs="+", metavar="NAME", help="only these models (default: all)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", dest="dry_run", action="store_true",
                      help="check the inputs (each missing one is listed; exit status 1) and print the commands "
                           "still to run, one per line (run them from the repository root)")
    mode.add_argument("--local", action="store_true", help="run the stages here, one after another")
    mode.add_argument("--slurm", action="store_true",
                      help="write one sbatch script per stage to OUT/slurm/ and OUT/slurm/submit.sh, which "
                           "chains them with --dependency=afterok")
    p.add_argument("--submit", action="store_true", help="with --slurm: submit the jobs now with sbatch")
    p.add_argument("--gpus", type=int, default=1,
                   help="GPUs per training stage (torchrun when > 1, with -sync_bn so that BatchNorm sees the "
                        "whole batch as on the original's one GPU). A stage uses the largest number up to this "
                        "that divides its global batch (7 for distillation: 1 or 7) (default: 1)")
    p.add_argument("--device", default="cuda", help="-device of the training stages (default: cuda)")
    p.add_argument("--python", default="python", help="interpreter in the commands (default: python; "
                                                       "--local uses this one's when left at the default)")
    p.add_argument("--train_args", default="",
                   help="more flags for every training stage, as one string, e.g. "
                        "--train_args='-num_workers 8 -cache_dir cache256 --amp bf16'")
    s = p.add_argument_group("Slurm (flags override --cluster)")
    s.add_argument("--cluster", help="TOML with account, partition, time, cpus_per_task, gpus, extra (a list "
                                     "of further #SBATCH options)")
    s.add_argument("--account", help="#SBATCH --account")
    s.add_argument("--partition", help="#SBATCH --partition")
    s.add_argument("--time", help="#SBATCH --time per job, e.g. 24:00:00")
    s.add_argument("--cpus_per_task", type=int, help="#SBATCH --cpus-per-task")
    return p


def _cluster(args: argparse.Namespace) -> Cluster:
    data: dict = {}
    if args.cluster:
        data = tomllib.loads(Path(args.cluster).read_text())
        unknown = set(data) - {"account", "partition", "time", "cpus_per_task", "gpus", "extra"}
        if unknown:
            raise RecipeError(f"{args.cluster}: unknown keys {sorted(unknown)}")
    for key in ("account", "partition", "time", "cpus_per_task"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    return Cluster(account=data.get("account", ""), partition=data.get("partition", ""),
                   time=str(data.get("time", "")), cpus_per_task=int(data.get("cpus_per_task", 0)),
                   gpus=int(data.get("gpus", 0)), extra=tuple(data.get("extra", ())))


def _check_run_folder(out: Path, identity: dict, write: bool = True) -> None:
    """A run folder belongs to one recipe and one set of inputs: continuing it with others would mix runs.
    ``write``: record this run's identity in a new folder (not before its inputs have been checked)."""
    path = out / RUN_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        changed = [k for k in identity if saved.get(k) != identity[k]]
        if changed:
            raise RecipeError(f"{out} holds a run of another recipe or inputs ({', '.join(changed)} differ, "
                              f"see {path}); choose another --out")
    elif write:
        atomic_write_text(path, json.dumps(identity, indent=2) + "\n")


def lists_location(recipe: Recipe, csv_dir: str | None) -> tuple[Path, str]:
    """(folder, suffix) the recipe's list names are looked up in: ``--csv_dir``, else the recipe's own."""
    if csv_dir is not None:
        return Path(csv_dir).resolve(), ""
    if recipe.lists_shipped:
        return SPLIT_DIR, ".gz"
    return Path(recipe.lists_dir or ".").resolve(), ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.submit and not args.slurm:
            raise RecipeError("--submit goes with --slurm")
        if args.gpus < 1:
            raise RecipeError(f"--gpus must be at least 1, got {args.gpus}")
        if args.local and args.python == "python":
            args.python = sys.executable
        missing = [s for s in SCRIPTS.values() if not (REPO / s).is_file()]
        if missing:
            raise RecipeError(f"{REPO} lacks {', '.join(missing)}: run the recipe from a checkout of daftseg")
        recipe = load_recipe(args.recipe)
        cluster = _cluster(args)
        gpus = cluster.gpus if args.slurm and cluster.gpus and args.gpus == 1 else args.gpus
        csv_dir, csv_suffix = lists_location(recipe, args.csv_dir)
        inputs = Inputs(data_root=Path(args.data_root).resolve(), csv_dir=csv_dir,
                        l0=Path(args.l0).resolve(), lite_medsam=Path(args.lite_medsam).resolve(),
                        out=Path(args.out).resolve(), gpus=gpus, device=args.device, python=args.python,
                        train_args=tuple(shlex.split(args.train_args)), csv_suffix=csv_suffix)
        stages = plan_stages(recipe, inputs, args.models)
        identity = {"recipe": str(recipe.path), "data_root": str(inputs.data_root),
                    "csv_dir": str(inputs.csv_dir), "l0": str(inputs.l0), "lite_medsam": str(inputs.lite_medsam)}
        if not args.dry_run:
            _check_run_folder(inputs.out, identity, write=False)
        report = check_inputs(stages, inputs)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        if report.errors:
            raise RecipeError(f"recipe {recipe.name} cannot start; missing:\n  " + "\n  ".join(report.errors))
        apply_skip_missing(stages, report)
        if args.dry_run:
            print(f"# recipe {recipe.name} ({recipe.path}): {len(stages)} stages, file lists from {csv_dir}",
                  flush=True)
            print("\n".join(dry_run(stages, inputs)))
            print(f"# then segment with the run's models and routing table:\n# {shlex.join(inference_command(inputs))}")
            return 0
        _check_run_folder(inputs.out, identity)
        if args.local:
            return run_local(stages, inputs)
        scripts = write_slurm(stages, inputs, cluster)
        print(f"wrote {len(scripts)} sbatch scripts and {inputs.out / 'slurm' / 'submit.sh'}", flush=True)
        if args.submit:
            submit(scripts)
        return 0
    except (RecipeError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
