"""DAFT 916bd4e's routing table (spec §11.3, §11.4) ships as ``modalities_916bd4e.toml`` and is chosen
by name or path: ``--routing 916bd4e``, or ``DAFTSEG_ROUTING`` (predict.sh, the app)."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture

from daftseg.inference import Segmenter
from daftseg.inference.routing import DEFAULT_TABLE, ROUTING_ENV, RoutingTable, resolve_table
from daftseg.inference.runner import main as perfect_meta


def cpp_filename_to_modelname(f: str) -> str:
    """916bd4e's cpp/src/main.cpp filename_to_modelname, rule by rule (spec §11.4)."""
    starts = [(("3DBox_PET", "3DBox_MR", "3DBox_CT"), "3D"),
              (("2DBox_X-Ray", "2DBox_XRay", "2DBox_CXR", "2DBox_XR"), "XRay"),
              (("2DBox_US", "2DBox_Ultra"), "US"), (("2DBox_Fundus",), "Fundus"),
              (("2DBox_Endoscopy", "2DBox_Endoscope"), "Endoscopy"),
              (("2DBox_Dermoscope", "2DBox_Dermoscopy"), "Dermoscopy"),
              (("2DBox_Microscope", "2DBox_Microscopy"), "Microscopy"),
              (("2DBox_CT", "2DBox_MR", "2DBox_PET"), "3D"), (("2DBox_Mamm",), "Mammography"),
              (("2DBox_OCT",), "OCT"), (("3DBox_",), "3D")]
    for prefixes, model in starts:
        if f.startswith(prefixes):
            return model
    for subs, model in [(("Microscope", "Microscopy"), "Microscopy"), (("Dermoscopy",), "Dermoscopy"),
                        (("Endoscopy",), "Endoscopy"), (("Fundus",), "Fundus"), (("X-Ray", "XRay"), "XRay"),
                        (("PET",), "3D"), (("OCT",), "OCT"), (("MR",), "3D"), (("Mamm",), "Mammography"),
                        (("US",), "US"), (("CT",), "3D")]:
        if any(s in f for s in subs):
            return model
    return "general"


def test_table_is_916bd4e():
    table = RoutingTable.load("916bd4e")
    assert table.fallback == "general" and len(table.rules) == 25
    named = {"3DBox_CT_0566.npz": "3D", "3DBox_MR_0621.npz": "3D", "3DBox_PET_0001.npz": "3D",
             "2DBox_US_0525.npz": "US", "2DBox_Ultrasound_0001.npz": "US", "2DBox_CT_0001.npz": "3D",
             "2DBox_X-Ray_0053.npz": "XRay", "2DBox_Microscope_0016.npz": "Microscopy",
             "3DBox_Other_0001.npz": "3D", "3DBox_OCT_0001.npz": "3D", "2DBox_OCT_0001.npz": "OCT",
             "anything.npz": None}
    for name, model in named.items():
        assert table.match(name)[0] == model, name
    assert table.route("anything.npz", warn=False).model == "general"
    heads = ["2DBox_", "3DBox_", "", "x"]
    words = ["US", "Ultra", "CT", "MR", "PET", "OCT", "XRay", "X-Ray", "CXR", "XR", "Fundus", "Endoscopy",
             "Endoscope", "Dermoscope", "Dermoscopy", "Microscope", "Microscopy", "Mamm", "us", "Other"]
    for head, a, b in itertools.product(heads, words, words):
        name = f"{head}{a}_{b}_0001.npz"
        assert table.route(name, warn=False).model == cpp_filename_to_modelname(name), name


def test_names_paths_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ROUTING_ENV, raising=False)
    assert resolve_table(None) == DEFAULT_TABLE and resolve_table("93f1e55") == DEFAULT_TABLE
    shipped = resolve_table("916bd4e")
    assert shipped.name == "modalities_916bd4e.toml" and shipped.parent == DEFAULT_TABLE.parent
    own = tmp_path / "own.toml"
    own.write_text('fallback = "Mine"\n')
    assert RoutingTable.load(own).fallback == "Mine"
    monkeypatch.setenv(ROUTING_ENV, "916bd4e")
    assert RoutingTable.load().fallback == "general"
    assert RoutingTable.load("93f1e55").fallback == "lite_medsam"  # an argument beats the variable
    monkeypatch.setenv(ROUTING_ENV, str(own))
    assert RoutingTable.load().fallback == "Mine"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "916bd4e").write_text('fallback = "FromFile"\n')  # an existing file wins over the name
    assert RoutingTable.load("916bd4e").fallback == "FromFile"
    with pytest.raises(FileNotFoundError, match="shipped table: 93f1e55, 916bd4e"):
        RoutingTable.load(tmp_path / "none.toml")


def test_batch_script_routes_by_the_named_table(toy_models_dir, tmp_path: Path, monkeypatch):  # noqa: F811
    """The toy folder has CT, 3D, XRay and lite_medsam models: 93f1e55 runs CT on CT, 916bd4e on 3D."""
    monkeypatch.delenv(ROUTING_ENV, raising=False)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    np.savez_compressed(imgs / "3DBox_CT_0001.npz", imgs=rng.integers(0, 256, (4, 32, 40)).astype(np.uint8),
                        boxes=np.array([[4, 5, 1, 30, 28, 3]]), spacing=np.ones(3))

    def models_used(*flags: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        rc = perfect_meta(["-i", str(imgs), "-o", str(tmp_path / "segs"), "-m", str(toy_models_dir),
                           "--cache_dir", "", *flags], stdout=out, stderr=err)
        assert rc == 0, err.getvalue()
        return next(w for w in out.getvalue().split() if w.startswith("model="))

    assert models_used() == "model=CT"
    assert models_used("--routing", "916bd4e") == "model=3D"
    monkeypatch.setenv(ROUTING_ENV, "916bd4e")  # what predict.sh passes on
    assert models_used() == "model=3D"
    # the app builds its Segmenter without a table: it follows the variable too
    assert Segmenter(toy_models_dir, cache_dir=None).route("2DBox_Anything_0001.npz", warn=False).model == "general"
