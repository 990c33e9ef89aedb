"""README.md and docs/*.md: a short front page, every page reachable and starting with a command,
every relative link and anchor resolving, and every option in their commands one the program has.

The commands are read from the fenced code blocks of README.md and docs/*.md. A line runs a program
of this repository when it names a root script (``python PerfectMetaOpenVINO.py``, ``torchrun ...
finetune_npz_devit_fulldataset.py``, ``./demo.sh``), a module (``python -m daftseg.recipe``) or a
console command of pyproject.toml (``daftseg-segment``); its options must be ones that program's
argparse parser defines (the parser is taken from the program's own ``main``, stopped at
``parse_args``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 200

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
OPTION = re.compile(r"^--?[A-Za-z][\w-]*$")


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def code_blocks(page: Path) -> list[str]:
    return FENCE.findall(text(page))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    body = FENCE.sub("", text(page))
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", body, re.MULTILINE)}


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", text(page)))


# --- the front page and the pages ------------------------------------------------------------------

def test_readme_is_a_short_front_page():
    lines = text(README).splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; details go to docs/"


def test_readme_starts_with_the_two_commands():
    """The first code block is the two commands of a fresh checkout, and both scripts are there."""
    first = code_blocks(README)[0].splitlines()
    assert [line.split()[0] for line in first] == ["./demo.sh", "./test.sh"]
    for script in ("demo.sh", "test.sh", "scripts/setup.sh"):
        path = ROOT / script
        assert path.is_file() and path.stat().st_mode & 0o111, script


@pytest.mark.parametrize("page", DOCS, ids=rel)
def test_docs_page_starts_with_a_command(page):
    """A title, then (before any prose) the code block a user types."""
    lines = [line for line in text(page).splitlines() if line.strip()]
    assert lines[0].startswith("# "), f"{rel(page)}: no title"
    assert lines[1].startswith("```"), f"{rel(page)}: the title is not followed by a code block"


def test_readme_links_every_docs_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}
    missing = [rel(p) for p in DOCS if p.resolve() not in linked]
    assert DOCS and not missing, f"docs pages the README does not link: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_and_anchors_resolve(page):
    bad = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with that anchor in {rel(dest)}")
    assert not bad, f"{rel(page)}: " + "; ".join(bad)


# --- the commands in the code blocks -----------------------------------------------------------------

class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__(parser.prog)
        self.parser = parser


def _import_target(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name or "main")


def _script_main(path: Path) -> str | None:
    """``module:function`` a root script or shell wrapper runs."""
    source = path.read_text(encoding="utf-8")
    m = re.search(r"^from (daftseg[\w.]*) import (\w+)", source, re.MULTILINE)
    if m:
        return f"{m[1]}:{m[2]}"
    m = re.search(r"-m (daftseg[\w.]*)", source)
    return _module_main(m[1]) if m else None


def _module_main(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec.submodule_search_locations:  # a package: its __main__.py says what it runs
        return _script_main(Path(spec.submodule_search_locations[0]) / "__main__.py") or f"{module}:main"
    return f"{module}:main"


def _console_scripts() -> dict[str, str]:
    return tomllib.loads(text(ROOT / "pyproject.toml"))["project"]["scripts"]


@dataclass(frozen=True)
class Command:
    page: str
    program: str  # as the page names it
    target: str  # module:function
    options: tuple[str, ...]
    lead: tuple[str, ...]  # the words before the first option (a sub-command, positional arguments)


def _logical_lines(block: str) -> list[str]:
    lines, current = [], ""
    for raw in block.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()  # a shell comment
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    return [line for line in lines if line.strip()]


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _program(words: list[str], i: int, scripts: dict[str, str]) -> tuple[str, str] | None:
    word = words[i]
    if word in scripts:
        return word, scripts[word]
    if word == "-m" and i + 1 < len(words) and words[i + 1].startswith("daftseg"):
        return f"-m {words[i + 1]}", _module_main(words[i + 1])
    path = ROOT / word.removeprefix("./")
    if word.endswith((".py", ".sh")) and path.is_file() and path.parent in (ROOT, ROOT / "evaluation"):
        target = _script_main(path)
        if target:
            return word, target
    return None


def commands(page: Path) -> list[Command]:
    scripts = _console_scripts()
    found = []
    for block in code_blocks(page):
        for line in _logical_lines(block):
            for part in re.split(r"&&|;", line):
                words = _words(part)
                for i in range(len(words)):
                    hit = _program(words, i, scripts)
                    if hit:
                        rest = words[i + (2 if hit[0].startswith("-m ") else 1):]
                        opts = [w.strip("[](){}").partition("=")[0] for w in rest]
                        n = next((k for k, o in enumerate(opts) if OPTION.match(o)), len(opts))
                        found.append(Command(rel(page), hit[0], hit[1], tuple(o for o in opts if OPTION.match(o)),
                                             tuple(rest[:n])))
                        break
    return found


ALL_COMMANDS = [c for page in PAGES for c in commands(page)]


def parser_options(command: Command, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every option string of the program's parser (and of its sub-commands' parsers).

    A console command's function takes no arguments and reads sys.argv (``daftseg-export lite ...``
    dispatches on its first word, so that word is kept)."""
    main = _import_target(command.target)

    def capture(self, *args, **kwargs):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    try:
        if inspect.signature(main).parameters:
            main(["--help"])
        else:
            monkeypatch.setattr(sys, "argv", [command.program, *command.lead[:1], "--help"])
            main()
    except _Parsed as parsed:
        parser = parsed.parser
    else:
        raise AssertionError(f"{command.program} returned without parsing its arguments")
    finally:
        monkeypatch.undo()
    options, todo = set(), [parser]
    while todo:
        p = todo.pop()
        options |= set(p._option_string_actions)
        todo += [sub for a in p._actions if isinstance(a, argparse._SubParsersAction) for sub in a.choices.values()]
    return options


