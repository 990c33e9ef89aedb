"""Mutation testing of the geometry and the 2D/3D algorithms (issue 12): mutants made, killed, surviving.

mutmut (pinned in the ``dev`` extra, configured in pyproject.toml ``[tool.mutmut]``) mutates
``daftseg/geometry.py`` and ``daftseg/inference/{case2d,case3d,boxes}.py`` and runs, for each mutant,
the tests that call the mutated function, from a fast subset: the literal geometry tests
(tests/test_geometry_literal.py), the inference unit tests (tests/test_inference_units.py) and the
toy-IR equivalence tests at the default precision (tests/test_inference_equivalence.py). It works in a temporary copy of the repository, so the
working tree never gets mutmut's ``mutants/`` folder.

    .venv/bin/python bench/mutation.py                      # all four files (about 30 min on 2 cores)
    .venv/bin/python bench/mutation.py 'daftseg.geometry*'  # mutant names matching a pattern
    .venv/bin/python bench/mutation.py --keep /tmp/mut      # keep the copy (then: cd /tmp/mut && mutmut show NAME)

Prints one line per status (made = all mutants; killed includes timeouts, which a test run also
noticed), then the diff of every surviving mutant. Exit status 0 whether or not mutants survive.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPIED = ("daftseg", "tests", "pyproject.toml", "bench/mutation.py")
NOTICED = {"killed", "timeout", "caught by type check", "segfault"}


def copy_repository(dest: Path) -> None:
    """The package, the tests and the configuration, without caches."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def mutmut(args: list[str], cwd: Path, log=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=cwd, env=env, text=True,
                          stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT if log else subprocess.PIPE,
                          check=False)


def results(cwd: Path) -> dict[str, str]:
    """mutant name -> status."""
    out = mutmut(["results", "--all", "true"], cwd).stdout
    statuses = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            statuses[name] = status
    return statuses


def pytest_collection_modifyitems(items) -> None:
    """pytest hook, active only under mutmut (``-p bench.mutation`` in ``[tool.mutmut]``): cheap tests first.

    mutmut runs a mutant's tests with ``-x`` in no set order; the literal geometry tests and the
    unit tests (no OpenVINO model, a few seconds together) go first, so most mutants are killed
    before any model is compiled.
    """
    order = ("test_geometry_literal", "test_inference_units")
    items.sort(key=lambda item: next((k for k, name in enumerate(order) if name in item.nodeid), len(order)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="mutant name patterns (default: every mutant)")
    p.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="parallel mutant runs")
    p.add_argument("--keep", default=None, metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = p.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="daftseg-mutation-"))
    try:
        if not (work / "pyproject.toml").exists():
            work.mkdir(parents=True, exist_ok=True)
            copy_repository(work)
        t0 = time.perf_counter()
        with open(work / "mutmut-run.log", "w") as log:
            run = mutmut(["run", "--max-children", str(args.max_children), *args.names], work, log)
        seconds = time.perf_counter() - t0
        statuses = results(work)
        if args.names:
            import fnmatch
            statuses = {k: v for k, v in statuses.items() if any(fnmatch.fnmatch(k, n) for n in args.names)}
        if not statuses:
            print((work / "mutmut-run.log").read_text()[-4000:])
            print(f"mutmut produced no results (exit status {run.returncode})", file=sys.stderr)
            return 1
        counts = collections.Counter(statuses.values())
        killed = sum(n for s, n in counts.items() if s in NOTICED)
        survived = sorted(k for k, s in statuses.items() if s == "survived")
        print(f"mutation run: {seconds / 60:.1f} min, {args.max_children} parallel, in {work}")
        print(f"made      {len(statuses)}")
        print(f"killed    {killed}  ({', '.join(f'{s} {n}' for s, n in sorted(counts.items()) if s in NOTICED)})")
        print(f"surviving {len(survived)}")
        for status in sorted(set(counts) - NOTICED - {'survived'}):
            print(f"{status:9} {counts[status]}")
        for name in survived:
            print()
            print(mutmut(["show", name], work).stdout.rstrip())
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
