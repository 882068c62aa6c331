"""The CFCD deploy network: official key layout, strict loading of official checkpoints,
the forward pass against its closed form, any registered backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models import checkpoint as ckpt
from models.cfcd.model import CFCD, CFCDConfig
from models.factory import build_model, config_family, create_model, family_of
from tests.models.official_keys import cfcd_keys, random_state

pytestmark = pytest.mark.torch

X = torch.randn(2, 3, 67, 45, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("depth", [50, 101])
def test_state_dict_equals_the_official_key_table(depth: int) -> None:
    model = CFCD(CFCDConfig(backbone=f"resnet{depth}"))
    expected = cfcd_keys(depth)  # without desc_cls: the head lives in models.heads
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected
    # Official registration order: fc, bn, then the backbone; no GeM parameter.
    assert list(got)[:7] == ["fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean",
                             "bn.running_var", "bn.num_batches_tracked"]
    assert not any(k.startswith("pool_g") for k in got)


def _official_container(depth: int, seed: int = 0) -> dict:
    state = random_state(cfcd_keys(depth, num_classes=11), seed=seed)
    return {"epoch": 50, "model_state": state, "optimizer_state": {},
            "cfg": "MODEL:\n  ALGO: MODEL_S2\n  DEPTH: 50\n"}


def test_official_checkpoint_is_recognised_and_loads_strictly(tmp_path: Path) -> None:
    container = _official_container(50)
    path = tmp_path / "model_s2_0050.pyth"
    torch.save(container, path)
    model, info = ckpt.build_model_from_checkpoint(path)
    assert isinstance(model, CFCD) and not model.training
    assert info.kind == "official" and info.config == CFCDConfig(backbone="resnet50")
    assert info.dropped_keys == ["desc_cls.weight"] and info.epoch == 50
    state = container["model_state"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    # Closed form of the deploy model: l2n(BN1d(W gem_3(f4) + b)) with the file's tensors.
    with torch.no_grad():
        _, f4 = model.globalmodel(X)
        gem = f4.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)  # [B,2048]
        fc = gem @ state["fc.weight"].t() + state["fc.bias"]
        bn = (fc - state["bn.running_mean"]) / torch.sqrt(state["bn.running_var"] + 1e-5)
        expected = F.normalize(bn * state["bn.weight"] + state["bn.bias"], dim=1)
        got = F.normalize(model(X), dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_official_r101_and_a_bare_ddp_state_dict(tmp_path: Path) -> None:
    state = random_state(cfcd_keys(101))
    path = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    _, info = ckpt.build_model_from_checkpoint(path)
    assert info.config == CFCDConfig(backbone="resnet101")
    # A CFCD file missing a key is refused with the key named, not silently half-loaded.
    del state["bn.running_var"]
    torch.save({"model_state": state}, path)
    with pytest.raises(ckpt.CheckpointError, match=r"missing keys \(1\): bn\.running_var"):
        ckpt.build_model_from_checkpoint(path)


def test_our_cfcd_checkpoint_round_trips_with_its_family(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = CFCDConfig(backbone="efficientnet_lite0", reduction_dim=64)
    model = build_model(config).eval()
    path = ckpt.save_checkpoint(tmp_path / "ours.pth", model, epoch=2)
    assert torch.load(path, weights_only=True)["family"] == "cfcd"
    loaded, info = ckpt.build_model_from_checkpoint(path)
    assert info.kind == "ours" and info.config == config and isinstance(loaded, CFCD)
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X))


def test_any_registered_backbone_and_the_factory() -> None:
    model = create_model("cfcd", backbone="efficientnet_lite0", reduction_dim=32).eval()
    assert family_of(model.config) == config_family(model.config) == "cfcd"
    assert model.fc.in_features == 1280  # Lite0's last stage
    with torch.no_grad():
        out = model(X)
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    # GeM p is fixed at 3: not a parameter, and changing nothing trains it.
    assert all(not n.startswith("pool_g") for n, _ in model.named_parameters())
    assert float(model.pool_g.p) == 3.0
    with pytest.raises(ValueError, match="valid backbones"):
        CFCDConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="ResNet backbones only"):
        CFCDConfig(backbone="efficientnet_lite0", zero_init_final_gamma=True)
