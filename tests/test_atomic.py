"""Atomic writes: the target appears whole on success and is untouched on failure."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from daftseg.atomic import atomic_open, atomic_path, atomic_paths, atomic_write_bytes, atomic_write_text


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_success_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.csv"
    atomic_write_text(target, "a,b\n")
    atomic_write_text(target, "c,d\n")
    assert target.read_text() == "c,d\n"
    assert _names(target.parent) == ["out.csv"]
    assert target.stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode


def test_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target, "wb") as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.bin") as tmp:
        tmp.write_bytes(b"x")
        raise RuntimeError("boom")
    assert _names(tmp_path) == ["out.bin"]


def test_mode_follows_the_umask_without_touching_it(tmp_path, monkeypatch):
    """Files get 0o666 narrowed by the umask, as open() would, and os.umask is never called."""

    def forbidden(*_):
        raise AssertionError("os.umask must not be called")

    monkeypatch.setattr(os, "umask", forbidden)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_paths([tmp_path / "b.txt"]) as (tmp,):
        tmp.write_text("x")
    for name in ("a.txt", "b.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_mode_under_a_strict_umask(tmp_path):
    """In a child with umask 077 the file is 0o600; in one with 022 it is 0o644."""
    code = (
        "import os, stat, sys; os.umask(int(sys.argv[2], 8));"
        "from daftseg.atomic import atomic_write_text as w; w(sys.argv[1], 'x');"
        "print(oct(stat.S_IMODE(os.stat(sys.argv[1]).st_mode)))"
    )
    for mask, expected in (("077", "0o600"), ("022", "0o644")):
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / f"f{mask}"), mask],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == expected


def test_fsyncs_file_then_folder(tmp_path, monkeypatch):
    calls: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert calls == ["file", "dir"]
    calls.clear()
    with atomic_paths([tmp_path / "imgs" / "c.npz", tmp_path / "gts" / "c.npz"]) as (a, b):
        a.write_bytes(b"1")
        b.write_bytes(b"2")
    assert calls == ["file", "file", "dir", "dir"]


def test_paired_write_all_or_nothing(tmp_path):
    img, gt = tmp_path / "imgs" / "case.npz", tmp_path / "gts" / "case.npz"
    with atomic_paths([img, gt]) as (t_img, t_gt):
        assert t_img.name == "case.npz" and t_gt.name == "case.npz"  # extension-driven writers work
        assert t_img.parent.parent == img.parent and t_gt.parent.parent == gt.parent
        assert t_img.parent.name.startswith(".") and t_img.parent.name.endswith(".tmp")
        assert not img.exists() and not gt.exists()
        np.savez(t_img, imgs=np.ones(3))
        np.savez(t_gt, gts=np.zeros(3))
    assert _names(img.parent) == ["case.npz"] and _names(gt.parent) == ["case.npz"]
    with np.load(img) as z:
        assert z["imgs"].tolist() == [1, 1, 1]

    # an error after one of the two was written: neither appears, no temporary is left
    img2, gt2 = tmp_path / "imgs" / "other.npz", tmp_path / "gts" / "other.npz"
    with pytest.raises(RuntimeError), atomic_paths([img2, gt2]) as (t_img, _t_gt):
        np.savez(t_img, imgs=np.ones(3))
        raise RuntimeError("boom")
    assert _names(img.parent) == ["case.npz"] and _names(gt.parent) == ["case.npz"]


def test_paired_write_missing_member_or_folder_in_the_way(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    with (
        pytest.raises(FileNotFoundError, match="b.txt: nothing was written"),
        atomic_paths([a, b]) as (ta, _),
    ):
        ta.write_text("a")
    assert _names(tmp_path) == []
    b.mkdir()
    with pytest.raises(IsADirectoryError, match="b.txt"), atomic_paths([a, b]) as (ta, tb):
        ta.write_text("a")
        tb.write_text("b")
    assert _names(tmp_path) == ["b.txt"] and not a.exists()


def test_paired_write_rolls_back_a_rename_failure(tmp_path, monkeypatch):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("b.txt"):
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"), atomic_paths([a, b]) as (ta, tb):
        ta.write_text("a")
        tb.write_text("b")
    assert _names(tmp_path) == []


def test_paired_write_same_folder_and_replaces(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"old")
    with atomic_paths([a, b]) as (ta, tb):
        assert ta.parent == tb.parent  # one private folder per destination folder
        ta.write_bytes(b"new-a")
        tb.write_bytes(b"new-b")
    assert a.read_bytes() == b"new-a" and b.read_bytes() == b"new-b"
    with pytest.raises(ValueError, match="twice"), atomic_paths([a, tmp_path / "." / "a.bin"]):
        pass
    assert _names(tmp_path) == ["a.bin", "b.bin"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_a_dead_process_are_swept(tmp_path):
    old = time.time() - 3600
    dead = _dead_pid()
    stale_file = tmp_path / f".case.npz.{dead}-0123abcd.tmp"
    stale_dir = tmp_path / f".case.npz.{dead}-89abcdef.tmp"
    foreign = tmp_path / ".case.npz.k2j4_x9q.tmp"  # mkstemp's name: no pid, maybe a live writer's: kept
    live = tmp_path / f".case.npz.{os.getppid()}-00000000.tmp"  # a running writer's: kept
    fresh = tmp_path / f".case.npz.{dead}-11111111.tmp"  # newer than this process: kept
    user = tmp_path / ".notes.tmp"  # not a name this module makes: kept
    stale_file.write_bytes(b"half")
    stale_dir.mkdir()
    (stale_dir / "case.npz").write_bytes(b"half")
    for p in (foreign, live, user):
        p.write_bytes(b"x")
    for p in (stale_file, stale_dir, foreign, live, user):
        os.utime(p, (old, old))
    fresh.write_bytes(b"x")

    atomic_write_text(tmp_path / "other.txt", "x")
    assert _names(tmp_path) == sorted(["other.txt", foreign.name, live.name, fresh.name, user.name])


def test_stale_temporaries_swept_by_a_paired_write_in_a_new_process(tmp_path):
    """A killed writer's leftovers go away on the next run's first write into that folder."""
    (tmp_path / "segs").mkdir()
    code = (
        "import os, sys, pathlib; from daftseg.atomic import atomic_paths;\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "with atomic_paths([p]) as (t,):\n"
        "    t.write_bytes(b'half'); os._exit(9)\n"
    )
    target = tmp_path / "segs" / "case.npz"
    assert subprocess.run([sys.executable, "-c", code, str(target)], check=False).returncode == 9
    left = _names(target.parent)
    assert len(left) == 1 and left[0].startswith(".case.npz.") and left[0].endswith(".tmp")
    old = time.time() - 60
    os.utime(target.parent / left[0], (old, old))
    code2 = "import sys; from daftseg.atomic import atomic_write_text as w; w(sys.argv[1], 'done')"
    subprocess.run([sys.executable, "-c", code2, str(target)], check=True)
    assert _names(target.parent) == ["case.npz"] and target.read_text() == "done"


def test_write_bytes(tmp_path):
    atomic_write_bytes(tmp_path / "x.png", b"\x89PNG")
    assert (tmp_path / "x.png").read_bytes() == b"\x89PNG"
