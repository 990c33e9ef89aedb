"""The challenge container, built with podman and run the way the challenge harness runs it.

The image is built from the repository's Dockerfile by build_docker_openvino.sh (DOCKER=podman),
on the stand-in python:3.11-slim of scripts/podman_base.sh (no image registry is reachable here),
with toy IR models that have DAFT's tensor names (tests/ov_toy_models.py) and the wheels that
scripts/setup.sh keeps (pip inside the build gets no network: a bind-mounted pip.conf points it at
them). Then the harness loop: one container per case, ``sh predict.sh``, inputs and outputs mounted.

Marked ``container``: skipped, with the reason, where podman is missing or cannot start a container
(``pytest -m 'not container'`` leaves it out). podman storage and the stand-in base are kept under
``~/.cache/daftseg-container`` (``DAFTSEG_CONTAINER_CACHE``). Run with ``-s`` to see the timings,
the containers' logs and what the image holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from container_support import (
    MirrorUnreachable,
    Podman,
    base_needs_building,
    copy_tree_items,
    ensure_base,
    find_podman,
    run_bash,
    snapshot,
)
from offline_venv import wheelhouse
from ov_toy_models import write_toy_models
from test_docker_files import copy_sources

from daftseg.data.synthetic import main as synthetic_main

ROOT = Path(__file__).resolve().parents[1]
IMAGE_NAME = "daftseg-container-test"
IMAGE = f"localhost/{IMAGE_NAME}:latest"
TOY_MODELS = {"CT": {}, "3D": {"alpha": 1.5}, "lite_medsam": {"alpha": 1.0}}
BROKEN = "2DBox_US_broken.npz"
# The harness's order: two cases of one model (the second must find the first's compiled models in
# the cache), the broken case, then a 3D case of another model. Few containers: with vfs storage each
# start copies the whole image (10-30 s on 2 busy cores).
LOOP = ["2DBox_US_0001.npz", "2DBox_US_0002.npz", BROKEN, "3DBox_CT_0001.npz"]
GOOD = [c for c in LOOP if c != BROKEN]
HOST_CASES = [*GOOD, "3DBox_MR_0001.npz"]  # the cases the host segments, for comparison
SITE = "/home/user/.local/lib/python3.11/site-packages"
# What the Dockerfile removes from the installed packages (must stay out of the image).
CUT = [
    "openvino/libs/libopenvino_intel_gpu_plugin.so",
    "openvino/libs/libopenvino_intel_npu_plugin.so",
    "openvino/libs/libopenvino_onnx_frontend.so.*",
    "openvino/libs/libopenvino_tensorflow_frontend.so.*",
    "openvino/libs/libopenvino_pytorch_frontend.so.*",
    "openvino/libs/cache.json",
    "openvino/include",
    "openvino/tools/ovc",
    "openvino/frontend/onnx",
    "openvino/frontend/tensorflow",
    "cv2/data/*.xml",
    "numpy/_core/tests",
]


def _elapsed(start: float) -> str:
    return f"{time.perf_counter() - start:.1f} s"


@pytest.fixture(scope="module")
def podman() -> Podman:
    found, how = find_podman()
    if found is None:
        pytest.skip(how)
    if sys.version_info[:2] != (3, 11):
        pytest.skip(f"the image runs Python 3.11; the wheelhouse holds wheels for {sys.version.split()[0]}")
    if base_needs_building(found) and os.geteuid() != 0:
        pytest.skip(
            "building the stand-in base image needs root (debootstrap): "
            "run the tests as root once, or sudo scripts/podman_base.sh"
        )
    print(f"\n[container] using {how}")
    return found


@pytest.fixture(scope="module")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory):
    """The challenge image built by build_docker_openvino.sh; removed again afterwards."""
    try:
        print(f"[container] stand-in base ready in {ensure_base(podman):.1f} s")
    except MirrorUnreachable as err:
        pytest.skip(f"the stand-in base image cannot be built here: {err}")
    work = tmp_path_factory.mktemp("image")
    context = work / "context"
    copy_tree_items(
        ["Dockerfile", ".dockerignore", "build_docker_openvino.sh"]
        + [s.rstrip("/") for s in copy_sources() if s != "openvinomodels/"],
        context,
    )
    write_toy_models(context / "openvinomodels", TOY_MODELS)
    pip_conf = work / "pip.conf"
    pip_conf.write_text("[global]\nno-index = true\nfind-links = /wheels\n", encoding="utf-8")
    env = {
        **podman.env,
        "DOCKER": "podman",
        "DAFTSEG_PODMAN_OPTS": " ".join(podman.options),
        "OUT": str(work / f"{IMAGE_NAME}.tar.gz"),
        "DAFTSEG_BUILD_OPTS": f"--pull=never --network none -v {wheelhouse()}:/wheels:ro "
        f"-v {pip_conf}:/etc/pip.conf:ro",
    }
    start = time.perf_counter()
    res = run_bash(context / "build_docker_openvino.sh", IMAGE_NAME, env=env)
    print(f"[container] build_docker_openvino.sh (build, squash, save .tar.gz, load back): {_elapsed(start)}")
    print(
        "\n".join(line for line in res.stdout.splitlines() if line.startswith(("saved", "checked", "STEP")))
    )
    assert res.returncode == 0, f"build failed:\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}"
    yield {"tarball": work / f"{IMAGE_NAME}.tar.gz", "models": context / "openvinomodels"}
    podman.run("rmi", "--force", IMAGE, check=False)
    podman.run("image", "prune", "--force", check=False)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic challenge cases (2D ultrasound, 3D CT and MR) and one broken file."""
    out = tmp_path_factory.mktemp("cases")
    args = f"-o {out} --size 64 --max_slices 6 -n 2 --prefixes 2DBox_US,3DBox_CT,3DBox_MR"
    assert synthetic_main(args.split()) == 0
    (out / "imgs" / BROKEN).write_bytes(b"this is not an npz file")
    return out / "imgs"


