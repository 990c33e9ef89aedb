"""A recipe and the user's inputs -> the ordered stages, each a command with its outputs.

Run folder layout (``--out``)::

    work/<stage id>/       training run folders (checkpoints, config.json, train_log.csv)
    weights/               distilled-<id>.pth (modelmerge), general-<id>.pth (extract_evit)
    csv/                   per-model file lists of regex-selected DAFT runs
    models/<Name>.pth      the final weights, one per model
    onnxmodels/, openvinomodels/   the export
    routing.toml           the recipe's routing table, next to openvinomodels/ (the last stage)
    done/<stage id>        written when a stage finished and its outputs exist
    logs/, slurm/          the back-ends' files

Commands name the root scripts relative to the repository root and are run from there; every
other path is absolute. Each stage also names the files it reads that no stage writes (``reads``:
weights, file lists) and the file lists whose npz files it trains on (``data``), so that
``daftseg.recipe.checks`` can refuse a run whose inputs are missing before any stage starts.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from daftseg.inference.model_folder import (
    LITE_MEDSAM,
    ONNX,
    PROMPT_ENCODER,
    SHARED_PROMPT_ENCODERS,
    image_encoder_file,
)
from daftseg.recipe.spec import Recipe, RecipeError, RunSpec

REPO = Path(__file__).resolve().parents[2]
SHARED_PROMPT_ENCODER_ONNX = f"{PROMPT_ENCODER}.{ONNX}"  # export_onnx.py --shared_prompt_encoder
ROUTING_FILE = "routing.toml"
LATEST = "medsam_lite_latest.pth"  # daftseg.training.state.LATEST (not imported: that pulls in torch)
SCRIPTS = {"distill": "distill_fulldataset.py", "finetune": "finetune_npz_devit_fulldataset.py",
           "finetune3d": "finetune_npz_devit_fulldataset3D.py", "merge": "modelmerge.py",
           "extract": "extract_evit.py", "export": "export_onnx.py", "openvino": "onnx2openvino.py",
           "liteov": "liteov.py"}


@dataclass(frozen=True)
class Inputs:
    """What the user supplies; every path absolute."""

    data_root: Path
    csv_dir: Path  # the folder of the recipe's file lists
    l0: Path
    lite_medsam: Path
    out: Path
    gpus: int = 1
    device: str = "cuda"
    python: str = "python"
    train_args: tuple[str, ...] = ()
    csv_suffix: str = ""  # ".gz" for the shipped, compressed lists


@dataclass(frozen=True)
class DataList:
    """A file list a training stage reads its npz files from, and how it selects from it."""

    csv: Path
    subset: str = ""  # -data_subset prefixes
    regex: str = ""  # re.match on the basename (select_files)

    def describe(self) -> str:
        how = f", -data_subset {self.subset}" if self.subset else f", regex {self.regex}" if self.regex else ""
        return f"{self.csv.name}{how}"


@dataclass
class Stage:
    id: str
    argv: list[str]  # script (or -m module) and its arguments, without the interpreter
    needs: list[str]
    outputs: list[Path]
    work_dir: Path | None = None  # training stages: the run folder (for -resume)
    nproc: int = 1  # training processes (torchrun when > 1)
    notes: list[str] = field(default_factory=list)
    reads: list[tuple[str, Path]] = field(default_factory=list)  # (what, path) no stage writes
    data: list[DataList] = field(default_factory=list)  # training stages: the lists of their npz files

    @property
    def training(self) -> bool:
        return self.work_dir is not None


def largest_divisor_up_to(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


class Planner:
    def __init__(self, recipe: Recipe, inputs: Inputs) -> None:
        self.r, self.i = recipe, inputs
        self.stages: dict[str, Stage] = {}

    # ---- paths ---------------------------------------------------------------------------------

    def work(self, sid: str) -> Path:
        return self.i.out / "work" / sid

    def ckpt(self, sid: str) -> Path:
        return self.work(sid) / f"medsam_lite_{self.r.checkpoint}.pth"

    def csv(self, name: str) -> str:
        return str(self.i.csv_dir / f"{name}{self.i.csv_suffix}") if name else ""

    @staticmethod
    def lists_read(*csvs: str) -> list[tuple[str, Path]]:
        return [("file list", Path(c)) for c in csvs if c]

    # ---- stages --------------------------------------------------------------------------------

    def _add(self, stage: Stage) -> str:
        if stage.id not in self.stages:  # shared runs are planned once
            self.stages[stage.id] = stage
        return stage.id

    def _train(self, sid: str, script: str, run: RunSpec, batch: int, start: list[str], needs: list[str],
               datacsv: str, valcsv: str, subset: str, reads: list[tuple[str, Path]],
               data: list[DataList]) -> str:
        nproc = largest_divisor_up_to(batch, self.i.gpus)
        argv = [SCRIPTS[script], "-data_root", str(self.i.data_root), "-datacsv", datacsv]
        if subset:
            argv += ["-data_subset", subset]
        if valcsv:
            argv += ["-valcsv", valcsv, "-patience", str(self.r.patience)]
        argv += [*start, "-work_dir", str(self.work(sid)), "-num_epochs", str(run.epochs),
                 "-global_batch_size", str(batch), "-device", self.i.device]
        notes = []
        if nproc > 1:
            # the original normalised over the whole batch on one GPU (spec §5.7)
            argv.append("-sync_bn")
            notes.append(f"{nproc} processes with -sync_bn: BatchNorm statistics over the global batch {batch}, "
                         f"as the original's single GPU")
        argv += list(self.i.train_args)
        if nproc < self.i.gpus:
            notes.append(f"{nproc} process(es), not {self.i.gpus}: the global batch {batch} must split "
                         f"evenly over the processes")
        return self._add(Stage(sid, argv, needs, [self.ckpt(sid)], self.work(sid), nproc, notes, reads, data))

    def _lists(self, datacsv: str, valcsv: str, subset: str = "", regex: str = "") -> list[DataList]:
        return [DataList(Path(c), subset, regex) for c in (datacsv, valcsv) if c]

    def distill(self, rid: str) -> str:
        run = self.r.distill[rid]
        start = ["--nopretrain"] if run.nopretrain else ["-pretrained_checkpoint", str(self.i.l0)]
        start += ["-teacher_checkpoint", str(self.i.lite_medsam)]
        datacsv, valcsv = self.csv(run.datacsv), self.csv(run.valcsv)
        reads = [] if run.nopretrain else [("EfficientViT-SAM l0 weights (--l0)", self.i.l0)]
        reads += [lite_medsam_read(self.i.lite_medsam), *self.lists_read(datacsv, valcsv)]
        return self._train(f"distill-{rid}", "distill", run, self.r.distill_batch, start, [], datacsv, valcsv,
                           run.subset, reads, self._lists(datacsv, valcsv, run.subset))

    def merged(self, rid: str) -> tuple[str, Path]:
        need = self.distill(rid)
        out = self.i.out / "weights" / f"distilled-{rid}.pth"
        sid = self._add(Stage(f"merge-{rid}", [SCRIPTS["merge"], str(self.ckpt(need)), str(out),
                                               "--lite_medsam", str(self.i.lite_medsam)], [need], [out],
                              reads=[lite_medsam_read(self.i.lite_medsam)]))
        return sid, out

    def general(self, gid: str) -> str:
        run = self.r.general[gid]
        need, weights = self.merged(run.source)
        datacsv, valcsv = self.csv(run.datacsv), self.csv(run.valcsv)
        return self._train(f"general-{gid}", "finetune", run, self.r.finetune_batch,
                           ["-pretrained_checkpoint", str(weights)], [need], datacsv, valcsv, run.subset,
                           self.lists_read(datacsv, valcsv), self._lists(datacsv, valcsv, run.subset))

    def general_weights(self, gid: str) -> tuple[str, Path]:
        need = self.general(gid)
        out = self.i.out / "weights" / f"general-{gid}.pth"
        sid = self._add(Stage(f"extract-{gid}", [SCRIPTS["extract"], str(self.ckpt(need)), str(out)], [need], [out]))
        return sid, out

    def daft(self, name: str, gid: str, run: RunSpec) -> str:
        need, weights = self.general_weights(gid)
        needs = [need]
        datacsv, valcsv = self.csv(run.datacsv), self.csv(run.valcsv)
        # checked against the source lists: the selected ones are written by the select stage
        data, reads = self._lists(datacsv, valcsv, run.subset, run.regex), self.lists_read(datacsv, valcsv)
        if run.regex:
            outs = [self.i.out / "csv" / f"{name}.train.csv"]
            argv = ["-m", "daftseg.recipe.select_files", "--regex", run.regex, datacsv, str(outs[0])]
            if valcsv:
                outs.append(self.i.out / "csv" / f"{name}.val.csv")
                argv += [valcsv, str(outs[1])]
            needs.append(self._add(Stage(f"select-{name}", argv, [], outs, reads=reads)))
            datacsv, valcsv = str(outs[0]), (str(outs[1]) if valcsv else "")
            reads = []
        script = "finetune3d" if run.every_slice else "finetune"
        return self._train(f"daft-{name}", script, run, self.r.finetune_batch,
                           ["-pretrained_checkpoint", str(weights)], needs, datacsv, valcsv, run.subset, reads, data)

    def model(self, name: str) -> str | None:
        spec = next(m for m in self.r.models if m.name == name)
        out = self.i.out / "models" / f"{name}.pth"
        if spec.litemedsam:
            return None
        reads = []
        if spec.distill:
            need = self.distill(spec.distill)
            argv = [SCRIPTS["merge"], str(self.ckpt(need)), str(out), "--lite_medsam", str(self.i.lite_medsam)]
            reads = [lite_medsam_read(self.i.lite_medsam)]
        else:
            need = self.daft(name, spec.general, spec.daft) if spec.daft else self.general(spec.general)
            argv = [SCRIPTS["extract"], str(self.ckpt(need)), str(out)]
        return self._add(Stage(f"model-{name}", argv, [need], [out], reads=reads))

    def plan(self, names: list[str] | None = None) -> list[Stage]:
        known = [m.name for m in self.r.models]
        names = names or known
        unknown = [n for n in names if n not in known]
        if unknown:
            raise RecipeError(f"{self.r.path}: no model {', '.join(unknown)}; models: {', '.join(known)}")
        models = [n for n in names if self.model(n) is not None]
        lite = [n for n in names if n not in models]
        onnx, ov = self.i.out / "onnxmodels", self.i.out / "openvinomodels"
        needs = [f"model-{n}" for n in models]
        last = []
        if models:
            argv = [SCRIPTS["export"], "--models_dir", str(self.i.out / "models"), "--out_dir", str(onnx),
                    "--names", *models]
            onnx_out = [image_encoder_file(onnx, n, ONNX) for n in models]
            ov_out = [image_encoder_file(ov, n) for n in models]
            if self.r.shared_prompt_encoder:
                # 916bd4e: one prompt_encoder.onnx, kept from its 3D model (spec §11.2 step 9)
                argv.append("--shared_prompt_encoder")
                if self.r.pe_from in models:
                    argv += ["--pe_from", self.r.pe_from]
                onnx_out.append(onnx / SHARED_PROMPT_ENCODER_ONNX)
                ov_out.append(ov / SHARED_PROMPT_ENCODERS[1])
            self._add(Stage("export", argv, needs, onnx_out))
            last = [self._add(Stage("openvino", [SCRIPTS["openvino"], "--in_dir", str(onnx), "--out_dir", str(ov)],
                                    ["export"], ov_out))]
        if lite:
            # into openvinomodels directly (DAFT: liteov/ then `mv liteov/* openvinomodels/`)
            last = [self._add(Stage("liteov", [SCRIPTS["liteov"], "--checkpoint", str(self.i.lite_medsam),
                                               "--onnx_dir", str(self.i.out / "liteonnx"), "--ov_dir", str(ov)],
                                    last, [image_encoder_file(ov, LITE_MEDSAM)],
                                    reads=[lite_medsam_read(self.i.lite_medsam)]))]
        self._add(Stage("routing", ["-m", "daftseg.recipe.finish", "--routing", self.r.routing, "--models_dir",
                                    str(ov), "--out", str(routing_file(self.i))], last, [routing_file(self.i)]))
        return list(self.stages.values())


def lite_medsam_read(path: Path) -> tuple[str, Path]:
    return ("LiteMedSAM weights (--lite_medsam)", path)


def routing_file(inputs: Inputs) -> Path:
    """Where the last stage puts the recipe's routing table: next to ``openvinomodels/``."""
    return inputs.out / ROUTING_FILE


