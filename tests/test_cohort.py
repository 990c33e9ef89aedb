"""Cohorts (issue 27): shards, --workers, resume and the Slurm job array, on the demo's synthetic
cases with toy models. Every comparison is against a plain one-process run of the same command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture
from slurm_support import install_fake_sbatch, shellcheck

from daftseg.data.synthetic import generate
from daftseg.inference.runner import main
from daftseg.inference.shards import split, split_by_size
from daftseg.inference.workers import WorkerJob, core_sets, default_threads, run_pool

REPO = Path(__file__).resolve().parents[1]


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def outputs(folder: Path) -> dict[str, bytes]:
    """name -> the bytes of every segs file (hidden files are not outputs)."""
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npz"))}


@pytest.fixture(scope="module")
def demo(tmp_path_factory, toy_models_dir):  # noqa: F811
    """The demo's 13 synthetic cases (one per modality), small, and their one-process outputs."""
    root = tmp_path_factory.mktemp("cohort")
    generate(root, size=96, max_slices=8)
    rc, _, err = run_cli("-i", root / "imgs", "-o", root / "segs_one", "-m", toy_models_dir, "--cache_dir", "")
    assert rc == 0, err
    one = outputs(root / "segs_one")
    assert len(one) == 13 and len({len(b) for b in one.values()}) > 1
    return root, one


# ---- 1. shards -----------------------------------------------------------------------------------

@pytest.mark.parametrize("balance", ["name", "size"])
@pytest.mark.parametrize("count", [1, 3, 5, 7, 13])
def test_every_case_is_in_exactly_one_shard(balance, count):
    rng = np.random.default_rng(count)
    names = [f"case_{i:03d}.npz" for i in rng.permutation(count)]
    sizes = [int(s) for s in rng.integers(1, 1000, count)]
    for n in range(1, 8):
        parts = split(names, sizes, n, balance)
        assert len(parts) == n
        flat = sorted(i for part in parts for i in part)
        assert flat == list(range(count)), (n, parts)
        for part in parts:  # each shard runs its cases in name order
            assert [names[i] for i in part] == sorted(names[i] for i in part)
        if balance == "name":  # DAFT-style: K, K+N, ... of the sorted names
            ordered = sorted(names)
            assert [[names[i] for i in part] for part in parts] == [ordered[k::n] for k in range(n)]


def _greedy_reference(names: list[str], sizes: list[int], n: int) -> list[set[str]]:
    """Largest first (ties by name) to the shard with the fewest bytes (ties: the lowest index)."""
    loads, shards = [0] * n, [set() for _ in range(n)]
    for size, name in sorted(zip(sizes, names, strict=True), key=lambda t: (-t[0], t[1])):
        k = min(range(n), key=lambda j: (loads[j], j))
        loads[k] += size
        shards[k].add(name)
    return shards


def test_size_balance_is_largest_first_to_the_lightest_shard():
    names = ["a", "b", "c", "d", "e"]
    # by hand: a(10)->0, b(9)->1, c(8)->1 (9 < 10), d(1)->0 (10 < 17), e(1)->0 (11 < 17)
    assert [[names[i] for i in p] for p in split_by_size(names, [10, 9, 8, 1, 1], 2)] == [["a", "d", "e"],
                                                                                          ["b", "c"]]
    rng = np.random.default_rng(0)
    for count, n in ((13, 3), (40, 7), (5, 6)):
        names = [f"c{i:02d}" for i in range(count)]
        sizes = [int(s) for s in rng.integers(1, 50, count)]  # many ties
        got = [{names[i] for i in p} for p in split_by_size(names, sizes, n)]
        assert got == _greedy_reference(names, sizes, n)
        assert split_by_size(names, sizes, n) == split_by_size(names, sizes, n)


@pytest.mark.parametrize("balance", ["name", "size"])
def test_shards_together_byte_equal_one_run(demo, toy_models_dir, tmp_path, balance):  # noqa: F811
    root, one = demo
    for n in (2, 3, 7):
        out = tmp_path / f"segs_{n}"
        seen: list[str] = []
        for k in range(n):
            rc, stdout, err = run_cli("-i", root / "imgs", "-o", out, "-m", toy_models_dir, "--cache_dir", "",
                                      "--shard", f"{k}/{n}", "--balance", balance)
            assert rc == 0, err
            selection = stdout.splitlines()[0]
            assert selection.startswith(f"shard {k}/{n} (by {balance}): ")
            chosen = selection.partition(" MB")[2].lstrip(": ").split()
            seen += chosen
            # the shard wrote its selection, and nothing of another shard's
            assert set(outputs(out)) == set(seen)
        assert sorted(seen) == sorted(one)
        assert outputs(out) == one


