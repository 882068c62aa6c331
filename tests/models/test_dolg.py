"""DOLG network structure: key names/shapes against the spec's official table, output shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.dolg import DOLG, DOLGConfig
from models.factory import build_model
from models.resnet import ResNet
from tests.models.official_keys import backbone_keys, official_keys

pytestmark = pytest.mark.torch


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def dolg_r50() -> DOLG:
    torch.manual_seed(0)
    return DOLG(DOLGConfig(depth=50)).eval()


@pytest.mark.parametrize(
    ("depth", "with_ma", "ours", "official"),
    [(50, False, 332, 334), (50, True, 344, 346), (101, False, 638, 640), (101, True, 650, 652)],
)
def test_state_dict_equals_official_table(
    depth: int, with_ma: bool, ours: int, official: int
) -> None:
    model = DOLG(DOLGConfig(depth=depth, with_ma=with_ma))
    # The official model_state has 334 (R50) / 640 (R101) keys including desc_cls.weight and
    # desc_cls.t; ours is that minus the head.
    table = official_keys(depth, with_ma, num_classes=10)
    assert len(table) == official
    without_head = {k: v for k, v in table.items() if not k.startswith("desc_cls.")}
    assert len(model.state_dict()) == ours == len(without_head)
    assert _shapes(model) == without_head


def test_key_order_follows_official_registration(dolg_r50: DOLG) -> None:
    keys = list(dolg_r50.state_dict())
    assert keys[:5] == ["pool_g.p", "fc_t.weight", "fc_t.bias", "fc.weight", "fc.bias"]
    assert keys[5] == "globalmodel.stem.conv.weight"
    assert keys.index("globalmodel.s1.b1.proj.weight") < keys.index("globalmodel.s1.b1.f.a.weight")
    assert keys[-1].startswith("localmodel.conv2")


def test_backbone_matches_pycls_table_and_spatial_sizes() -> None:
    backbone = ResNet(50).eval()
    assert _shapes(backbone) == backbone_keys(50)
    assert len(backbone.state_dict()) == 318
    with torch.no_grad():
        f3, f4 = backbone(torch.randn(1, 3, 67, 45))
    # ceil-halving: f3 = ceil(H/16) x ceil(W/16), f4 = ceil(H/32) x ceil(W/32)
    assert f3.shape == (1, 1024, 5, 3) and f4.shape == (1, 2048, 3, 2)


def test_resnet101_backbone_key_count() -> None:
    assert len(ResNet(101).state_dict()) == 624


@pytest.mark.parametrize("shape", [(1, 3, 67, 45), (2, 3, 33, 47), (1, 3, 1, 1), (1, 3, 17, 90)])
def test_forward_any_size(dolg_r50: DOLG, shape: tuple[int, ...]) -> None:
    with torch.no_grad():
        out = dolg_r50(torch.randn(*shape))
    assert out.shape == (shape[0], 512)
    assert torch.isfinite(out).all()
    # Un-normalised: the official global_feature, not a unit vector.
    assert not torch.allclose(out.norm(dim=1), torch.ones(shape[0]))


def test_forward_is_features_then_head(dolg_r50: DOLG) -> None:
    x = torch.randn(1, 3, 67, 45)
    with torch.no_grad():
        f3, f4 = dolg_r50.forward_features(x)
        torch.testing.assert_close(dolg_r50.forward_head(f3, f4), dolg_r50(x))
        assert dolg_r50.attention(x).shape == (1, 1, 5, 3)


def test_forward_matches_spec_pseudo_code(dolg_r50: DOLG) -> None:
    """docs/ALGORITHMS.md 1.4 pseudo-forward written out with plain torch ops."""
    m = dolg_r50
    x = torch.randn(2, 3, 50, 70, dtype=torch.float64)
    m64 = m.double()
    try:
        with torch.no_grad():
            f3, f4 = m64.globalmodel(x)
            z = m64.localmodel.bn(m64.localmodel.conv1(f3))
            logits = m64.localmodel.conv2(torch.relu(z))
            att = torch.nn.functional.softplus(logits, beta=1, threshold=20)
            fl = att * torch.nn.functional.normalize(z, dim=1)
            p = m64.pool_g.p
            g = f4.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1 / p)
            fg = m64.fc_t(g)
            coef = torch.einsum("bc,bchw->bhw", fg, fl) / (fg * fg).sum(1)[:, None, None]
            orth = fl - coef[:, None] * fg[:, :, None, None]
            expected = m64.fc(torch.cat([fg, orth.mean(dim=(2, 3))], dim=1))
            torch.testing.assert_close(m64(x), expected, rtol=1e-9, atol=1e-9)
    finally:
        m.float()


def test_multi_atrous_forward_and_broadcast_pool() -> None:
    torch.manual_seed(1)
    model = DOLG(DOLGConfig(with_ma=True)).eval()
    aspp = model.localmodel.aspp
    assert aspp.aspp[1].dilation == (6, 6) and aspp.aspp[3].padding == (18, 18)
    f3 = torch.randn(1, 1024, 5, 3)
    with torch.no_grad():
        out = aspp(f3)
        # Official: bilinear upsampling of the 1x1 image-pool branch, concatenated first.
        pooled = aspp.im_pool(f3)
        up = torch.nn.functional.interpolate(pooled, scale_factor=(5, 3), mode="bilinear",
                                             align_corners=False)
        cat = torch.cat([up, *[conv(f3) for conv in aspp.aspp]], dim=1)
        torch.testing.assert_close(out, aspp.conv_after(cat))
        assert model(torch.randn(1, 3, 67, 45)).shape == (1, 512)


def test_zero_init_final_gamma_flag() -> None:
    model = DOLG(DOLGConfig(zero_init_final_gamma=True))
    assert model.globalmodel.s2.b3.f.c_bn.weight.abs().sum() == 0
    assert model.globalmodel.s2.b3.f.a_bn.weight.eq(1).all()
    assert DOLG(DOLGConfig()).globalmodel.s2.b3.f.c_bn.weight.eq(1).all()


def test_bn_hyper_parameters_and_softplus(dolg_r50: DOLG) -> None:
    bns = [m for m in dolg_r50.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.eps == 1e-5 and bn.momentum == 0.1 for bn in bns)
    assert dolg_r50.localmodel.softplus.beta == 1 and dolg_r50.localmodel.softplus.threshold == 20


def test_config_round_trip_and_validation() -> None:
    config = DOLGConfig(depth=101, with_ma=True)
    assert DOLGConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="depth"):
        DOLGConfig(depth=34)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown DOLGConfig fields"):
        DOLGConfig.from_dict({"depth": 50, "bogus": 1})


@pytest.mark.parametrize("pooling", ["gem", "mac", "spoc"])
def test_resnet_pool_baseline(pooling: str) -> None:
    model = build_model(DOLGConfig(architecture="resnet_pool", pooling=pooling)).eval()
    keys = set(model.state_dict())
    assert "globalmodel.stem.conv.weight" in keys and "fc.weight" in keys
    assert ("pool.p" in keys) == (pooling == "gem")
    with torch.no_grad():
        assert model(torch.randn(2, 3, 45, 67)).shape == (2, 512)
