"""The Slurm back-end without a cluster: the generated scripts pass shellcheck, and a fake ``sbatch``
on PATH (tests/slurm_support.py) runs each job as it is submitted, refusing one whose ``afterok``
dependencies have not finished successfully, so the whole chain runs on CPU on tiny data in
dependency order."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from slurm_support import install_fake_sbatch, shellcheck
from training_support import make_data

from daftseg.models import build_model
from daftseg.recipe.cli import main

# two models sharing one distillation: A is the modelmerge output, B a DAFT run on regex-selected files
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
name = "A"
distill = "d1"
[[model]]
name = "B"
general = "g1"
daft = { epochs = 1, regex = "^CT_Synth_3d", every_slice = true }
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
    assert order == ["distill-d1", "model-A", "merge-d1", "general-g1", "extract-g1", "select-B", "daft-B",
                     "model-B", "export", "openvino"]
    by_name = {j["script"].removesuffix(".sbatch"): j for j in jobs}
    assert all(j["rc"] == 0 for j in jobs), [(j["script"], (run / "slurm" / (j["script"] + ".log")).read_text()[-2000:])
                                             for j in jobs if j["rc"]]
    assert by_name["daft-B"]["deps"] == [by_name["extract-g1"]["id"], by_name["select-B"]["id"]]
    assert by_name["export"]["deps"] == [by_name["model-A"]["id"], by_name["model-B"]["id"]]
    assert sorted(p.name for p in (run / "done").iterdir()) == sorted(order)
    for name in ("A", "B"):
        build_model("efficientvit_sam_l0").load_state_dict(torch.load(run / "models" / f"{name}.pth",
                                                                      weights_only=True))
        assert (run / "openvinomodels" / f"{name}_mask_decoder.xml").is_file()
    assert (run / "csv" / "B.train.csv").read_text().splitlines() == ["filename", "CT_Synth_3d_000.npz"]
    config = json.loads((run / "work" / "daft-B" / "config.json").read_text())
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
    assert len(scripts) == 10
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
    assert '--dependency=afterok:"${job_extract_g1}":"${job_select_B}"' in submit
