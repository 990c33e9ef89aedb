"""Atomic file writes: a crash or an error leaves the old file or none, never half a file.

Every write of the project goes through here. A write goes to a hidden temporary name in the
destination's folder (same filesystem, so the final ``os.replace`` is atomic), is flushed to disk
with ``fsync``, renamed, and the folder is fsynced so the rename itself survives a power cut.

Temporary names are ``.<name>.<pid>-<8 hex>.tmp`` (a file for ``atomic_path``, a folder for
``atomic_paths``): hidden, and never matching the ``*.npz`` / ``*.onnx`` / ``*.xml`` scans. A
process killed mid-write leaves one behind; the first write of a later process into that folder
removes those older than its own start whose writer is no longer running.

The process umask is never touched: a temporary file is created with ``os.open`` and mode 0o666,
which the kernel narrows by the umask exactly as a plain ``open()`` would.

Standard library only, so every stage (the torch-free inference path included) shares it.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# temporary files older than this were left by an earlier process (taken at import: anything a
# killed run left behind predates it)
_PROCESS_START = time.time()
# only names this module makes, with the writer's pid: a temporary of other code (mkstemp's names
# carry no pid) may belong to a writer still at work, so it is never swept
_TMP_NAME = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.tmp$")
_swept: set[str] = set()
_swept_lock = threading.Lock()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    The temporary file already exists (empty, with the mode a plain ``open()`` gives) when the body
    runs; the body writes it by name. On success it is fsynced, renamed over ``path`` and the folder
    is fsynced. On an exception the temporary file is removed and ``path`` is left untouched.
    Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path.parent)
    tmp = _create_temp_file(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """``open()`` a temporary file next to ``path`` that replaces ``path`` on success.

    Text modes write UTF-8 with ``newline=""`` (what the csv module wants).
    """
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with atomic_path(path) as tmp, open(tmp, mode, **text) as fh:
        yield fh


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


@contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Write several files together (a case's ``imgs`` and ``gts``): all appear, or none.

    Yields one temporary path per entry of ``paths``, in order. Each temporary path has its final
    file's name (writers that choose a format by the extension, such as SimpleITK or
    ``np.savez``, work unchanged) and lies in a private hidden folder inside its destination's
    folder, one such folder per distinct destination folder, so every rename stays on one
    filesystem. The temporary paths do not exist yet; the body creates them.

    On success every file is fsynced, then all are renamed to their final paths (an existing file
    there is replaced: refusing is the caller's decision) and the destination folders are fsynced.
    On an exception in the body nothing new is left: the temporary folders are removed. A file the
    body did not write is an error naming it. If a rename fails midway (a final path is a folder,
    say), the files already moved are removed again, so a pair is never left half-written.
    """
    finals = [Path(p) for p in paths]
    if not finals:
        raise ValueError("atomic_paths: no paths given")
    keys = [os.path.abspath(p) for p in finals]
    if len(set(keys)) != len(keys):
        raise ValueError(f"atomic_paths: the same path is given twice: {[str(p) for p in finals]}")
    folders: dict[Path, Path] = {}
    try:
        for final in finals:
            parent = final.parent
            if parent not in folders:
                parent.mkdir(parents=True, exist_ok=True)
                sweep_stale_temporaries(parent)
                folders[parent] = _create_temp_dir(parent, final.name)
        temps = [folders[f.parent] / f.name for f in finals]
        yield temps
        for tmp, final in zip(temps, finals, strict=True):
            if not tmp.is_file():
                raise FileNotFoundError(f"{final}: nothing was written for this file")
            if final.is_dir():
                raise IsADirectoryError(f"{final}: a folder is in the way of this file")
            _fsync_file(tmp)
        moved: list[Path] = []
        try:
            for tmp, final in zip(temps, finals, strict=True):
                os.replace(tmp, final)
                moved.append(final)
        except BaseException:
            for final in moved:
                final.unlink(missing_ok=True)
            raise
        for parent in folders:
            _fsync_dir(parent)
    finally:
        for tmp_dir in folders.values():
            shutil.rmtree(tmp_dir, ignore_errors=True)


def sweep_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders a killed process left in ``folder``.

    Only names this module makes are considered, and of those only the ones last modified before
    this process started whose writing process is not running any more (a concurrent writer's
    temporaries are kept). Each folder is swept once per process: a stale temporary can only
    appear there when a process dies, and one dying after this process started is newer than it.
    Returns what was removed.
    """
    key = os.path.abspath(folder)
    with _swept_lock:
        if key in _swept:
            return []
        _swept.add(key)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")) or not _is_stale(entry):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass  # another process swept it first, or it is not ours to remove
    return removed


def _is_stale(entry: os.DirEntry) -> bool:
    match = _TMP_NAME.match(entry.name)
    if match is None:
        return False
    try:
        if entry.stat(follow_symlinks=False).st_mtime >= _PROCESS_START:
            return False
    except OSError:
        return False
    pid = int(match.group(1))
    # the same pid as ours, yet older than us: a container restart (pid 1 again), not our own file
    return pid == os.getpid() or not _pid_running(pid)


def _pid_running(pid: int) -> bool:
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process there: keep everything
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or we cannot tell): keep its files
    return True


def _temp_name(final_name: str) -> str:
    return f".{final_name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _create_temp_file(path: Path) -> Path:
    for _ in range(100):
        tmp = path.parent / _temp_name(path.name)
        try:
            # 0o666 narrowed by the umask in the kernel: the mode a plain open() would give
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def _create_temp_dir(parent: Path, final_name: str) -> Path:
    for _ in range(100):
        tmp = parent / _temp_name(final_name)
        try:
            os.mkdir(tmp, 0o700)  # private while it fills; the files inside get their usual modes
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(parent / final_name))


def _fsync_file(path: Path) -> None:
    # O_RDWR where allowed: Windows fsync needs a writable handle; POSIX accepts read-only
    flags = os.O_RDWR if os.name == "nt" else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":
        return  # folders cannot be opened for fsync there; NTFS journals the rename
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        # some filesystems (certain network / FUSE mounts) do not support fsync of a folder
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
