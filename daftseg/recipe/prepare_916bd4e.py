"""DAFT 916bd4e's data preparation (its README, spec §11.1), as moves that can be undone.

``python -m daftseg.recipe.prepare_916bd4e DATA`` prints what the README's shell commands do to the
unzipped data under ``DATA/CVPR24-MedSAMLaptopData/train_npz`` (or ``DATA`` itself):

- ``mv NewTrainingData/totalseg_mr MR``: the folder becomes ``MR/totalseg_mr``;
- in ``CVPR24-PostChallenge-Train/``: ``mkdir XRay PET``; every file loses its first 3 characters
  (``mv "$file" "${file:3}"``, "all files of a modality have the modality name as prefix"); then
  ``X-Ray_Teeth_*`` go into ``XRay/`` and ``PET_Lesion_psma_*`` into ``PET/``, where
  ``split_dataset.py`` finds them as dataset folders (files left directly in the folder are not
  used).

Nothing is moved without ``--apply``. With it every move is written to a log (default
``<train_npz>/prepare_916bd4e.log``) before it is made; nothing is deleted and nothing is
overwritten: a destination that exists, or two files that would get the same name, stop the whole
run before its first move. A root that already has a log is not prepared again (the README's
rename would strip 3 more characters). ``--undo LOG`` prints the reverse moves, ``--undo LOG
--apply`` makes them (and removes the folders it created when they are empty again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from daftseg.data.splits import resolve_train_npz

LOG_NAME = "prepare_916bd4e.log"
NEW_DATA = Path("NewTrainingData") / "totalseg_mr"
MR = Path("MR")
POST = Path("CVPR24-PostChallenge-Train")
STRIP = 3  # ${file:3}
# after the rename: (prefix, sub-folder of POST) as `mv X-Ray_Teeth_* XRay/ && mv PET_Lesion_psma_* PET/`
SORT_INTO = (("X-Ray_Teeth_", "XRay"), ("PET_Lesion_psma_", "PET"))


class PrepareError(RuntimeError):
    """The preparation cannot run as planned; nothing has been moved."""


@dataclass(frozen=True)
class Op:
    kind: str  # "mkdir" | "move"
    path: Path  # mkdir: the folder; move: the source
    dst: Path | None = None

    def line(self, root: Path) -> str:
        rel = os.path.relpath
        if self.kind == "mkdir":
            return f"mkdir {rel(self.path, root)}"
        return f"move  {rel(self.path, root)} -> {rel(self.dst, root)}"

    def to_json(self) -> str:
        return json.dumps({"op": self.kind, "path": str(self.path), **({"dst": str(self.dst)} if self.dst else {})})


def plan(root: Path) -> list[Op]:
    """The README's steps under ``root`` (a train_npz folder) as moves; PrepareError on any conflict."""
    ops: list[Op] = []
    problems: list[str] = []
    src = root / NEW_DATA
    if src.is_dir():
        if not (root / MR).is_dir():
            problems.append(f"{root / MR} does not exist: where should {NEW_DATA} go?")
        ops.append(Op("move", src, root / MR / NEW_DATA.name))
    post = root / POST
    if post.is_dir():
        for _, folder in SORT_INTO:
            if not (post / folder).is_dir():
                ops.append(Op("mkdir", post / folder))
        for path in sorted(p for p in post.iterdir() if p.is_file() and not p.name.startswith(".")):
            new = path.name[STRIP:]
            if not new:
                problems.append(f"{path}: the name has no more than {STRIP} characters; it cannot lose {STRIP}")
                continue
            folder = next((f for prefix, f in SORT_INTO if new.startswith(prefix)), "")
            ops.append(Op("move", path, post / folder / new if folder else post / new))
    if not ops and not problems:
        raise PrepareError(f"{root} holds neither {NEW_DATA} nor {POST}/: nothing to prepare (give the folder "
                           f"the training data were unzipped into)")
    sources = {op.path for op in ops if op.kind == "move"}
    seen: dict[Path, Path] = {}
    for op in ops:
        if op.kind != "move":
            continue
        assert op.dst is not None
        if op.dst in seen:
            problems.append(f"{seen[op.dst].name} and {op.path.name} would both become {op.dst}")
        seen[op.dst] = op.path
        # a file renamed onto a name another file is moved away from would still be an overwrite
        # if that other move came later: refuse it too
        if os.path.lexists(op.dst) and op.dst != op.path:
            what = " (it is itself to be moved, later)" if op.dst in sources else ""
            problems.append(f"{op.dst} exists{what}: {op.path.name} would overwrite it")
    if problems:
        raise PrepareError("nothing moved:\n  " + "\n  ".join(problems))
    return ops


def _append(log, line: str) -> None:
    log.write(line + "\n")
    log.flush()
    os.fsync(log.fileno())  # the entry is on disk before the move it announces


