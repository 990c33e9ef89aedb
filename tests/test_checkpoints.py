"""One loader for every checkpoint layout; strict, with readable errors; atomic saves."""

from __future__ import annotations

import pytest
import torch

from daftseg.checkpoints import CheckpointError, atomic_save, clean_state_dict, load_weights, strip_prefixes
from daftseg.models import build_model


@pytest.fixture(scope="module")
def lite_state():
    torch.manual_seed(0)
    return build_model("litemedsam").state_dict()


LAYOUTS = {
    "plain": lambda sd: sd,
    "model": lambda sd: {"model": sd, "epoch": 3, "optimizer": {}, "loss": 0.5, "best_loss": 0.4},
    "state_dict": lambda sd: {"state_dict": sd},
    "module": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    "orig_mod": lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
    "module_orig_mod": lambda sd: {"model": {f"module._orig_mod.{k}": v for k, v in sd.items()}},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_loads_exactly(tmp_path, lite_state, layout):
    path = tmp_path / f"{layout}.pth"
    torch.save(LAYOUTS[layout](lite_state), path)
    model = load_weights(build_model("litemedsam"), path)
    loaded = model.state_dict()
    assert set(loaded) == set(lite_state)
    assert all(torch.equal(loaded[k], lite_state[k]) for k in lite_state)


def test_prefix_selects_a_part(tmp_path, lite_state):
    path = tmp_path / "lite_medsam.pth"
    torch.save(lite_state, path)
    encoder = load_weights(build_model("litemedsam").image_encoder, path, prefix="image_encoder.")
    k = "patch_embed.seq.0.c.weight"
    assert torch.equal(encoder.state_dict()[k], lite_state[f"image_encoder.{k}"])


def test_prefixes_are_stripped_only_at_the_start():
    assert strip_prefixes("module.image_encoder.x") == "image_encoder.x"
    assert strip_prefixes("_orig_mod.module.a") == "a"
    assert strip_prefixes("image_encoder.module.x") == "image_encoder.module.x"
    assert strip_prefixes("a._orig_mod.b") == "a._orig_mod.b"


def test_wrong_architecture_names_file_and_keys(tmp_path, lite_state):
    path = tmp_path / "lite_medsam.pth"
    torch.save(lite_state, path)
    with pytest.raises(CheckpointError) as err:
        load_weights(build_model("efficientvit_sam_l0"), path)
    msg = str(err.value)
    assert str(path) in msg
    assert "missing keys" in msg and "image_encoder.backbone." in msg
    assert "unexpected keys (298)" in msg and "image_encoder.layers.0." in msg


def test_shape_mismatch_is_reported(tmp_path, lite_state):
    bad = dict(lite_state)
    key = "mask_decoder.iou_token.weight"
    bad[key] = torch.zeros(2, 256)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match=r"shape mismatches \(1\)[\s\S]*iou_token"):
        load_weights(build_model("litemedsam"), path)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_weights(build_model("litemedsam"), tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: cannot be read"):
        load_weights(build_model("litemedsam"), junk)
    notdict = tmp_path / "list.pth"
    torch.save([1, 2, 3], notdict)
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_weights(build_model("litemedsam"), notdict)


def test_eval_before_load_still_uses_loaded_weights(lite_state):
    """TinyViT's original attention-bias cache went stale when weights were loaded after .eval()."""
    torch.manual_seed(1)
    image = torch.rand(1, 3, 256, 256)
    stale_first = build_model("litemedsam").eval()
    stale_first.load_state_dict(lite_state)
    fresh = build_model("litemedsam")
    fresh.load_state_dict(lite_state)
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(stale_first.image_encoder(image), fresh.image_encoder(image))


def test_clean_state_dict_unwraps_and_atomic_save(tmp_path):
    model = build_model("litemedsam")
    wrapped = torch.nn.Module()
    wrapped.module = model
    sd = clean_state_dict(wrapped)
    assert set(sd) == set(model.state_dict())
    out = atomic_save(sd, tmp_path / "sub" / "w.pth")
    assert out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["w.pth"]  # no temp file left