def test_size_shards_put_the_3d_cases_apart(demo):
    root, _ = demo
    files = sorted((root / "imgs").glob("*.npz"))
    parts = split([p.name for p in files], [p.stat().st_size for p in files], 3, "size")
    three_d = [{files[i].name for i in part if files[i].name.startswith("3D")} for part in parts]
    assert all(len(s) == 1 for s in three_d), three_d  # the three largest files, one per shard


# ---- 2. workers ----------------------------------------------------------------------------------

def test_two_workers_byte_equal_one_process(demo, toy_models_dir, tmp_path):  # noqa: F811
    root, one = demo
    inp = tmp_path / "imgs"
    inp.mkdir()
    for p in (root / "imgs").iterdir():
        (inp / p.name).symlink_to(p)
    (inp / "2DBox_US_bad.npz").write_bytes(b"PK\x03\x04 not a zip")  # fails alone, in whichever worker
    csv = tmp_path / "timing.csv"
    rc, stdout, err = run_cli("-i", inp, "-o", tmp_path / "segs", "-m", toy_models_dir, "--cache_dir", "",
                              "--workers", "2", "--timing_csv", csv)
    assert rc == 1
    assert outputs(tmp_path / "segs") == one
    assert err.count("error: ") == 1 and "error: 2DBox_US_bad.npz: unreadable npz" in err
    assert "worker 0: " in stdout and "worker 1: " in stdout and "1 OpenVINO thread" in stdout
    assert "13 of 14 cases written" in stdout and "1 failed" in stdout
    assert sum(".npz  model=" in line for line in stdout.splitlines()) == 13
    rows = csv.read_text().splitlines()
    assert rows[0] == "case,model,boxes,slices,seconds"
    assert [r.split(",")[0] for r in rows[1:]] == sorted(one)  # sorted, as one process writes them