def apply(root: Path, ops: list[Op], log_path: Path) -> None:
    """Make the moves, each logged first. Stops at the first failure (the log shows how far it got)."""
    with open(log_path, "x", encoding="utf-8") as log:  # "x": never over an earlier run's log
        _append(log, json.dumps({"tool": "daftseg.recipe.prepare_916bd4e", "root": str(root),
                                 "started": datetime.now().isoformat(timespec="seconds")}))
        for op in ops:
            _append(log, op.to_json())
            if op.kind == "mkdir":
                op.path.mkdir()
            else:
                assert op.dst is not None
                if os.path.lexists(op.dst):  # appeared since the plan was made
                    raise PrepareError(f"{op.dst} exists now; stopped before moving {op.path} (see {log_path})")
                os.rename(op.path, op.dst)


def read_log(log_path: Path) -> tuple[Path, list[Op]]:
    lines = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines or lines[0].get("tool") != "daftseg.recipe.prepare_916bd4e":
        raise PrepareError(f"{log_path} is not a log of daftseg.recipe.prepare_916bd4e")
    ops = [Op(e["op"], Path(e["path"]), Path(e["dst"]) if "dst" in e else None) for e in lines[1:]]
    return Path(lines[0]["root"]), ops


def undo_plan(ops: list[Op]) -> tuple[list[Op], list[str]]:
    """The reverse of the logged moves that were made, latest first, and notes on the others."""
    reverse, notes = [], []
    for op in reversed(ops):
        if op.kind == "mkdir":
            reverse.append(op)
            continue
        assert op.dst is not None
        if os.path.lexists(op.dst) and not os.path.lexists(op.path):
            reverse.append(Op("move", op.dst, op.path))
        elif os.path.lexists(op.path) and not os.path.lexists(op.dst):
            notes.append(f"{op.path} was not moved (nothing to undo)")
        else:
            notes.append(f"{op.path} and {op.dst} both {'exist' if os.path.lexists(op.path) else 'are missing'}: "
                         f"left as they are")
    return reverse, notes


def undo(ops: list[Op]) -> list[str]:
    """Make the reverse moves; remove each created folder that is empty again. Returns notes."""
    notes = []
    for op in ops:
        if op.kind == "mkdir":
            if op.path.is_dir() and not any(op.path.iterdir()):
                op.path.rmdir()
            elif op.path.exists():
                notes.append(f"{op.path} is not empty: kept")
            continue
        assert op.dst is not None
        if os.path.lexists(op.dst):
            notes.append(f"{op.dst} exists: {op.path} not moved back")
            continue
        os.rename(op.path, op.dst)
    return notes


def _undo_main(log_path: Path, do_it: bool) -> int:
    root, ops = read_log(log_path)
    reverse, notes = undo_plan(ops)
    print(f"# undo {log_path} in {root}" + ("" if do_it else " (dry run: nothing moved; --apply moves)"))
    for op in reverse:
        print(op.line(root) if op.kind == "move" else f"rmdir {os.path.relpath(op.path, root)} (if empty)")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if do_it:
        notes = undo(reverse)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        done = log_path.with_name(f"{log_path.name}.undone-{datetime.now():%Y%m%d-%H%M%S}")
        log_path.rename(done)  # kept, under another name: the root may be prepared again
        print(f"# undone; the log is now {done}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daftseg.recipe.prepare_916bd4e",
                                description="DAFT 916bd4e's data preparation (totalseg_mr into MR, the post-challenge "
                                            "files renamed and sorted into XRay/ and PET/): a dry run unless --apply.")
    p.add_argument("data", nargs="?", type=Path,
                   help="the folder holding CVPR24-MedSAMLaptopData/train_npz, or train_npz itself")
    p.add_argument("--apply", action="store_true", help="make the moves (default: only print them)")
    p.add_argument("--log", type=Path, help=f"the undo log (default: <train_npz>/{LOG_NAME})")
    p.add_argument("--undo", type=Path, metavar="LOG", help="reverse the moves of LOG (with --apply: make them)")
    args = p.parse_args(argv)
    try:
        if args.undo:
            return _undo_main(args.undo, args.apply)
        if args.data is None:
            p.error("give the data folder (or --undo LOG)")
        root = resolve_train_npz(args.data).resolve()
        log_path = args.log or root / LOG_NAME
        if log_path.exists():
            raise PrepareError(f"{root} was prepared already (log {log_path}); preparing again would strip "
                               f"{STRIP} more characters. To start over: --undo {log_path} --apply")
        ops = plan(root)
        moves = sum(op.kind == "move" for op in ops)
        print(f"# DAFT 916bd4e data preparation in {root}"
              + ("" if args.apply else " (dry run: nothing moved; --apply moves)"))
        for op in ops:
            print(op.line(root))
        if args.apply:
            apply(root, ops, log_path)
            print(f"# moved {moves}; log {log_path} (undo: python -m daftseg.recipe.prepare_916bd4e --undo "
                  f"{log_path} --apply)")
        else:
            print(f"# {moves} moves")
    except (PrepareError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
