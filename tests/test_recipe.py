"""The shipped recipes hold the original's tables (spec §5.6, §11.1, §11.2); the planner shares
runs, keeps the original's global batch, skips completed stages and resumes interrupted ones."""

from __future__ import annotations

import shlex

import pytest

from daftseg.recipe import select_files
from daftseg.recipe.cli import main
from daftseg.recipe.plan import Inputs, is_done, plan_stages
from daftseg.recipe.spec import RecipeError, load_recipe

# spec §5.6: model -> (distill epochs, general epochs, DAFT epochs, DAFT subset, distill/FT csv, nopretrain)
TABLE_93F1E55 = {
    "CT": (24, 24, 4, "CT", "fulldataset.csv", False),
    "3D": (24, 24, 3, "CT|MR|PET", "fulldataset.csv", False),
    "XRay": (20, 46, 0, "", "train.csv", True),
    "Dermoscopy": (24, 24, 0, "", "fulldataset.csv", False),
    "Endoscopy": (24, 0, 0, "", "fulldataset.csv", False),
    "Fundus": (24, 24, 24, "Fundus", "fulldataset.csv", False),
    "Microscopy": (20, 20, 50, "Microscopy", "fulldataset.csv", True),
    "OCT": (24, 24, 24, "OCT", "fulldataset.csv", False),
    "Mammography": (24, 24, 24, "Mamm", "fulldataset.csv", False),
}
# spec §11.1, with the ^(XRay|X-Ray) fix of f37807f
REGEX_916BD4E = {"3D": "^(CT|MR|PET)", "Dermoscopy": "^Dermoscopy", "Endoscopy": "^Endoscopy",
                 "Fundus": "^Fundus", "Mammography": "^Mamm", "Microscopy": "^Microscopy", "OCT": "^OCT",
                 "US": "^US", "XRay": "^(XRay|X-Ray)"}


def write_lists(folder, lists: dict[str, list[str]], present: bool = True):
    """CSV lists of basenames in ``folder`` and, with ``present``, empty npz files under folder/npz."""
    (folder / "npz").mkdir(exist_ok=True)
    for name, rows in lists.items():
        (folder / name).write_text("filename\n" + "".join(f"{r}\n" for r in rows))
        if present:
            for r in rows:
                (folder / "npz" / r).write_bytes(b"")


def inputs(tmp_path, gpus: int = 1) -> Inputs:
    return Inputs(data_root=tmp_path / "npz", csv_dir=tmp_path / "csv", l0=tmp_path / "l0.pt",
                  lite_medsam=tmp_path / "lite.pth", out=tmp_path / "run", gpus=gpus)


def test_93f1e55_recipe_is_the_readme_table():
    r = load_recipe("93f1e55")
    assert (r.distill_batch, r.finetune_batch, r.checkpoint) == (7, 96, "latest")
    models = {m.name: m for m in r.models}
    assert set(models) == {*TABLE_93F1E55, "US"} and models["US"].litemedsam
    for name, (d_ep, g_ep, daft_ep, subset, csv, nopretrain) in TABLE_93F1E55.items():
        m = models[name]
        distill = r.distill[m.distill or r.general[m.general].source]
        assert (distill.epochs, distill.datacsv, distill.nopretrain) == (d_ep, csv, nopretrain), name
        assert (r.general[m.general].epochs if m.general else 0) == g_ep, name
        if m.general:
            assert r.general[m.general].datacsv == csv, name
        assert (m.daft.epochs if m.daft else 0) == daft_ep, name
        assert (m.daft.subset if m.daft else "") == subset, name
    assert models["3D"].daft.every_slice and not models["Fundus"].daft.every_slice
    # equal settings share one distillation and one general fine-tuning
    assert len(r.distill) == 3 and len(r.general) == 3


