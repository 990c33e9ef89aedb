"""podman for the container test: can containers run here, the stand-in base, build, run.

Everything podman stores for the tests lives in its own storage folder under the cache folder
(``$DAFTSEG_CONTAINER_CACHE``, default ``~/.cache/daftseg-container``), outside the repository, so
the stand-in base (scripts/podman_base.sh, keyed by its recipe) is built once and kept between runs,
and the user's own images are never touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE_IMAGE = "localhost/daftseg-probe:1"


def cache_folder() -> Path:
    """The folder kept between runs (stand-in base tarball, podman storage)."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "daftseg-container"
    return Path(os.environ.get("DAFTSEG_CONTAINER_CACHE") or default)


@dataclass
class Podman:
    """podman with the global options that work on this machine, and the environment they need."""

    options: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        return ["podman", *self.options, *args]

    def run(self, *args: str, timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """Run ``podman OPTIONS ARGS``; on failure (with ``check``) the error names the command and its output."""
        res = subprocess.run(
            self.command(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            **kw,
        )
        if check and res.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(self.command(*args))} exited with {res.returncode}:\n"
                f"{res.stdout[-4000:]}{res.stderr[-4000:]}"
            )
        return res


def _containers_conf(cache: Path) -> str:
    """CONTAINERS_CONF: the user's, else one without default ulimits (refused in sandboxes like this one)."""
    if os.environ.get("CONTAINERS_CONF"):
        return os.environ["CONTAINERS_CONF"]
    conf = cache / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n", encoding="utf-8")
    return str(conf)


def candidate_options(cache: Path) -> list[list[str]]:
    """Global options to try, fastest first: overlay storage, then vfs (each container start ~10 s).

    ``DAFTSEG_CONTAINER_DRIVER=vfs`` (or overlay) tries only that storage driver.
    """
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []  # crun is refused in some sandboxes
    drivers = (
        [os.environ["DAFTSEG_CONTAINER_DRIVER"]]
        if os.environ.get("DAFTSEG_CONTAINER_DRIVER")
        else ["overlay", "vfs"]
    )
    return [
        [
            "--root",
            str(cache / f"storage-{driver}"),
            "--runroot",
            f"/tmp/daftseg-container-{os.getuid()}-{driver}",
            "--storage-driver",
            driver,
            *runtime,
            "--cgroup-manager",
            "cgroupfs",
        ]
        for driver in drivers
    ]


def _probe_tarball(path: Path) -> tuple[Path, str]:
    """A root filesystem holding only the host's ``true`` and the libraries it loads (a few MB)."""
    true = shutil.which("true") or "/bin/true"
    ldd = subprocess.run(["ldd", true], capture_output=True, text=True, check=False).stdout
    files = [true] + [w for line in ldd.splitlines() for w in line.split() if w.startswith("/")]
    with tarfile.open(path, "w") as tar:
        for f in files:
            tar.add(os.path.realpath(f), arcname=f.lstrip("/"))
    return path, true


def find_podman() -> tuple[Podman | None, str]:
    """A working podman and a line saying what was used, or None and why containers cannot run here."""
    if shutil.which("podman") is None:
        return None, "podman is not installed (apt-get install podman runc debootstrap)"
    cache = cache_folder()
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CONTAINERS_CONF": _containers_conf(cache)}
    tarball, true = _probe_tarball(cache / "probe-rootfs.tar")
    failures = []
    for options in candidate_options(cache):
        podman = Podman(options, env)
        try:
            podman.run("import", str(tarball), PROBE_IMAGE, timeout=300)
            podman.run("run", "--rm", "--network", "none", PROBE_IMAGE, true, timeout=300)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            failures.append(str(e).strip())
            continue
        return podman, f"podman {shlex.join(options)}"
    return None, "podman cannot run a container here:\n" + "\n".join(failures)


# what debootstrap prints when the package mirror cannot be reached (a closed network, not a bug here)
MIRROR_UNREACHABLE = (
    "Failed getting release file",
    "Temporary failure resolving",
    "Couldn't download",
    "Could not resolve",
    "Connection refused",
    "Connection timed out",
)


class MirrorUnreachable(RuntimeError):
    """The stand-in base needs Debian's mirror, which this machine cannot reach."""


def ensure_base(podman: Podman) -> float:
    """Import the stand-in python:3.11-slim (scripts/podman_base.sh; cached); returns the seconds it took."""
    start = time.perf_counter()
    env = {
        **podman.env,
        "DAFTSEG_PODMAN_OPTS": shlex.join(podman.options),
        "DAFTSEG_CONTAINER_CACHE": str(cache_folder()),
    }
    res = run_bash(ROOT / "scripts" / "podman_base.sh", env=env)
    if res.returncode != 0:
        if any(sign in res.stderr for sign in MIRROR_UNREACHABLE):
            raise MirrorUnreachable(f"debootstrap could not reach Debian's mirror: {res.stderr.strip()[-600:]}")
        raise RuntimeError(
            f"scripts/podman_base.sh failed ({res.returncode}):\n{res.stdout}{res.stderr[-4000:]}"
        )
    print(res.stdout.strip())
    return time.perf_counter() - start


def run_bash(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``bash SCRIPT ARGS`` with its output captured (never raises on a non-zero exit)."""
    return subprocess.run(
        ["bash", str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def base_needs_building(podman: Podman) -> bool:
    """True when neither the stand-in nor a real python:3.11-slim is in the test's storage."""
    return podman.run("image", "exists", "docker.io/library/python:3.11-slim", check=False).returncode != 0


def copy_tree_items(items: list[str], dest: Path) -> None:
    """Copy repository files or folders (relative paths, __pycache__ left out) under ``dest``."""
    for rel in items:
        src, dst = ROOT / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``folder``: relative path -> (size, mtime_ns, owner uid)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_uid)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