def test_the_entry_script_runs_workers(demo, toy_models_dir, tmp_path):  # noqa: F811
    root, one = demo
    proc = subprocess.run([sys.executable, str(REPO / "PerfectMetaOpenVINO.py"), "-i", str(root / "imgs"),
                           "-o", str(tmp_path / "segs"), "-m", str(toy_models_dir), "--cache_dir", "",
                           "--workers", "2", "--threads", "1"],
                          check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert outputs(tmp_path / "segs") == one


def _report_or_die(job: WorkerJob, relay) -> int:
    """A worker for run_pool: reports its items; item 'die' ends the process without a word."""
    for item in job.items:
        if item == "die":
            os._exit(3)
        relay.line(f"{item} by {job.index}")
        relay.done(item, item != "bad", f"{item}\n")
    return 0


def test_a_dead_worker_fails_only_its_unfinished_cases():
    lines, done = [], []
    jobs = [WorkerJob(0, ["a", "die", "c"], None), WorkerJob(1, ["b", "bad"], None)]
    result = run_pool(_report_or_die, jobs, lambda text, error: lines.append((text, error)),
                      lambda: done.append(1))
    assert sorted(result.rows) == ["a\n", "b\n", "bad\n"]
    assert sorted(result.failed) == ["bad", "c", "die"]
    assert len(done) == 5 and result.exit_codes == [3, 0]
    assert ("error: die: worker 0 ended (exit code 3) before this case finished", True) in lines
    assert ("a by 0", False) in lines and ("b by 1", False) in lines


def test_threads_and_cores_per_worker():
    assert default_threads(4, cores=16) == 4 and default_threads(3, cores=16) == 5
    assert default_threads(8, cores=2) == 1
    assert core_sets(2, 2, [0, 1, 2, 3, 4]) == [[0, 1], [2, 3]]
    assert core_sets(3, 2, [0, 1, 2, 3]) == [None, None, None]  # they do not fit: no pinning


# ---- 5. resume -----------------------------------------------------------------------------------

def test_a_rerun_skips_complete_outputs_and_redoes_the_rest(demo, toy_models_dir, tmp_path):  # noqa: F811
    root, one = demo
    out = tmp_path / "segs"
    args = ["-i", root / "imgs", "-o", out, "-m", toy_models_dir, "--cache_dir", "", "--shard", "0/1"]
    assert run_cli(*args)[0] == 0
    names = sorted(one)
    # what a killed run or a stranger leaves: a missing output, a truncated one, one of another shape,
    # one without segs; and one file made older, to show that complete outputs are not rewritten
    (out / names[0]).unlink()
    (out / names[1]).write_bytes(one[names[1]][: len(one[names[1]]) // 2])
    np.savez_compressed(out / names[2], segs=np.zeros((3, 3), np.uint16))
    np.savez_compressed(out / names[3], other=np.zeros((3, 3), np.uint16))
    os.utime(out / names[4], (1, 1))
    rc, stdout, err = run_cli(*args)
    assert rc == 0, err
    assert f"skipped 9 of 13 cases: their outputs in {out} are complete" in stdout
    ran = [line.split()[0] for line in stdout.splitlines() if ".npz  model=" in line]
    assert ran == names[:4]
    assert outputs(out) == one and (out / names[4]).stat().st_mtime == 1
    rc, stdout, _ = run_cli(*args, "--overwrite")
    assert rc == 0 and "skipped" not in stdout and stdout.count(".npz  model=") == 13
    # other settings would mix outputs of two runs: refused, unless --overwrite
    rc, _, err = run_cli(*args, "--zmax_inclusive")
    assert rc == 1 and "holds outputs of a run with other settings (options differ" in err
    assert outputs(out) == one


def test_the_plain_command_writes_every_case_as_daft(demo, toy_models_dir, tmp_path):  # noqa: F811
    root, _ = demo
    out = tmp_path / "segs"
    assert run_cli("-i", root / "imgs", "-o", out, "-m", toy_models_dir, "--cache_dir", "")[0] == 0
    rc, stdout, _ = run_cli("-i", root / "imgs", "-o", out, "-m", toy_models_dir, "--cache_dir", "")
    assert rc == 0 and stdout.count(".npz  model=") == 13 and "skipped" not in stdout
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no settings file either


# ---- 3. Slurm ------------------------------------------------------------------------------------

def test_fake_sbatch_array_writes_every_case_and_the_metrics(demo, toy_models_dir, tmp_path,  # noqa: F811
                                                             monkeypatch, capsys):
    root, one = demo
    bin_dir = tmp_path / "bin"
    install_fake_sbatch(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_STATE", str(tmp_path / "jobs.json"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    out = tmp_path / "segs"
    cluster = tmp_path / "cluster.toml"
    cluster.write_text('account = "proj"\npartition = "cpu"\nextra = ["--mem=8G"]\n')
    args = ["-i", root / "imgs", "-o", out, "-m", toy_models_dir, "--cache_dir", "", "--slurm", "3",
            "--gts", root / "gts", "--cluster", cluster, "--time", "00:30:00", "--cpus_per_task", "2",
            "--threads", "1", "--timing_csv", tmp_path / "timing.csv"]
    rc, stdout, err = run_cli(*args, "--submit")
    assert rc == 0, err
    folder = out / "slurm"
    assert f"wrote {folder / 'segment.sbatch'} (job array of 3 tasks)" in stdout
    jobs = json.loads((tmp_path / "jobs.json").read_text())
    logs = {p.name: p.read_text()[-3000:] for p in folder.glob("*.log")}
    assert [j["script"] for j in jobs] == ["segment.sbatch", "check.sbatch"], logs
    assert jobs[0]["tasks"] == [0, 0, 0] and jobs[1]["rc"] == 0, logs
    assert jobs[1]["deps"] == [jobs[0]["id"]]
    assert outputs(out) == one
    # each task ran its own size-balanced shard, and the shards cover the folder once
    chosen = []
    for k in range(3):
        line = logs[f"segment.sbatch.{k}.log"].splitlines()[0]
        assert line.startswith(f"shard {k}/3 (by size): "), line
        chosen += line.partition(" MB")[2].lstrip(": ").split()
    assert sorted(chosen) == sorted(one)
    assert "13 of 13 cases of" in logs["check.sbatch.log"]
    metrics = (folder / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "case,dsc,nsd" and sorted(r.split(",")[0] for r in metrics[1:]) == sorted(one)
    assert sum(len((tmp_path / f"timing-{k}.csv").read_text().splitlines()) - 1 for k in range(3)) == 13

    text = (folder / "segment.sbatch").read_text()
    for option in ("--array=0-2", "--account=proj", "--partition=cpu", "--time=00:30:00", "--cpus-per-task=2",
                   "--mem=8G", f"--output={folder}/segment-%A_%a.out"):
        assert f"#SBATCH {option}\n" in text
    assert '--shard "${SLURM_ARRAY_TASK_ID}/3" --balance size' in text
    assert "--array" not in (folder / "check.sbatch").read_text()
    assert " --threads 1 " in text and "--workers" not in text and "--cpus_per_task" not in text
    proc = subprocess.run([shellcheck(), "--shell=bash", *map(str, sorted(folder.glob("*.sbatch"))),
                           str(folder / "submit.sh")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout

    # processes per task go with the tasks; without --threads a task takes its allocation's cores
    no_threads = [a for a in args if a not in ("--threads", "1")]
    assert run_cli(*no_threads, "--workers", "2")[0] == 0
    assert " --workers 2 " in (folder / "segment.sbatch").read_text()
    assert run_cli(*no_threads)[0] == 0
    assert " --threads 2 " in (folder / "segment.sbatch").read_text()

    # a resubmission (after a killed task) redoes only what is missing
    (out / sorted(one)[5]).unlink()
    capsys.readouterr()
    assert run_cli(*args, "--submit")[0] == 0
    jobs = json.loads((tmp_path / "jobs.json").read_text())
    assert jobs[2]["tasks"] == [0, 0, 0] and jobs[3]["rc"] == 0
    reruns = [p.read_text().count(".npz  model=") for p in sorted(folder.glob("segment.sbatch.*.log"))]
    assert sum(reruns) == 1 and outputs(out) == one


def test_the_check_job_fails_on_a_missing_case(demo, toy_models_dir, tmp_path):  # noqa: F811
    root, one = demo
    out = tmp_path / "segs"
    for name, data in one.items():
        out.mkdir(exist_ok=True)
        (out / name).write_bytes(data)
    check = [sys.executable, "-m", "daftseg.inference.cohort", "-i", str(root / "imgs"), "-o", str(out)]
    proc = subprocess.run(check, capture_output=True, text=True, check=False, cwd=REPO)
    assert proc.returncode == 0 and "13 of 13 cases" in proc.stdout, proc.stderr
    names = sorted(one)
    np.savez(out / names[0], segs=np.zeros((2, 2), np.uint16))  # readable, but not this case's shape
    (out / names[1]).unlink()
    proc = subprocess.run(check, capture_output=True, text=True, check=False, cwd=REPO)
    assert proc.returncode == 1 and "11 of 13 cases" in proc.stdout
    assert proc.stderr.count("no complete output") == 2


def test_cohort_options_that_do_not_go_together(demo, toy_models_dir, tmp_path, capsys):  # noqa: F811
    root, _ = demo
    base = ["-i", root / "imgs", "-o", tmp_path / "s", "-m", toy_models_dir]
    for extra, message in ((["--submit"], "--submit goes with --slurm"),
                           (["--account", "x"], "--account goes with --slurm"),
                           (["--slurm", "2", "--shard", "0/2"], "leave --shard out"),
                           (["--workers", "0"], "--workers must be at least 1"),
                           (["--slurm", "2", "--gts", tmp_path / "nope"], "no such folder")):
        with pytest.raises(SystemExit):
            run_cli(*base, *extra)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_slurm_where_the_recipe_is_not_installed(demo, toy_models_dir, tmp_path, monkeypatch):  # noqa: F811
    """The challenge image holds daftseg/inference without the recipe: --slurm says so in one line."""
    root, _ = demo
    monkeypatch.setitem(sys.modules, "daftseg.cohort_slurm", None)  # what an absent module looks like to import
    rc, _, err = run_cli("-i", root / "imgs", "-o", tmp_path / "segs", "-m", toy_models_dir, "--slurm", "2")
    assert rc == 1 and err.startswith("error: --slurm needs a full daftseg checkout or package")
    assert not (tmp_path / "segs" / "slurm").exists()
