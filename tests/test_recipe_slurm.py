"""The Slurm back-end without a cluster: the generated scripts pass shellcheck, and a fake ``sbatch``
on PATH (tests/slurm_support.py) runs each job as it is submitted, refusing one whose ``afterok``
dependencies have not finished successfully, so the whole chain runs on CPU on tiny data in
dependency order: a 93f1e55-shaped recipe, and a 916bd4e-shaped one (validation, shared prompt
encoder, its routing table) whose output ``PerfectMetaOpenVINO.py --routing`` then segments as the
last stage says."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from slurm_support import install_fake_sbatch, shellcheck
from training_support import make_data, write_csv

from daftseg.data.synthetic import main as synthetic_main
from daftseg.inference.routing import DEFAULT_TABLE, ROUTING_ENV
from daftseg.models import build_model
from daftseg.recipe.cli import main

REPO = Path(__file__).resolve().parents[1]

# two models sharing one distillation: Endoscopy is the modelmerge output, 3D a DAFT run on
# regex-selected files; named as in 93f1e55's routing table
TINY_RECIPE = """
name = "tiny"
[batch]
distill = 2
finetune = 2
[defaults]
datacsv = "train.csv"
[distill.d1]
epochs = 1
[general.g1]
distill = "d1"
epochs = 1
[[model]]
name = "Endoscopy"
distill = "d1"
[[model]]
name = "3D"
general = "g1"
daft = { epochs = 1, regex = "^CT_Synth_3d", every_slice = true }
"""

# 916bd4e's shape (spec §11.2): lists of absolute paths with validation, best checkpoints, a 3D DAFT
# model, one shared prompt encoder, 916bd4e's routing table (its fallback, general, is trained and
# used by tests/test_training_docs.py)
TINY_916BD4E = """
name = "tiny916"
[batch]
distill = 2
finetune = 2
[validation]
patience = 7
checkpoint = "best"
[lists]
dir = "datasplit"
[export]
routing = "916bd4e"
shared_prompt_encoder = true
pe_from = "3D"
[defaults]
datacsv = "train.csv"
valcsv = "val.csv"
[distill.d1]
epochs = 1
[general.g1]
distill = "d1"
epochs = 1
[[model]]
name = "3D"
general = "g1"
daft = { epochs = 1, regex = "^(CT|MR|PET)", every_slice = true }
"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    data_root, _ = make_data(root, n2d=2, n3d=1)
    torch.save({"state_dict": build_model("efficientvit_sam_l0").state_dict()}, root / "l0.pt")
    torch.save(build_model("litemedsam").state_dict(), root / "lite_medsam.pth")
    (root / "tiny.toml").write_text(TINY_RECIPE)
    bin_dir = root / "bin"
    install_fake_sbatch(bin_dir)
    args = [str(root / "tiny.toml"), "--data_root", str(data_root), "--csv_dir", str(root), "--out",
            str(root / "run"), "--l0", str(root / "l0.pt"), "--lite_medsam", str(root / "lite_medsam.pth"),
            "--device", "cpu", "--python", sys.executable,
            "--train_args=-num_workers 0 -max_steps 1", "--account", "proj", "--partition", "gpu",
            "--time", "01:00:00"]
    return root, args, bin_dir