def test_916bd4e_recipe_is_the_performance_booster_table():
    r = load_recipe("916bd4e")
    assert (r.distill_batch, r.finetune_batch, r.patience, r.checkpoint) == (7, 96, 7, "best")
    runs = [*r.distill.values(), *r.general.values(), *(m.daft for m in r.models if m.daft)]
    assert all(run.epochs == 70 and run.valcsv == "val.csv" and run.datacsv == "train.csv" for run in runs)
    assert {m.name: m.daft.regex for m in r.models if m.daft} == REGEX_916BD4E
    assert all(m.daft.every_slice for m in r.models if m.daft)
    general = [m for m in r.models if m.name == "general"]
    assert len(general) == 1 and general[0].general == "g70" and general[0].daft is None
    assert not any(run.nopretrain for run in r.distill.values())


def test_plan_shares_runs_and_keeps_the_original_global_batch(tmp_path):
    stages = plan_stages(load_recipe("93f1e55"), inputs(tmp_path, gpus=4))
    ids = [s.id for s in stages]
    assert len(ids) == len(set(ids)) == 30
    assert sum(i.startswith("distill-") for i in ids) == 3 and sum(i.startswith("general-") for i in ids) == 3
    training = [s for s in stages if s.training]
    for s in training:
        batch = s.argv[s.argv.index("-global_batch_size") + 1]
        assert batch == ("7" if s.id.startswith("distill-") else "96"), s.id
    # 7 does not split over 4 GPUs: distillation runs on one, as the original; 96 does
    assert {s.nproc for s in training if s.id.startswith("distill-")} == {1}
    assert {s.nproc for s in training if not s.id.startswith("distill-")} == {4}
    # BatchNorm synchronised exactly where several processes share a batch
    assert all(("-sync_bn" in s.argv) == (s.nproc > 1) for s in training)
    assert ids.index("extract-g24") < ids.index("daft-CT") < ids.index("model-CT") < ids.index("export")
    assert ids[-4:] == ["export", "openvino", "liteov", "routing"]
    routing = stages[-1]
    assert routing.argv[:4] == ["-m", "daftseg.recipe.finish", "--routing", "93f1e55"]
    assert routing.outputs == [tmp_path / "run" / "routing.toml"] and routing.needs == ["liteov"]
    endo = next(s for s in stages if s.id == "model-Endoscopy")
    assert endo.argv[0] == "modelmerge.py" and endo.needs == ["distill-d24"]


def test_dry_run_skips_done_stages_and_resumes_interrupted_ones(tmp_path, capsys):
    write_lists(tmp_path, {"fulldataset.csv": ["CT_A_1.npz", "MR_B_1.npz"]})
    args = ["93f1e55", "--data_root", str(tmp_path / "npz"), "--csv_dir", str(tmp_path), "--out",
            str(tmp_path / "run"), "--dry-run", "--models", "CT", "--lite_medsam", str(tmp_path / "lite.pth")]
    (tmp_path / "lite.pth").write_bytes(b"")
    run = tmp_path / "run"
    # distillation finished; general fine-tuning interrupted after a checkpoint; DAFT killed before its first
    (run / "work" / "distill-d24").mkdir(parents=True)
    (run / "work" / "distill-d24" / "medsam_lite_latest.pth").write_bytes(b"x")
    (run / "done").mkdir()
    (run / "done" / "distill-d24").write_text("")
    (run / "work" / "general-g24").mkdir(parents=True)
    (run / "work" / "general-g24" / "medsam_lite_latest.pth").write_bytes(b"x")
    (run / "work" / "daft-CT").mkdir(parents=True)
    (run / "work" / "daft-CT" / "config.json").write_text("{}")
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    commands = {line.split()[1]: shlex.split(line) for line in lines if not line.startswith(("#", "cd "))}
    assert any(line.startswith("# [distill-d24] done: ") for line in lines)
    assert "distill_fulldataset.py" not in commands
    general = commands["finetune_npz_devit_fulldataset.py"]
    assert general[general.index("-resume") + 1] == str(run / "work" / "general-g24" / "medsam_lite_latest.pth")
    daft = commands["finetune_npz_devit_fulldataset3D.py"]
    assert daft[-3:] == ["-resume", "", "--overwrite"]  # nothing to continue: started anew
    assert daft[daft.index("-data_subset") + 1] == "CT" and daft[daft.index("-num_epochs") + 1] == "4"


