"""Checkpoint formats: official container, bare/DDP state dicts, ours, backbone inits."""

from __future__ import annotations

import fractions
from pathlib import Path

import pytest
import torch

from models import checkpoint as ckpt
from models.dolg import DOLG, DOLGConfig
from models.factory import build_model
from models.resnet import ResNet
from tests.models.official_keys import DEPTHS, backbone_keys, official_keys, random_state

pytestmark = pytest.mark.torch

X = torch.randn(1, 3, 67, 45, generator=torch.Generator().manual_seed(0))


def _official_container(depth: int = 50, with_ma: bool = False) -> dict:
    state = random_state(official_keys(depth, with_ma, num_classes=7))
    return {"epoch": 99, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []},
            "cfg": "MODEL:\n  DEPTH: 50\n  HEADS:\n    REDUCTION_DIM: 512\n"}


def test_official_container_loads_strict_without_head(tmp_path: Path) -> None:
    container = _official_container()
    path = tmp_path / "r50_dolg_512.pyth"
    torch.save(container, path)
    model, info = ckpt.build_model_from_checkpoint(path)
    assert info.kind == "official" and info.file_name == "r50_dolg_512.pyth"
    assert info.config == DOLGConfig(depth=50, with_ma=False)
    assert info.dropped_keys == ["desc_cls.t", "desc_cls.weight"]
    assert info.epoch == 99 and "DEPTH" in (info.cfg_text or "")
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, container["model_state"][key]), key
    with torch.no_grad():
        assert torch.isfinite(model(X)).all()


def test_bare_ddp_state_dict_and_multi_atrous_detection(tmp_path: Path) -> None:
    state = random_state(official_keys(50, with_ma=True))
    path = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    model, info = ckpt.build_model_from_checkpoint(path)
    assert info.config.with_ma and model.localmodel.with_ma
    assert torch.equal(model.localmodel.aspp.conv_after[0].weight,
                       state["localmodel.aspp.conv_after.0.weight"])


def test_fixed_p_official_checkpoint_gets_p3(tmp_path: Path) -> None:
    state = random_state(official_keys(50))
    del state["pool_g.p"]  # official code before the learnable-p change
    path = tmp_path / "old.pyth"
    torch.save({"model_state": state}, path)
    model, _ = ckpt.build_model_from_checkpoint(path)
    assert model.pool_g.p.item() == 3.0


def test_infer_depth_from_key_names() -> None:
    # Names only: an R101 key table with empty tensors is enough to infer the config.
    keys = official_keys(101, with_ma=True)
    state = {k: torch.empty(shape) for k, shape in keys.items()}
    assert ckpt.infer_depth(state) == 101
    assert ckpt.infer_config(state) == DOLGConfig(depth=101, with_ma=True, reduction_dim=512)
    with pytest.raises(ckpt.CheckpointError, match="s3"):
        ckpt.infer_depth({"globalmodel.s3.b1.f.a.weight": torch.empty(1)})
    assert DEPTHS[101][2] == 23


def test_mismatch_error_lists_missing_unexpected_and_shapes(tmp_path: Path) -> None:
    state = random_state(official_keys(50))
    del state["localmodel.conv2.bias"]
    state["localmodel.extra.weight"] = torch.zeros(3)
    state["fc_t.bias"] = torch.zeros(7)
    path = tmp_path / "broken.pyth"
    torch.save({"model_state": state}, path)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.build_model_from_checkpoint(path)
    message = str(err.value)
    assert "broken.pyth" in message
    assert "missing keys (1): localmodel.conv2.bias" in message
    assert "unexpected keys (1): localmodel.extra.weight" in message
    assert "fc_t.bias (7,) vs (1024,)" in message


def test_not_a_dolg_checkpoint_and_untrusted_pickle(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"model_state": {"conv.weight": torch.zeros(1)}}, path)
    with pytest.raises(ckpt.CheckpointError, match="neither a DOLG checkpoint"):
        ckpt.build_model_from_checkpoint(path)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model_state": {}, "extra": fractions.Fraction(1, 3)}, pickled)
    with pytest.raises(ckpt.CheckpointError, match="trusted"):
        ckpt.build_model_from_checkpoint(pickled)
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.build_model_from_checkpoint(tmp_path / "missing.pt")