# job -> the programs (as a page names them) that do it: the README shows at least one of each
JOBS = {
    "demo": {"./demo.sh"},
    "train": {"-m daftseg.recipe", "distill_fulldataset.py", "finetune_npz_devit_fulldataset.py",
              "finetune_npz_devit_fulldataset3D.py"},
    "export": {"export_onnx.py", "onnx2openvino.py", "liteov.py", "daftseg-export"},
    "infer": {"PerfectMetaOpenVINO.py", "daftseg-infer"},
    "evaluate": {"evaluation/compute_metrics.py", "daftseg-eval"},
    "own scan": {"daftseg-segment", "-m daftseg.segment"},
    "app": {"daftseg-app", "-m daftseg.app"},
}


def test_the_pages_show_a_command_of_every_job():
    """The README has one example per job; README and docs together run every program the repo has."""
    in_readme = {c.program for c in ALL_COMMANDS if c.page == "README.md"}
    missing = [job for job, programs in JOBS.items() if not programs & in_readme]
    assert not missing, f"jobs the README shows no command for: {missing}"
    assert any("./build_docker_openvino.sh" in block for block in code_blocks(README)), "Docker"
    everywhere = {c.target for c in ALL_COMMANDS}
    roots = {_script_main(p) for p in [*ROOT.glob("*.py"), *ROOT.glob("*.sh"), ROOT / "evaluation/compute_metrics.py"]}
    missing = sorted(t for t in roots - {None} if t not in everywhere)
    assert not missing, f"root scripts no page shows a command of: {missing}"


def _program_key(c: Command) -> str:
    """A console command may dispatch on its first word (``daftseg-export lite``): one parser each."""
    return " ".join([c.target, *c.lead[:1]]) if c.program in _console_scripts() else c.target


@pytest.mark.parametrize("key", sorted({_program_key(c) for c in ALL_COMMANDS}))
def test_every_option_in_the_pages_is_the_programs(key, monkeypatch):
    mine = [c for c in ALL_COMMANDS if _program_key(c) == key]
    known = parser_options(mine[0], monkeypatch)
    unknown = [f"{c.page}: {c.program} {o}" for c in mine for o in c.options if o not in known]
    assert not unknown, f"options the program does not define: {unknown}"