def test_done_needs_marker_and_outputs(tmp_path):
    i = inputs(tmp_path)
    stage = next(s for s in plan_stages(load_recipe("93f1e55"), i, ["Endoscopy"]) if s.id == "model-Endoscopy")
    (tmp_path / "run" / "done").mkdir(parents=True)
    (tmp_path / "run" / "done" / "model-Endoscopy").write_text("")
    assert not is_done(i, stage)  # marker without the output: not done
    stage.outputs[0].parent.mkdir(parents=True)
    stage.outputs[0].write_bytes(b"x")
    assert is_done(i, stage)


def test_recipe_errors_name_the_file_and_entry(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[distill.d]\nepochs = 1\n[general.g]\ndistill = "nope"\nepochs = 1\n[[model]]\nname = "A"\n'
                   'general = "g"\n')
    with pytest.raises(RecipeError, match=r"bad.toml \[general.g\]: distill = 'nope'"):
        load_recipe(str(bad))
    assert main([str(tmp_path / "missing.toml"), "--data_root", ".", "--out", str(tmp_path / "o"), "--dry-run"]) == 1
    assert "shipped recipes: 916bd4e, 93f1e55" in capsys.readouterr().err
    with pytest.raises(RecipeError, match="no model Nope"):
        plan_stages(load_recipe("93f1e55"), inputs(tmp_path), ["Nope"])


def test_run_folder_belongs_to_one_recipe(tmp_path, capsys):
    names = ["CT_A_1.npz", "MR_B_1.npz", "XRay_C_1.npz", "Fundus_D_1.npz", "Microscopy_E_1.npz", "OCT_F_1.npz",
             "Mammo_G_1.npz"]
    write_lists(tmp_path, {"fulldataset.csv": names, "train.csv": names})
    for weights in ("l0.pt", "lite.pth"):
        (tmp_path / weights).write_bytes(b"")
    common = ["--data_root", str(tmp_path / "npz"), "--csv_dir", str(tmp_path), "--out", str(tmp_path / "run"),
              "--l0", str(tmp_path / "l0.pt"), "--lite_medsam", str(tmp_path / "lite.pth"), "--slurm"]
    assert main(["93f1e55", *common]) == 0, capsys.readouterr().err
    assert main(["916bd4e", *common]) == 1
    assert "holds a run of another recipe" in capsys.readouterr().err


def test_select_files_matches_basenames(tmp_path):
    src = tmp_path / "train.csv"
    src.write_text("file\n/d/XRay/a/XRay_a_1.npz\n/d/XRay/t/X-Ray_Teeth_2.npz\n/d/CT/c/CT_c_3.npz\n/d/XRay_dir/MR_x.npz\n")
    assert select_files.main(["--regex", "^(XRay|X-Ray)", str(src), str(tmp_path / "x.csv")]) == 0
    assert (tmp_path / "x.csv").read_text().splitlines() == ["file", "/d/XRay/a/XRay_a_1.npz",
                                                             "/d/XRay/t/X-Ray_Teeth_2.npz"]
    assert select_files.main(["--regex", "^OCT", str(src), str(tmp_path / "y.csv")]) == 1
    assert not (tmp_path / "y.csv").exists()


def test_local_backend_marks_skips_and_stops_at_a_failure(tmp_path, capsys):
    import sys

    from daftseg.recipe.backends import run_local
    from daftseg.recipe.plan import Stage

    i = Inputs(data_root=tmp_path, csv_dir=tmp_path, l0=tmp_path, lite_medsam=tmp_path, out=tmp_path / "run",
               python=sys.executable)
    out1, out2 = tmp_path / "one.txt", tmp_path / "two.txt"
    flag = tmp_path / "allow"
    write1 = Stage("one", ["-c", f"open({str(out1)!r}, 'w').write('1')"], [], [out1])
    # fails until the flag file exists; then writes its output
    write2 = Stage("two", ["-c", (f"import os, sys; os.path.exists({str(flag)!r}) or sys.exit(3); "
                                 f"open({str(out2)!r}, 'w').write('2')")], ["one"], [out2])
    silent = Stage("three", ["-c", "pass"], ["two"], [tmp_path / "never.txt"])
    assert run_local([write1, write2], i) == 1
    assert "stage two failed (exit status 3)" in capsys.readouterr().err
    assert is_done(i, write1) and not is_done(i, write2)
    out1.write_text("kept")  # a rerun skips the done stage instead of redoing it
    flag.write_text("")
    assert run_local([write1, write2], i) == 0
    assert "[one] done, skipped" in capsys.readouterr().out
    assert out1.read_text() == "kept" and is_done(i, write2)
    assert run_local([write1, write2, silent], i) == 1  # exit 0 without its output is a failure
    assert "stage three finished but did not write" in capsys.readouterr().err
    assert not is_done(i, silent)