def test_our_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(3)
    config = DOLGConfig(architecture="resnet_pool", pooling="mac", reduction_dim=128)
    model = build_model(config).eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "sub" / "ours.pth"
    ckpt.save_checkpoint(path, model, preprocessing={"max_side": 512}, epoch=4,
                         optimizer_state=optimizer.state_dict(), scaler_state={"scale": 1024.0})
    assert sorted(p.name for p in path.parent.iterdir()) == ["ours.pth"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ckpt.CHECKPOINT_FORMAT
    assert set(raw) >= {"model_state", "config", "preprocessing", "epoch", "optimizer_state",
                        "scaler_state"}
    rebuilt, info = ckpt.build_model_from_checkpoint(path)
    assert info.kind == "ours" and info.config == config and info.epoch == 4
    assert info.preprocessing == {"max_side": 512}
    with torch.no_grad():
        assert torch.equal(rebuilt(X), model(X))


def test_our_dolg_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = DOLG(DOLGConfig()).eval()
    path = ckpt.save_checkpoint(tmp_path / "dolg.pth", model)
    rebuilt, info = ckpt.build_model_from_checkpoint(path)
    assert isinstance(rebuilt, DOLG) and info.kind == "ours"
    with torch.no_grad():
        assert torch.equal(rebuilt(X), model(X))


def _torchvision_state(depth: int = 50) -> dict[str, torch.Tensor]:
    """A torchvision-style ResNet state dict, names per docs/ALGORITHMS.md 2.5, random values."""
    gen = torch.Generator().manual_seed(1)
    shapes = backbone_keys(depth)  # spec shapes, looked up through the spec's name table

    def rand(name: str) -> torch.Tensor:
        if name.endswith("num_batches_tracked"):
            return torch.tensor(5, dtype=torch.long)
        return torch.rand(shapes[name], generator=gen)

    state = {"fc.weight": torch.randn(1000, 2048), "fc.bias": torch.zeros(1000)}
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    state["conv1.weight"] = rand("stem.conv.weight")
    for k in bn:
        state[f"bn1.{k}"] = rand(f"stem.bn.{k}")
    for layer, blocks in enumerate(DEPTHS[depth], start=1):
        for b in range(blocks):
            pairs = [("conv1", "f.a"), ("conv2", "f.b"), ("conv3", "f.c")]
            pairs += [("bn1", "f.a_bn"), ("bn2", "f.b_bn"), ("bn3", "f.c_bn")]
            if b == 0:
                pairs += [("downsample.0", "proj"), ("downsample.1", "bn")]
            for tv, py in pairs:
                for k in (("weight",) if tv.startswith("conv") or tv == "downsample.0" else bn):
                    state[f"layer{layer}.{b}.{tv}.{k}"] = rand(f"s{layer}.b{b + 1}.{py}.{k}")
    return state


def test_torchvision_name_mapping_round_trip() -> None:
    tv = _torchvision_state()
    mapped = ckpt.torchvision_to_pycls(tv)
    assert len(mapped) == 318 and "stem.conv.weight" in mapped and "s4.b1.proj.weight" in mapped
    assert torch.equal(mapped["s2.b4.f.c_bn.running_var"], tv["layer2.3.bn3.running_var"])
    back = ckpt.pycls_to_torchvision(mapped)
    assert back.keys() == {k for k in tv if not k.startswith("fc.")}
    assert all(torch.equal(back[k], tv[k]) for k in back)
    with pytest.raises(ckpt.CheckpointError, match="unexpected torchvision"):
        ckpt.torchvision_to_pycls({"layer9.0.conv1.weight": torch.zeros(1)})


def test_load_backbone_from_torchvision_flips_stem_for_bgr(tmp_path: Path) -> None:
    tv = _torchvision_state()
    path = tmp_path / "resnet50-torchvision.pth"
    torch.save(tv, path)
    model = DOLG(DOLGConfig())
    report = ckpt.load_backbone_weights(model, path)
    assert report == {"source": "torchvision", "file_name": path.name,
                      "flipped_stem_channels": True, "keys": 318}
    stem = model.globalmodel.stem.conv.weight
    assert torch.equal(stem, tv["conv1.weight"][:, [2, 1, 0]])
    assert torch.equal(model.globalmodel.s3.b2.f.b.weight, tv["layer3.1.conv2.weight"])
    rgb = ResNet(50)
    assert not ckpt.load_backbone_weights(rgb, path, input_colour="RGB")["flipped_stem_channels"]
    assert torch.equal(rgb.stem.conv.weight, tv["conv1.weight"])


def test_load_backbone_from_pycls_imagenet_container(tmp_path: Path) -> None:
    state = ckpt.torchvision_to_pycls(_torchvision_state())
    state["head.fc.weight"] = torch.zeros(1000, 2048)
    state["head.fc.bias"] = torch.zeros(1000)
    path = tmp_path / "R-50-1x64d_dds_8gpu.pyth"
    torch.save({"model_state": state, "epoch": 100}, path)
    model = DOLG(DOLGConfig())
    report = ckpt.load_backbone_weights(model, path)
    assert report["source"] == "pycls" and not report["flipped_stem_channels"]
    assert torch.equal(model.globalmodel.stem.conv.weight, state["stem.conv.weight"])
    del state["s1.b1.f.a.weight"]
    torch.save({"model_state": state}, path)
    with pytest.raises(ckpt.CheckpointError, match=r"missing keys \(1\): s1.b1.f.a.weight"):
        ckpt.load_backbone_weights(model, path)
