"""Model names from a routing table become file names: anything that could leave the models folder is refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from daftseg.inference.routing import RoutingTable
from daftseg.inference.runner import main


@pytest.mark.parametrize(
    "name", ["../evil", "a/b", "/abs/model", "a\\b", "..", "x..y", "C:model", "a\0b", ""]
)
def test_bad_rule_model_names_are_refused(name: str) -> None:
    table = {
        "fallback": "lite_medsam",
        "route": [{"model": "CT", "startswith": ["3DBox_CT"]}, {"model": name, "contains": ["X"]}],
    }
    with pytest.raises(ValueError, match=r"routing table t\.toml: rule 2: .*model") as e:
        RoutingTable.from_dict(table, source="t.toml")
    if name:
        assert repr(name) in str(e.value) and "no path separators" in str(e.value)


def test_bad_fallback_is_refused_and_good_names_pass() -> None:
    with pytest.raises(
        ValueError, match=r"routing table t\.toml: fallback: model '\.\./lite' is not a plain name"
    ):
        RoutingTable.from_dict({"fallback": "../lite", "route": []}, source="t.toml")
    with pytest.raises(ValueError, match=r"rule 1: the model must be a non-empty string, got 3"):
        RoutingTable.from_dict(
            {"fallback": "lite", "route": [{"model": 3, "contains": ["X"]}]}, source="t.toml"
        )
    ok = RoutingTable.from_dict(
        {
            "fallback": "lite_medsam",
            "route": [{"model": "3D", "startswith": ["3DBox_"]}, {"model": "X-Ray.v2", "contains": ["X"]}],
        }
    )
    assert ok.match("3DBox_CT_1.npz") == ("3D", 1) and ok.match("2DBox_X.npz") == ("X-Ray.v2", 2)
    assert RoutingTable.load().fallback == "lite_medsam"  # the shipped table passes the check


def test_inference_reports_a_bad_table_and_writes_nothing(tmp_path: Path) -> None:
    inp, out, models = tmp_path / "imgs", tmp_path / "segs", tmp_path / "models"
    inp.mkdir()
    models.mkdir()
    np.savez(inp / "2DBox_XRay_1.npz", imgs=np.zeros((20, 20, 3), np.uint8), boxes=np.array([[1, 1, 9, 9]]))
    table = tmp_path / "t.toml"
    table.write_text('fallback = "lite_medsam"\n[[route]]\nmodel = "../../outside"\nstartswith = ["2DBox"]\n')
    err = io.StringIO()
    rc = main(
        ["-i", str(inp), "-o", str(out), "-m", str(models), "--routing", str(table), "--cache_dir", ""],
        stdout=io.StringIO(),
        stderr=err,
    )
    assert rc == 1
    assert f"routing table {table}: rule 1: model '../../outside' is not a plain name" in err.getvalue()
    assert not any(out.iterdir())