def test_fake_sbatch_runs_the_chain_in_dependency_order(chain, monkeypatch, capsys):
    root, args, bin_dir = chain
    run = root / "run"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_STATE", str(root / "jobs.json"))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert main([*args, "--slurm", "--submit"]) == 0, capsys.readouterr().err
    jobs = json.loads((root / "jobs.json").read_text())
    order = [j["script"].removesuffix(".sbatch") for j in jobs]
    assert order == ["distill-d1", "model-Endoscopy", "merge-d1", "general-g1", "extract-g1", "select-3D",
                     "daft-3D", "model-3D", "export", "openvino", "routing"]
    by_name = {j["script"].removesuffix(".sbatch"): j for j in jobs}
    assert all(j["rc"] == 0 for j in jobs), [(j["script"], (run / "slurm" / (j["script"] + ".log")).read_text()[-2000:])
                                             for j in jobs if j["rc"]]
    assert by_name["daft-3D"]["deps"] == [by_name["extract-g1"]["id"], by_name["select-3D"]["id"]]
    assert by_name["export"]["deps"] == [by_name["model-Endoscopy"]["id"], by_name["model-3D"]["id"]]
    assert by_name["routing"]["deps"] == [by_name["openvino"]["id"]]
    assert sorted(p.name for p in (run / "done").iterdir()) == sorted(order)
    for name in ("Endoscopy", "3D"):
        build_model("efficientvit_sam_l0").load_state_dict(torch.load(run / "models" / f"{name}.pth",
                                                                      weights_only=True))
        assert (run / "openvinomodels" / f"{name}_mask_decoder.xml").is_file()
        assert (run / "openvinomodels" / f"{name}_prompt_encoder.xml").is_file()  # 93f1e55: one per model
    assert (run / "csv" / "3D.train.csv").read_text().splitlines() == ["filename", "CT_Synth_3d_000.npz"]
    assert (run / "routing.toml").read_bytes() == DEFAULT_TABLE.read_bytes()
    config = json.loads((run / "work" / "daft-3D" / "config.json").read_text())
    assert (config["global_batch"], config["per_process_batch"], config["world_size"]) == (2, 2, 1)

    # a second submission finds everything done and writes no job
    capsys.readouterr()
    assert main([*args, "--slurm"]) == 0
    assert "wrote 0 sbatch scripts" in capsys.readouterr().out
    assert main([*args, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("# [") and " done: " in line for line in lines) == len(order)


def test_generated_scripts_pass_shellcheck(chain, tmp_path):
    root, args, _ = chain
    args = [a if a != str(root / "run") else str(tmp_path / "run") for a in args]
    assert main([*args, "--slurm", "--gpus", "4"]) == 0
    folder = tmp_path / "run" / "slurm"
    scripts = sorted(folder.glob("*.sbatch"))
    assert len(scripts) == 11
    proc = subprocess.run([shellcheck(), "--shell=bash", *map(str, scripts), str(folder / "submit.sh")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
    text = (folder / "general-g1.sbatch").read_text()
    # 2 divides the global batch 2, 4 does not: 2 processes, 2 GPUs
    assert "#SBATCH --gres=gpu:2" in text and "--nproc_per_node 2" in text
    assert "#SBATCH --account=proj" in text and "#SBATCH --partition=gpu" in text
    assert "#SBATCH --time=01:00:00" in text
    assert "--gres" not in (folder / "export.sbatch").read_text()
    submit = (folder / "submit.sh").read_text()
    assert '--dependency=afterok:"${job_extract_g1}":"${job_select_3D}"' in submit
    assert "-sync_bn" in text  # 2 processes: BatchNorm synchronised over them


@pytest.fixture(scope="module")
def chain_916bd4e(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe916")
    data_root, _ = make_data(root, n2d=2, n3d=1)
    _, _ = make_data(root, n2d=1, n3d=1, name="val_names.csv", prefix="MR_Val")
    files = sorted(str(p) for p in data_root.glob("*.npz"))
    split = root / "datasplit"  # split_dataset.py's layout: column 'file', absolute paths
    split.mkdir()
    write_csv(split / "train.csv", [f for f in files if "_Val_" not in f], column="file")
    write_csv(split / "val.csv", [f for f in files if "_Val_" in f], column="file")
    torch.save({"state_dict": build_model("efficientvit_sam_l0").state_dict()}, root / "l0.pt")
    torch.save(build_model("litemedsam").state_dict(), root / "lite_medsam.pth")
    (root / "tiny916.toml").write_text(TINY_916BD4E)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    install_fake_sbatch(bin_dir)
    (bin_dir / "sbatch").chmod(0o755)
    args = [str(root / "tiny916.toml"), "--data_root", str(data_root), "--csv_dir", str(split), "--out",
            str(root / "run"), "--l0", str(root / "l0.pt"), "--lite_medsam", str(root / "lite_medsam.pth"),
            "--device", "cpu", "--python", sys.executable, "--train_args=-num_workers 0 -max_steps 1"]
    return root, args, bin_dir


def test_916bd4e_chain_runs_through_to_routed_inference(chain_916bd4e, monkeypatch, capsys):
    root, args, bin_dir = chain_916bd4e
    run = root / "run"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_STATE", str(root / "jobs.json"))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv(ROUTING_ENV, raising=False)
    assert main([*args, "--slurm", "--submit"]) == 0, capsys.readouterr().err
    jobs = json.loads((root / "jobs.json").read_text())
    order = [j["script"].removesuffix(".sbatch") for j in jobs]
    assert order == ["distill-d1", "merge-d1", "general-g1", "extract-g1", "select-3D", "daft-3D", "model-3D",
                     "export", "openvino", "routing"]
    logs = {name: (run / "slurm" / f"{name}.sbatch.log").read_text() for name in order}
    assert all(j["rc"] == 0 for j in jobs), {n: logs[n][-2000:] for n, j in zip(order, jobs) if j["rc"]}
    # validation on val.csv, the rate on the training loss, the best checkpoint carried on
    config = json.loads((run / "work" / "daft-3D" / "config.json").read_text())
    assert config["valcsv"] == str(run / "csv" / "3D.val.csv") and config["plateau_on"] == "train"
    assert "medsam_lite_best.pth" in (run / "slurm" / "model-3D.sbatch").read_text()
    # one shared prompt encoder (916bd4e's prompt_encoder.xml), none per model
    ov = run / "openvinomodels"
    assert (ov / "prompt_encoder.xml").is_file() and not list(ov.glob("*_prompt_encoder.xml"))
    assert (run / "routing.toml").read_text() == (DEFAULT_TABLE.parent / "modalities_916bd4e.toml").read_text()
    # the last stage says how to segment with these models; run exactly that
    said = next(line.strip() for line in logs["routing"].splitlines() if "PerfectMetaOpenVINO.py" in line)
    assert synthetic_main(["-o", str(root / "cases"), "--size", "48", "--max_slices", "4",
                           "--prefixes", "3DBox_CT"]) == 0
    command = [sys.executable if w == "python" else w for w in shlex.split(said)]
    command[command.index("IMGS")] = str(root / "cases" / "imgs")
    command[command.index("SEGS")] = str(root / "segs")
    proc = subprocess.run([*command, "--cache_dir", ""], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # 916bd4e's routing: CT to the joint 3D model (93f1e55's table would want a CT model)
    assert "3DBox_CT_0001.npz  model=3D " in proc.stdout
    assert [p.name for p in (root / "segs").glob("*.npz")] == ["3DBox_CT_0001.npz"]