def inference_command(inputs: Inputs, images: str = "IMGS", segs: str = "SEGS") -> list[str]:
    """``PerfectMetaOpenVINO.py`` on the run's models with the run's routing table."""
    return [inputs.python, "PerfectMetaOpenVINO.py", "-i", images, "-o", segs, "-m",
            str(inputs.out / "openvinomodels"), "--routing", str(routing_file(inputs))]


def plan_stages(recipe: Recipe, inputs: Inputs, names: list[str] | None = None) -> list[Stage]:
    """Every stage the chosen models need (all models by default), dependencies first, shared once."""
    return Planner(recipe, inputs).plan(names)


# ---- state and commands ----------------------------------------------------------------------------

def done_marker(inputs: Inputs, stage: Stage) -> Path:
    return inputs.out / "done" / stage.id


def is_done(inputs: Inputs, stage: Stage) -> bool:
    return done_marker(inputs, stage).is_file() and all(p.is_file() for p in stage.outputs)


def resume_args(stage: Stage) -> list[str]:
    """Continue the stage's run if it has a checkpoint. A run folder left without one (killed
    before its first epoch ended) holds nothing to continue, so it is started anew."""
    assert stage.work_dir is not None
    latest = stage.work_dir / LATEST
    if not latest.is_file() and stage.work_dir.is_dir() and any(stage.work_dir.iterdir()):
        return ["-resume", "", "--overwrite"]
    return ["-resume", str(latest)]


def command(stage: Stage, python: str, resume: list[str] | None = None) -> list[str]:
    """The full argv of a stage; training stages get ``resume`` (default: from the folder's state)."""
    if not stage.training:
        return [python, *stage.argv]
    launcher = [python] if stage.nproc == 1 else [python, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc_per_node", str(stage.nproc)]
    return [*launcher, *stage.argv, *(resume_args(stage) if resume is None else resume)]


def shell_line(argv: list[str]) -> str:
    return shlex.join(argv)
