"""Every command block of docs/training.md runs, in order, in a temporary folder laid out as the page
assumes (``train_npz/`` of npz files named as in the shipped 93f1e55 lists, ``l0.pt``,
``work_dir/LiteMedSAM/lite_medsam.pth``, ``data/`` as 916bd4e's download unzips, ``test_demo/imgs``,
the root scripts), on tiny synthetic data, so the page cannot drift from the code. The README's
training block must be the page's first block.

Each command runs as printed except for these scalings (CPU, one step, minutes not days):

- ``python`` is this interpreter, ``torchrun`` is ``python -m torch.distributed.run``;
- ``--gpus N`` and ``--nproc_per_node N`` become 2 (CPU processes); ``-device cuda`` becomes ``cpu``
  and a recipe command gets ``--device cpu``;
- ``-num_epochs N`` becomes ``1 -max_steps 1``, ``-global_batch_size N`` 2, and a training script
  gets ``-num_workers 0`` (its default, 16 loader processes, costs a minute to start here); a recipe
  command gets the same in ``--train_args``;
- a recipe run (``--local``) trains only the models of ``LOCAL_MODELS`` (``--models``).
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_support import write_2d, write_3d

from daftseg.data.synthetic import main as synthetic_main
from daftseg.models import build_model

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "training.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
# the cheapest model of each: 93f1e55 ships the original LiteMedSAM for US (no training; by hand and
# 916bd4e train above and below), 916bd4e its general fine-tuning (the fallback)
LOCAL_MODELS = {"93f1e55": ["US"], "916bd4e": ["general"]}
TRAIN_ARGS = " -num_workers 0 -max_steps 1 -global_batch_size 2"
VOLUMES = ("CT", "MR", "PET")  # modalities whose training files are 3D
TRAINING_SCRIPTS = ("distill_fulldataset.py", "finetune_npz_devit_fulldataset.py", "finetune_npz_devit_fulldataset3D.py")


def blocks(text: str) -> list[tuple[str, str]]:
    return FENCE.findall(text)


def command_lines(block: str) -> list[str]:
    """Logical lines: continuations joined, comments and blank lines dropped."""
    lines, current = [], ""
    for raw in block.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        if (current + line).strip():
            lines.append(current + line)
        current = ""
    return lines


def scaled(line: str) -> list[str]:
    words = shlex.split(line)
    if words[0] == "torchrun":
        words = ["python", "-m", "torch.distributed.run", *words[1:]]
    assert words[0] == "python", line
    recipe = words[1:3] == ["-m", "daftseg.recipe"]
    out = [sys.executable]
    replace = {"--gpus": "2", "--nproc_per_node": "2", "-global_batch_size": "2", "-num_workers": "0"}
    i = 1
    while i < len(words):
        word = words[i]
        if word in replace:
            out += [word, replace[word]]
            i += 2
        elif word == "-device":
            out += [word, "cpu"]
            i += 2
        elif word == "-num_epochs":
            out += [word, "1", "-max_steps", "1"]
            i += 2
        elif word.startswith("--train_args="):
            out.append(word + TRAIN_ARGS)
            i += 1
        else:
            out.append(word)
            i += 1
    if any(w.endswith(TRAINING_SCRIPTS) for w in out):
        out += ["-num_workers", "0"]
    if recipe:
        out += ["--device", "cpu"]
        if not any(w.startswith("--train_args=") for w in out):
            out.append("--train_args=" + TRAIN_ARGS.strip())
        if "--local" in out:
            out += ["--models", *LOCAL_MODELS[words[3]]]
    return out


def first_names() -> dict[str, str]:
    """The first basename of each modality prefix in the shipped fulldataset.csv."""
    names: dict[str, str] = {}
    path = ROOT / "daftseg" / "configs" / "split_93f1e55" / "fulldataset.csv.gz"
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            names.setdefault(row["filename"].split("_", 1)[0], row["filename"])
    return names


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("docs")
    for script in ROOT.glob("*.py"):
        (home / script.name).symlink_to(script)
    npz = home / "train_npz"
    npz.mkdir()
    for i, (prefix, name) in enumerate(sorted(first_names().items())):
        if prefix in VOLUMES:
            write_3d(npz / name, seed=i)
        else:
            write_2d(npz / name, seed=i)
    torch.save({"state_dict": build_model("efficientvit_sam_l0").state_dict()}, home / "l0.pt")
    lite = home / "work_dir" / "LiteMedSAM" / "lite_medsam.pth"
    lite.parent.mkdir(parents=True)
    torch.save(build_model("litemedsam").state_dict(), lite)
    # 916bd4e's download, unzipped: modality/dataset folders, the new MR data, the post-challenge files
    data = home / "data" / "CVPR24-MedSAMLaptopData" / "train_npz"
    for i in range(4):
        (data / "CT" / "Synth").mkdir(parents=True, exist_ok=True)
        write_3d(data / "CT" / "Synth" / f"CT_Synth_{i}.npz", seed=50 + i)
    for rel, seed in (("MR/Synth/MR_Synth_0.npz", 60), ("NewTrainingData/totalseg_mr/MR_totalseg_0.npz", 61),
                      ("CVPR24-PostChallenge-Train/3D_PET_Lesion_psma_0001.npz", 62)):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        write_3d(data / rel, seed=seed)
    write_2d(data / "CVPR24-PostChallenge-Train" / "2D_X-Ray_Teeth_0001.npz", seed=63)
    assert synthetic_main(["-o", str(home / "test_demo"), "--size", "48", "--max_slices", "4",
                           "--prefixes", "3DBox_CT,2DBox_US"]) == 0
    return home


def test_readme_training_block_is_the_pages_first():
    readme = [b for _, b in blocks((ROOT / "README.md").read_text()) if "daftseg.recipe" in b]
    assert readme == [blocks(PAGE.read_text())[0][1]]


def test_every_block_runs_on_tiny_data(home):
    found = blocks(PAGE.read_text())
    assert found and all(lang == "bash" for lang, _ in found), "every block of the page is a command block"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    # one process uses both cores; torchrun gives each of its processes one thread when this is unset
    env.pop("OMP_NUM_THREADS", None)
    env.pop("DAFTSEG_ROUTING", None)
    ran = []
    for _, block in found:
        for line in command_lines(block):
            argv = scaled(line)
            proc = subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=600, check=False)
            assert proc.returncode == 0, f"{line}\n-> {shlex.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            ran.append((line, proc.stdout + proc.stderr))
    assert len(ran) == 15
    # what the page promises
    assert (home / "runs" / "93f1e55" / "openvinomodels" / "lite_medsam_image_encoder.xml").is_file()
    assert (home / "runs" / "93f1e55" / "routing.toml").is_file()
    assert (home / "models" / "3D.pth").is_file()
    assert (home / "fulldataset.csv").is_file()  # the shipped lists, written for the commands by hand
    assert (home / "data" / "CVPR24-MedSAMLaptopData" / "train_npz" / "MR" / "totalseg_mr").is_dir()
    assert (home / "runs" / "916bd4e" / "openvinomodels" / "prompt_encoder.xml").is_file()
    assert sorted(p.name for p in (home / "test_demo" / "segs").glob("*.npz")) == ["2DBox_US_0001.npz",
                                                                                  "3DBox_CT_0001.npz"]
    segment = next(out for line, out in ran if line.startswith("python PerfectMetaOpenVINO.py"))
    assert "model=general" in segment  # 916bd4e's fallback: its 3D and US models were not trained here
    assert any(p.name.startswith("cache") for p in home.iterdir())