@pytest.fixture(scope="module")
def host_segs(image, cases: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same cases segmented by the host's runtime, with the same models."""
    work = tmp_path_factory.mktemp("host")
    inputs, outputs = work / "inputs", work / "outputs"
    inputs.mkdir()
    for name in HOST_CASES:
        shutil.copy(cases / name, inputs / name)
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "PerfectMetaOpenVINO.py"),
            "-i",
            str(inputs),
            "-o",
            str(outputs),
            "-m",
            str(image["models"]),
            "--cache_dir",
            str(work / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=work,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return outputs


def _run_case(podman: Podman, inputs: Path, outputs: Path, read_only: bool = False) -> tuple[int, str, float]:
    """The harness's command (without -m 8G, refused in this sandbox); returns code, log, seconds."""
    mode = ":ro" if read_only else ""
    start = time.perf_counter()
    res = podman.run(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{inputs}/:/workspace/inputs/{mode}",
        "-v",
        f"{outputs}/:/workspace/outputs/",
        IMAGE,
        "/bin/bash",
        "-c",
        "sh predict.sh",
        check=False,
        timeout=600,
    )
    return res.returncode, res.stdout + res.stderr, time.perf_counter() - start


def _harness_folder(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o777)  # as the harness: the container's user (uid 1000) writes there
    return path


@pytest.fixture(scope="module")
def harness(podman: Podman, image, cases: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The harness loop: copy a case into inputs/, one container, delete the case; inputs/ is kept."""
    work = tmp_path_factory.mktemp("harness")
    inputs, outputs = _harness_folder(work / "inputs"), _harness_folder(work / "outputs")
    runs, caches = {}, {}
    for name in LOOP:
        shutil.copy(cases / name, inputs / name)
        runs[name] = _run_case(podman, inputs, outputs)
        (inputs / name).unlink()
        caches[name] = snapshot(inputs / "openvinocache") if (inputs / "openvinocache").is_dir() else {}
        code, log, seconds = runs[name]
        print(
            f"[container] {name}: exit {code} in {seconds:.1f} s, "
            f"{len(caches[name])} files in inputs/openvinocache\n    " + log.strip().replace("\n", "\n    ")
        )
    return {"inputs": inputs, "outputs": outputs, "runs": runs, "caches": caches}


def _assert_same_segs(got: Path, want: Path, names: list[str]) -> None:
    for name in names:
        assert (got / name).is_file(), f"{name}: the container wrote no output"
        with np.load(got / name) as a, np.load(want / name) as b:
            assert a.files == b.files == ["segs"], name
            seg, ref = a["segs"], b["segs"]
        assert seg.dtype == ref.dtype and seg.shape == ref.shape, (
            f"{name}: {seg.dtype} {seg.shape} vs {ref.dtype} {ref.shape}"
        )
        assert seg.tobytes() == ref.tobytes(), (
            f"{name}: segs differ from the host's in {np.sum(seg != ref)} voxels"
        )
        assert seg.max() >= 1, f"{name}: empty segmentation"  # the toy models draw box-shaped blobs
        print(
            f"[container] {name}: segs {seg.shape} {seg.dtype}, labels {np.unique(seg).tolist()}, "
            "identical to the host's"
        )


@pytest.mark.container
def test_each_case_in_its_own_container_equals_the_host(harness, host_segs):
    runs = harness["runs"]
    for name in GOOD:
        assert runs[name][0] == 0, f"{name}: exit {runs[name][0]}\n{runs[name][1]}"
    _assert_same_segs(harness["outputs"], host_segs, GOOD)


@pytest.mark.container
def test_a_broken_case_exits_1_and_the_others_are_written(harness, podman, cases, host_segs, tmp_path):
    code, log, _ = harness["runs"][BROKEN]
    assert code == 1, f"broken case: exit {code}\n{log}"
    assert BROKEN in log, log  # the error names the file
    assert sorted(p.name for p in harness["outputs"].iterdir()) == sorted(GOOD)
    # One container given several cases, the broken one among them: the others are still segmented.
    inputs, outputs = _harness_folder(tmp_path / "inputs"), _harness_folder(tmp_path / "outputs")
    for name in (BROKEN, "2DBox_US_0001.npz", "3DBox_MR_0001.npz"):
        shutil.copy(cases / name, inputs / name)
    code, log, seconds = _run_case(podman, inputs, outputs)
    print(f"[container] batch with a broken case: exit {code} in {seconds:.1f} s\n{log}")
    assert code == 1, log
    _assert_same_segs(outputs, host_segs, ["2DBox_US_0001.npz", "3DBox_MR_0001.npz"])
    assert not (outputs / BROKEN).exists()


@pytest.mark.container
def test_the_model_cache_persists_in_inputs_between_containers(harness):
    caches = harness["caches"]
    first, second = caches["2DBox_US_0001.npz"], caches["2DBox_US_0002.npz"]
    assert first, "the first container left no compiled models in inputs/openvinocache"
    # The second case of the same model compiled nothing: the cache is exactly as the first left it.
    assert second == first, f"cache changed between two cases of one model:\n{first}\n{second}"
    final = caches[LOOP[-1]]
    assert all(final.get(f) == v for f, v in first.items()), "a later container rewrote the cache"
    assert len(final) > len(first)  # the other models were added to it
    print(
        f"[container] openvinocache: {len(first)} files after the first case, kept; {len(final)} at the end"
    )


@pytest.fixture(scope="module")
def inside(podman: Podman, image) -> list[str]:
    """One container's look inside the image: user name and id, cut parts still present, largest folders."""
    checks = " ; ".join(f'for f in {SITE}/{c}; do [ -e "$f" ] && echo "present: $f"; done' for c in CUT)
    script = (
        f"id -un; id -u; {checks}; [ -s /etc/pip.conf ] && echo 'present: /etc/pip.conf'; "
        f"ls {SITE}/openvino/libs; du -x -h -d 5 / 2>/dev/null | sort -h | tail -n 25; "
        f"{{ du -s -h {SITE}/*; du -s -h {SITE}/openvino/libs/*; }} | sort -h | tail -n 12"
    )
    res = podman.run("run", "--rm", "--network", "none", IMAGE, "/bin/bash", "-c", script)
    print(f"[container] inside the image (largest folders last):\n{res.stdout}")
    return res.stdout.splitlines()


@pytest.mark.container
def test_the_process_runs_as_the_non_root_user(harness, inside):
    assert inside[:2] == ["user", "1000"], inside[:2]
    # What predict.sh wrote (outputs, cache) belongs to that user, not to root.
    written = [*harness["outputs"].iterdir(), *(harness["inputs"] / "openvinocache").rglob("*")]
    assert written and {p.stat().st_uid for p in written} == {1000}


@pytest.mark.container
@pytest.mark.parametrize("cache_folder", ["absent", "present"])
def test_a_read_only_inputs_mount_still_works(podman, image, cases, host_segs, tmp_path, cache_folder):
    """predict.sh cannot create inputs/openvinocache, or finds it there but cannot write it."""
    inputs, outputs = _harness_folder(tmp_path / "inputs"), _harness_folder(tmp_path / "outputs")
    names = ["2DBox_US_0002.npz", "3DBox_CT_0001.npz"]
    for name in names:
        shutil.copy(cases / name, inputs / name)
    if cache_folder == "present":
        _harness_folder(inputs / "openvinocache")
    before = snapshot(inputs)
    code, log, seconds = _run_case(podman, inputs, outputs, read_only=True)
    print(f"[container] read-only inputs, cache folder {cache_folder}: exit {code} in {seconds:.1f} s\n{log}")
    assert code == 0, log
    _assert_same_segs(outputs, host_segs, names)
    assert snapshot(inputs) == before
    assert (inputs / "openvinocache").exists() == (cache_folder == "present")


@pytest.mark.container
def test_the_image_holds_no_cut_parts(podman, image, inside):
    present = [line for line in inside if line.startswith("present:")]
    assert not present, "\n".join(present)
    # what inference loads is still there: the CPU plugin and the IR reader
    assert "libopenvino_intel_cpu_plugin.so" in inside
    assert any(line.startswith("libopenvino_ir_frontend.so") for line in inside), inside
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    base = int(
        podman.run("image", "inspect", "--format", "{{.Size}}", "docker.io/library/python:3.11-slim").stdout
    )
    print(
        f"[container] image {size / 1e6:.0f} MB uncompressed (base {base / 1e6:.0f} MB), "
        f"{image['tarball'].stat().st_size / 1e6:.0f} MB as {image['tarball'].name}"
    )


# -- build_docker_openvino.sh with podman, run against a stub engine (no container needed) --------


def _stub_podman(tmp_path: Path, ids: tuple[str, str] = ("sha256:1", "sha256:1")) -> tuple[Path, Path, Path]:
    """A build folder, a bin folder holding a stub podman and only the tools the script needs, a log."""
    work = tmp_path / "repo"
    (work / "openvinomodels").mkdir(parents=True)
    for name in ("positional_encoding.npy", "lite_medsam_prompt_encoder.xml"):
        (work / "openvinomodels" / name).write_bytes(b"")
    for f in ("build_docker_openvino.sh", "Dockerfile"):
        shutil.copy(ROOT / f, work / f)
    bin_dir, log, count = tmp_path / "bin", tmp_path / "calls.txt", tmp_path / "inspections"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "basename", "gzip", "mv", "cat", "echo", "wc"):
        os.symlink(shutil.which(tool), bin_dir / tool)  # no docker here: the script must pick podman
    (bin_dir / "podman").write_text(
        "#!/bin/bash\n"
        f'echo "podman $*" >> "{log}"\n'
        'for a in "$@"; do case "$a" in save) printf image-tar;; load) cat > '
        f'"{tmp_path}/loaded";; inspect) echo x >> "{count}"; '
        f'if [ "$(wc -l < "{count}")" -eq 1 ]; then echo {ids[0]}; else echo {ids[1]}; fi;; esac; done\n'
    )
    (bin_dir / "podman").chmod(0o755)
    return work, bin_dir, log


def test_build_script_uses_podman_with_its_options(tmp_path):
    work, bin_dir, log = _stub_podman(tmp_path)
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "DAFTSEG_PODMAN_OPTS": "--root /r --runtime runc",
        "DAFTSEG_BUILD_OPTS": "--pull=never --network host",
    }
    run = subprocess.run(
        [str(bin_dir / "bash"), "build_docker_openvino.sh", "team"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert log.read_text(encoding="utf-8").splitlines() == [
        "podman --root /r --runtime runc build --squash --pull=never --network host -f Dockerfile -t team:latest .",
        "podman --root /r --runtime runc save team:latest",
        "podman --root /r --runtime runc image inspect --format {{.Id}} team:latest",
        "podman --root /r --runtime runc load",
        "podman --root /r --runtime runc image inspect --format {{.Id}} team:latest",
    ]
    assert (work / "team.tar.gz").is_file() and (tmp_path / "loaded").read_bytes() == b"image-tar"
    assert "checked: team.tar.gz loads back as team:latest (sha256:1)" in run.stdout


def test_build_script_fails_when_the_saved_file_loads_as_another_image(tmp_path):
    work, bin_dir, _log = _stub_podman(tmp_path, ids=("sha256:1", "sha256:2"))
    run = subprocess.run(
        [str(bin_dir / "bash"), "build_docker_openvino.sh", "team"],
        cwd=work,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path), "DOCKER": "podman"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 1
    assert "team.tar.gz loads as image sha256:2, not the image built (sha256:1)" in run.stderr


def test_build_script_says_when_no_engine_is_installed(tmp_path):
    work, bin_dir, _log = _stub_podman(tmp_path)
    (bin_dir / "podman").unlink()
    run = subprocess.run(
        [str(bin_dir / "bash"), "build_docker_openvino.sh", "team"],
        cwd=work,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 1 and "neither docker nor podman is installed" in run.stderr