def test_916bd4e_plan_exports_one_prompt_encoder_and_routes_as_916bd4e(tmp_path):
    r = load_recipe("916bd4e")
    assert (r.lists_dir, r.routing, r.shared_prompt_encoder, r.pe_from) == ("datasplit", "916bd4e", True, "3D")
    stages = {s.id: s for s in plan_stages(r, inputs(tmp_path, gpus=4))}
    export = stages["export"].argv
    assert "--shared_prompt_encoder" in export and export[export.index("--pe_from") + 1] == "3D"
    run = tmp_path / "run"
    assert run / "onnxmodels" / "prompt_encoder.onnx" in stages["export"].outputs
    assert run / "openvinomodels" / "prompt_encoder.xml" in stages["openvino"].outputs
    assert "liteov" not in stages  # 916bd4e no longer uses LiteMedSAM at inference (spec §11.2)
    assert stages["routing"].argv[3] == "916bd4e" and stages["routing"].needs == ["openvino"]
    # checked against the source lists, before the select stage writes the selected ones
    daft = stages["daft-XRay"]
    assert [(d.csv.name, d.regex) for d in daft.data] == [("train.csv", "^(XRay|X-Ray)"), ("val.csv", "^(XRay|X-Ray)")]
    assert daft.argv[daft.argv.index("-datacsv") + 1] == str(run / "csv" / "XRay.train.csv")
    # without pe_from among the planned models the exporter keeps its default (the first model)
    only = {s.id: s for s in plan_stages(r, inputs(tmp_path), ["US"])}
    assert "--shared_prompt_encoder" in only["export"].argv and "--pe_from" not in only["export"].argv


def test_finish_writes_the_table_and_names_missing_models(tmp_path, capsys):
    from daftseg.inference.routing import DEFAULT_TABLE
    from daftseg.recipe import finish

    ov = tmp_path / "openvinomodels"
    ov.mkdir()
    for model in ("3D", "general"):
        for graph in ("image_encoder", "mask_decoder"):
            (ov / f"{model}_{graph}.xml").write_text("")
            (ov / f"{model}_{graph}.bin").write_bytes(b"")
    out = tmp_path / "routing.toml"
    assert finish.main(["--routing", "916bd4e", "--models_dir", str(ov), "--out", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert out.read_bytes() == (DEFAULT_TABLE.parent / "modalities_916bd4e.toml").read_bytes()
    assert "routes to models not in" in stderr and "XRay" in stderr and "the fallback model" not in stderr
    assert f"python PerfectMetaOpenVINO.py -i IMGS -o SEGS -m {ov} --routing {out}" in stdout
    # 93f1e55's table routes to none of what is left: the run could segment nothing
    for p in ov.glob("3D_*"):
        p.unlink()
    assert finish.main(["--routing", "93f1e55", "--models_dir", str(ov), "--out", str(out)]) == 1
    assert "holds none of the models" in capsys.readouterr().err


def test_select_files_reads_compressed_lists(tmp_path):
    import gzip

    src = tmp_path / "list.csv.gz"
    src.write_bytes(gzip.compress(b"filename\nCT_a_1.npz\nMR_b_2.npz\nCT_c_3.npz\n"))
    assert select_files.main(["--regex", "^CT", str(src), str(tmp_path / "ct.csv")]) == 0
    assert (tmp_path / "ct.csv").read_text().splitlines() == ["filename", "CT_a_1.npz", "CT_c_3.npz"]
