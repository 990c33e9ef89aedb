"""PerfectMetaOpenVINO's command line: flags, per-case lines, timing CSV, overlays, shards, bad input."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture

from daftseg.inference import Segmenter
from daftseg.inference.runner import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main([str(a) for a in argv], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def save(folder: Path, name: str, **arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / name, **arrays)
    return folder / name


BOX2D = np.array([[5, 6, 40, 30], [20, 10, 60, 45]])
BOX3D = np.array([[5, 6, 1, 40, 30, 6]])


def good_cases(folder: Path) -> dict[str, np.ndarray]:
    """name -> imgs of a few valid cases."""
    cases = {
        "2DBox_XRay_0001.npz": image((50, 64, 3), 1),
        "2DBox_Fundus_0002.npz": image((64, 50, 3), 2),  # routed to Fundus: absent -> fallback
        "3DBox_CT_0003.npz": image((8, 40, 48), 3),
        "2DBox_Unknown_0004.npz": image((40, 40, 3), 4),  # no rule matches -> fallback
    }
    for name, imgs in cases.items():
        save(folder, name, imgs=imgs, boxes=BOX3D if name.startswith("3D") else BOX2D, spacing=np.ones(3))
    return cases


def test_batch_lines_csv_overlays_and_fallbacks(toy_models_dir, tmp_path: Path) -> None:  # noqa: F811
    inp, out = tmp_path / "imgs", tmp_path / "segs"
    cases = good_cases(inp)
    csv, ovl = tmp_path / "t" / "timing.csv", tmp_path / "overlay"
    rc, stdout, stderr = run_cli("-i", inp, "-o", out, "-m", toy_models_dir, "--cache_dir", "",
                                 "--timing_csv", csv, "--save_overlay", ovl,
                                 # DAFT's flags that do nothing are accepted
                                 "-lite_medsam_checkpoint_path", "x.pth", "-device", "cuda",
                                 "-png_save_dir", "ovl", "--nopandas")
    assert rc == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(cases)
    for name, imgs in cases.items():
        with np.load(out / name) as z:
            assert z.files == ["segs"]
            segs = z["segs"]
        assert segs.dtype == np.uint16 and segs.shape == (imgs.shape if name.startswith("3D") else imgs.shape[:2])
        assert segs.max() >= 1
    lines = [ln for ln in stdout.splitlines() if ".npz" in ln]
    assert len(lines) == 4 and "model=CT" in lines[3] and "boxes=1" in lines[3]  # sorted by name
    assert "model=lite_medsam" in stdout  # Fundus and Unknown both fell back
    assert "model Fundus has no files" in stderr and "no routing rule matches" in stderr
    rows = csv.read_text().splitlines()
    assert rows[0] == "case,model,boxes,slices,seconds" and len(rows) == 5
    assert rows[1].startswith("2DBox_Fundus_0002.npz,lite_medsam,2,1,")
    assert rows[3].startswith("2DBox_XRay_0001.npz,XRay,2,1,")
    assert rows[4].startswith("3DBox_CT_0003.npz,CT,1,5,")
    assert (ovl / "2DBox_XRay_0001.png").is_file() and (ovl / "3DBox_CT_0003_box1_z3.png").is_file()
    # the runner writes what the API returns
    api = Segmenter(toy_models_dir).segment_file(inp / "2DBox_XRay_0001.npz")
    with np.load(out / "2DBox_XRay_0001.npz") as z:
        np.testing.assert_array_equal(z["segs"], api.segs)


def test_shards_split_the_sorted_list(toy_models_dir, tmp_path: Path) -> None:  # noqa: F811
    inp = tmp_path / "imgs"
    names = sorted(good_cases(inp))
    seen = []
    for k in range(3):
        out = tmp_path / f"segs{k}"
        rc, _, err = run_cli("-i", inp, "-o", out, "-m", toy_models_dir, "--cache_dir", "", "--shard", f"{k}/3")
        assert rc == 0, err
        got = sorted(p.name for p in out.glob("*.npz"))  # a cohort run also remembers its settings there
        assert got == names[k::3]
        seen += got
    assert sorted(seen) == names
    with pytest.raises(SystemExit):
        run_cli("-i", inp, "-o", tmp_path / "x", "--shard", "3/3")


def write_bad_cases(folder: Path) -> dict[str, str]:
    """name -> a fragment of the expected one-line error; builds every bad input of the issue."""
    folder.mkdir(parents=True, exist_ok=True)
    img = image((40, 50, 3))
    save(folder, "2DBox_XRay_noimgs.npz", boxes=BOX2D)
    save(folder, "2DBox_XRay_noboxes.npz", imgs=img)
    (folder / "2DBox_XRay_corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip file")
    whole = save(folder, "tmp_whole.npz", imgs=image((64, 64, 3)), boxes=BOX2D).read_bytes()
    (folder / "tmp_whole.npz").unlink()
    (folder / "2DBox_XRay_truncated.npz").write_bytes(whole[: len(whole) // 2])
    save(folder, "3DBox_CT_zrange.npz", imgs=image((6, 30, 30)),
         boxes=np.array([[2, 2, 0, 20, 20, 3], [2, 2, 4, 20, 20, 4]]))
    save(folder, "3DBox_CT_zoutside.npz", imgs=image((6, 30, 30)), boxes=np.array([[2, 2, 10, 20, 20, 14]]))
    save(folder, "3DBox_CT_zmiddle.npz", imgs=image((6, 30, 30)), boxes=np.array([[2, 2, -10, 20, 20, 3]]))
    save(folder, "2DBox_XRay_nanbox.npz", imgs=img, boxes=np.array([[1.0, 2.0, np.inf, 9.0]]))
    save(folder, "2DBox_XRay_3dboxes.npz", imgs=img, boxes=BOX3D)
    save(folder, "3DBox_CT_2dboxes.npz", imgs=image((6, 30, 30)), boxes=BOX2D)
    save(folder, "2DBox_XRay_volume.npz", imgs=image((6, 30, 30)), boxes=BOX2D)
    save(folder, "3DBox_CT_2dimage.npz", imgs=image((30, 30)), boxes=BOX3D)
    save(folder, "2DBox_XRay_nan.npz", imgs=np.full((20, 20), np.nan), boxes=BOX2D)
    np.savez(folder / "2DBox_XRay_pickle.npz", imgs=np.array([img], dtype=object), boxes=BOX2D)
    return {
        "2DBox_XRay_noimgs.npz": "no 'imgs' array",
        "2DBox_XRay_noboxes.npz": "no 'boxes' array",
        "2DBox_XRay_corrupt.npz": "unreadable npz",
        "2DBox_XRay_truncated.npz": "unreadable npz",
        "3DBox_CT_zrange.npz": "box 2: z_min 4 >= z_max 4 (DAFT's script stops here: AssertionError)",
        "3DBox_CT_zoutside.npz": "no box has a slice inside the volume of 6 slices (DAFT's script stops here: IndexError)",
        "3DBox_CT_zmiddle.npz": "box 1: z range [-10, 3] has its middle slice -3 below the volume of 6 slices",
        "2DBox_XRay_nanbox.npz": "boxes contain NaN or inf",
        "2DBox_XRay_3dboxes.npz": "3D boxes (N,6) given for a 2D case",
        "3DBox_CT_2dboxes.npz": "2D boxes (N,4) given for a 3D case",
        "2DBox_XRay_volume.npz": "a 3D volume?",
        "3DBox_CT_2dimage.npz": "needs imgs (D,H,W)",
        "2DBox_XRay_nan.npz": "NaN",
        "2DBox_XRay_pickle.npz": "pickled (object) array",
    }


def test_bad_inputs_fail_alone_with_one_line(toy_models_dir, tmp_path: Path) -> None:  # noqa: F811
    inp, out = tmp_path / "imgs", tmp_path / "segs"
    expected = write_bad_cases(inp)
    img = image((40, 50, 3))
    # handled inputs: written, not errors
    save(inp, "2DBox_XRay_ok.npz", imgs=img, boxes=BOX2D)
    save(inp, "2DBox_XRay_grey.npz", imgs=img[:, :, 0], boxes=BOX2D)
    save(inp, "2DBox_XRay_rgba.npz", imgs=np.dstack([img, np.full(img.shape[:2], 7, np.uint8)]), boxes=BOX2D)
    save(inp, "2DBox_XRay_int64.npz", imgs=img.astype(np.int64), boxes=BOX2D)
    save(inp, "2DBox_XRay_float01.npz", imgs=img / 255.0, boxes=BOX2D)
    save(inp, "2DBox_XRay_uint16.npz", imgs=img.astype(np.uint16) * 200, boxes=BOX2D)
    save(inp, "2DBox_XRay_empty.npz", imgs=img, boxes=np.zeros((0, 4)))
    save(inp, "3DBox_CT_empty.npz", imgs=image((6, 30, 30)), boxes=np.zeros((0,)), spacing=np.ones(3))
    save(inp, "2DBox_XRay_sticksout.npz", imgs=img, boxes=np.array([[-5, 10, 60, 55]]))
    # boxes DAFT segments although they are odd: written, with a warning naming the box
    save(inp, "2DBox_XRay_outside.npz", imgs=img, boxes=np.array([[5, 5, 20, 20], [60, 5, 80, 20]]))
    save(inp, "2DBox_XRay_inverted.npz", imgs=img, boxes=np.array([[30, 5, 20, 20]]))
    save(inp, "3DBox_CT_zabove.npz", imgs=image((6, 30, 30)), boxes=np.array([[2, 2, 0, 20, 20, 3],
                                                                              [2, 2, 6, 20, 20, 7]]))
    # a hidden file is not a case, as DAFT's glob('*.npz') has it
    save(inp, ".2DBox_XRay_hidden.npz", imgs=img, boxes=BOX2D)

    rc, stdout, stderr = run_cli("-i", inp, "-o", out, "-m", toy_models_dir, "--cache_dir", "")
    assert rc == 1
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == len(expected), stderr
    for name, fragment in expected.items():
        line = next((ln for ln in errors if ln.startswith(f"error: {name}:")), None)
        assert line is not None and fragment in line, (name, line)
        assert not (out / name).exists()
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(["2DBox_XRay_ok.npz", "2DBox_XRay_grey.npz", "2DBox_XRay_rgba.npz",
                              "2DBox_XRay_int64.npz", "2DBox_XRay_float01.npz", "2DBox_XRay_uint16.npz",
                              "2DBox_XRay_empty.npz", "3DBox_CT_empty.npz", "2DBox_XRay_sticksout.npz",
                              "2DBox_XRay_outside.npz", "2DBox_XRay_inverted.npz", "3DBox_CT_zabove.npz"])
    assert "float01" not in stderr  # floats below 256: processed as stored, as DAFT
    assert ("warning: 2DBox_XRay_uint16.npz: imgs uint16 in [0, 51000] rescaled to uint8 [0, 255]: 2D values "
            ">= 256 (DAFT's script asserts max < 256)") in stderr
    assert "warning: 2DBox_XRay_outside.npz: box 2 [60, 5, 80, 20] lies wholly outside the 50x40 (WxH) image" in stderr
    assert "warning: 2DBox_XRay_inverted.npz: box 1 [30, 5, 20, 20] is inverted" in stderr
    assert "warning: 3DBox_CT_zabove.npz: box 2: no slice of its z range lies inside the volume of 6 slices" in stderr
    assert "hidden" not in stdout + stderr

    def segs(name: str) -> np.ndarray:
        with np.load(out / name) as z:
            return z["segs"]

    ok = segs("2DBox_XRay_ok.npz")
    np.testing.assert_array_equal(segs("2DBox_XRay_rgba.npz"), ok)  # alpha dropped
    np.testing.assert_array_equal(segs("2DBox_XRay_int64.npz"), ok)  # cast, values unchanged
    assert segs("2DBox_XRay_grey.npz").max() == 2
    assert not segs("2DBox_XRay_empty.npz").any() and segs("2DBox_XRay_empty.npz").shape == (40, 50)
    assert not segs("3DBox_CT_empty.npz").any() and segs("3DBox_CT_empty.npz").shape == (6, 30, 30)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert f"{len(expected)} failed" in stdout and len(expected) == 14

    inverted = segs("2DBox_XRay_inverted.npz")
    assert inverted.dtype == np.uint16 and inverted.shape == (40, 50)
    zabove = segs("3DBox_CT_zabove.npz")
    assert zabove.shape == (6, 30, 30) and not (zabove == 2).any() and (zabove == 1).any()


def models_without(src: Path, dst: Path, drop: list[str]) -> Path:
    shutil.copytree(src, dst)
    for pattern in drop:
        for p in dst.glob(pattern):
            p.unlink()
    return dst


def test_missing_model_files(toy_models_dir, tmp_path: Path) -> None:  # noqa: F811
    inp = tmp_path / "imgs"
    save(inp, "2DBox_XRay_0001.npz", imgs=image((40, 40, 3)), boxes=BOX2D)
    save(inp, "2DBox_US_0002.npz", imgs=image((40, 40, 3)), boxes=BOX2D)

    # only lite_medsam_* left: everything falls back to it and works
    only_lite = models_without(toy_models_dir, tmp_path / "only_lite", ["CT_*", "3D_*", "XRay_*", "static1_*"])
    rc, stdout, stderr = run_cli("-i", inp, "-o", tmp_path / "a", "-m", only_lite, "--cache_dir", "")
    assert rc == 0 and stdout.count("model=lite_medsam") == 2 and "model XRay has no files" in stderr

    # the fallback's decoder missing too: the XRay case still runs, the US case fails naming the file
    no_lite = models_without(toy_models_dir, tmp_path / "no_lite", ["lite_medsam_mask_decoder.*"])
    rc, stdout, stderr = run_cli("-i", inp, "-o", tmp_path / "b", "-m", no_lite, "--cache_dir", "")
    assert rc == 1 and "model=XRay" in stdout
    assert "error: 2DBox_US_0002.npz:" in stderr and "lite_medsam_mask_decoder.xml is missing" in stderr

    # no positional encoding / no prompt encoder: every case fails with a clear line
    for drop, fragment in (["positional_encoding.npy"], "positional_encoding.npy is missing"), \
                          (["*prompt_encoder*"], "no prompt encoder"):
        folder = models_without(toy_models_dir, tmp_path / drop[0].strip("*"), drop)
        rc, _, stderr = run_cli("-i", inp, "-o", tmp_path / "c", "-m", folder, "--cache_dir", "")
        assert rc == 1 and stderr.count(fragment) == 2, stderr


def test_prompt_encoder_lookup_order(toy_models_dir, tmp_path: Path) -> None:  # noqa: F811
    from daftseg.inference.sessions import Sessions

    folder = models_without(toy_models_dir, tmp_path / "m", [])
    s = Sessions(folder)
    assert s.prompt_encoder_path("CT").name == "lite_medsam_prompt_encoder.xml"
    for ext in ("xml", "bin"):
        (folder / f"lite_medsam_prompt_encoder.{ext}").rename(folder / f"CT_prompt_encoder.{ext}")
    assert s.prompt_encoder_path("CT").name == "CT_prompt_encoder.xml"
    shutil.copy(folder / "CT_prompt_encoder.xml", folder / "prompt_encoder.xml")
    shutil.copy(folder / "CT_prompt_encoder.bin", folder / "prompt_encoder.bin")
    assert s.prompt_encoder_path("CT").name == "prompt_encoder.xml"


def test_unwritable_output_and_missing_input(toy_models_dir, tmp_path: Path) -> None:  # noqa: F811
    inp = tmp_path / "imgs"
    save(inp, "2DBox_XRay_0001.npz", imgs=image((40, 40, 3)), boxes=BOX2D)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    rc, _, stderr = run_cli("-i", inp, "-o", blocker / "segs", "-m", toy_models_dir)
    assert rc == 1 and stderr.startswith(f"error: output folder {blocker / 'segs'} is not writable")
    rc, _, stderr = run_cli("-i", tmp_path / "nope", "-o", tmp_path / "segs", "-m", toy_models_dir)
    assert rc == 1 and "input folder" in stderr
    # an unusable cache folder is skipped with a warning, cases still run
    rc, _, stderr = run_cli("-i", inp, "-o", tmp_path / "segs", "-m", toy_models_dir,
                            "--cache_dir", blocker / "cache")
    assert rc == 0 and "not usable" in stderr
    # overlays are a by-product: failing to write one is a warning, the case is done
    rc, _, stderr = run_cli("-i", inp, "-o", tmp_path / "segs2", "-m", toy_models_dir, "--cache_dir", "",
                            "--save_overlay", blocker / "overlay")
    assert rc == 0 and "overlay not written" in stderr and (tmp_path / "segs2" / "2DBox_XRay_0001.npz").is_file()


def test_entry_point_runs_as_a_script(toy_models_dir, tmp_path: Path) -> None:  # noqa: F811
    inp = tmp_path / "imgs"
    save(inp, "2DBox_XRay_0001.npz", imgs=image((30, 40, 3)), boxes=BOX2D)
    save(inp, "2DBox_XRay_0002.npz", imgs=image((30, 40, 3)), boxes=np.array([[50, 50, 60, np.nan]]))
    proc = subprocess.run([sys.executable, str(REPO / "PerfectMetaOpenVINO.py"), "-i", str(inp),
                           "-o", str(tmp_path / "segs"), "-m", str(toy_models_dir), "--cache_dir", "",
                           "--precision", "f32", "--threads", "1"],
                          check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "2DBox_XRay_0001.npz  model=XRay" in proc.stdout
    assert "error: 2DBox_XRay_0002.npz: boxes contain NaN or inf" in proc.stderr
    assert [p.name for p in (tmp_path / "segs").iterdir()] == ["2DBox_XRay_0001.npz"]


def test_start_up_pauses_the_collector_then_freezes_what_it_left() -> None:
    import gc

    from daftseg.inference.runner import _startup_gc_paused

    assert gc.isenabled()
    try:
        with _startup_gc_paused() as end_startup:
            assert not gc.isenabled()
            kept = [[i] for i in range(100)]
            frozen_before = gc.get_freeze_count()
            end_startup()
            assert gc.isenabled() and gc.get_freeze_count() >= frozen_before + len(kept)
            end_startup()  # a second call changes nothing
            assert gc.isenabled()
        assert gc.isenabled()
        gc.disable()  # a caller's choice to run without the collector is kept
        with _startup_gc_paused() as end_startup:
            end_startup()
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def _run_entry_script(code: str, **extra: str) -> list[str]:
    """Output of ``code`` in a fresh interpreter (OPENBLAS_NUM_THREADS: only ``extra``'s); argv[1] = the script."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | extra
    return subprocess.run([sys.executable, "-c", code, str(REPO / "PerfectMetaOpenVINO.py")], env=env,
                          capture_output=True, text=True, check=True).stdout.split()


def test_entry_point_sets_single_threaded_blas_before_numpy_is_imported() -> None:
    # OPENBLAS_NUM_THREADS as the first import of numpy sees it (a finder that only watches)
    code = ("import os, runpy, sys\n"
            "class Watch:\n"
            "    seen = []\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'numpy' and not Watch.seen:\n"
            "            Watch.seen.append(os.environ.get('OPENBLAS_NUM_THREADS', 'unset'))\n"
            "sys.meta_path.insert(0, Watch())\n"
            "runpy.run_path(sys.argv[1], run_name='x')\n"
            "import numpy\n"
            "print(Watch.seen[0])\n")
    assert _run_entry_script(code) == ["1"]
    assert _run_entry_script(code, OPENBLAS_NUM_THREADS="3") == ["3"]  # the user's own setting wins


def _numpy_blas() -> str:
    try:
        return str(np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"])
    except (KeyError, TypeError):
        return "unknown"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc (Linux only)")
@pytest.mark.skipif("openblas" not in _numpy_blas().lower(),
                    reason=f"OPENBLAS_NUM_THREADS governs OpenBLAS only; this numpy uses {_numpy_blas()}")
def test_entry_point_leaves_numpy_without_blas_threads() -> None:
    code = ("import os, runpy, sys; runpy.run_path(sys.argv[1], run_name='x'); import numpy; "
            "print(len(os.listdir('/proc/self/task')))")
    assert _run_entry_script(code) == ["1"]  # OpenBLAS started no thread of its own


def test_fast_exit_ends_the_process_after_flushing_everything(toy_models_dir, tmp_path: Path) -> None:  # noqa: F811
    inp = tmp_path / "imgs"
    save(inp, "2DBox_XRay_0001.npz", imgs=image((30, 40, 3)), boxes=BOX2D)
    save(inp, "2DBox_XRay_0002.npz", imgs=image((30, 40, 3)), boxes=np.array([[50, 50, 60, np.nan]]))
    code = ("import atexit, sys\n"
            "from daftseg.inference.runner import main\n"
            "atexit.register(print, 'teardown ran')\n"
            "main(sys.argv[1:], fast_exit=True)\n"
            "print('main returned')\n")
    proc = subprocess.run([sys.executable, "-c", code, "-i", str(inp), "-o", str(tmp_path / "segs"),
                           "-m", str(toy_models_dir), "--cache_dir", ""],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1  # one case failed
    assert "main returned" not in proc.stdout and "teardown ran" not in proc.stdout
    assert "2DBox_XRay_0001.npz  model=XRay" in proc.stdout and "1 of 2 cases written" in proc.stdout
    assert "error: 2DBox_XRay_0002.npz" in proc.stderr
    with np.load(tmp_path / "segs" / "2DBox_XRay_0001.npz") as z:
        assert z["segs"].shape == (30, 40) and z["segs"].max() > 0
