"""One factory by family name: per-family configs, DOLG and the pooled family on every
backbone, ONNX export of each, and errors that list the valid names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import export as E
from models.backbones import backbone_names, get_backbone_spec
from models.dolg import DOLG, DOLGConfig
from models.factory import build_model, create_model, family_names, make_config
from models.layers import functional as LF
from models.pooled import PooledConfig, PooledDescriptor
from models.resnet_pool import ResNetPool

pytestmark = pytest.mark.torch

SMALL_SHAPES = ((1, 3, 67, 45), (2, 3, 33, 47))


def test_family_names_and_errors() -> None:
    assert family_names() == ["cfcd", "dolg", "pooled"]
    with pytest.raises(ValueError, match="valid families: cfcd, dolg, pooled"):
        create_model("cnn")
    with pytest.raises(ValueError, match="valid backbones: efficientnet_lite0"):
        make_config("pooled", backbone="vgg")
    with pytest.raises(ValueError, match="known fields"):
        make_config("dolg", pooling_size=3)
    with pytest.raises(ValueError, match="expected one of"):
        PooledConfig(pooling="avg")  # type: ignore[arg-type]


def test_legacy_configs_build_what_they_did() -> None:
    assert type(build_model(DOLGConfig())) is DOLG
    pooled = build_model(DOLGConfig(architecture="resnet_pool", pooling="mac", reduction_dim=64))
    assert isinstance(pooled, ResNetPool)
    assert pooled.config == DOLGConfig(architecture="resnet_pool", pooling="mac",
                                       reduction_dim=64)
    # State names are unchanged: globalmodel.*, pool.*, fc.*
    assert {k.split(".")[0] for k in pooled.state_dict()} == {"globalmodel", "fc"}


@pytest.mark.parametrize("backbone", backbone_names())
def test_dolg_on_each_backbone_builds_and_exports(backbone: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("dolg", backbone=backbone).eval()
    c3, c4 = get_backbone_spec(backbone).stage_channels[-2:]
    local = model.fc_t.out_features
    assert (model.fc_t.in_features, local, model.fc.in_features) == (c4, c3, 2 * c3)
    info = E.export_onnx(model, tmp_path / "m.onnx", parity_shapes=SMALL_SHAPES)
    assert info.embedding_dim == 512 and info.min_cosine >= E.FP32_MIN_COSINE


def test_dolg_with_ma_and_local_dim_on_lite() -> None:
    model = create_model("dolg", backbone="efficientnet_lite0", with_ma=True, local_dim=256)
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, 50, 70))
    assert out.shape == (2, 512)
    assert model.localmodel.aspp.aspp[0].out_channels == 56  # c3 // 2


@pytest.mark.parametrize("with_ma", [False, True])
def test_official_resnet_dolg_keys_are_unchanged(with_ma: bool) -> None:
    from tests.models.official_keys import official_keys

    state = create_model("dolg", depth=50, with_ma=with_ma).state_dict()
    got = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    expected = {k: v for k, v in official_keys(50, with_ma).items()
                if not k.endswith("num_batches_tracked")}
    assert got == expected


def test_dolg_from_imagenet_backbone_keeps_the_wheel_weights() -> None:
    plain = create_model("pooled", backbone="efficientnet_lite0", imagenet=True)
    dolg = create_model("dolg", backbone="efficientnet_lite0", imagenet=True)
    for key, value in plain.globalmodel.state_dict().items():
        assert torch.equal(dolg.globalmodel.state_dict()[key], value)


@pytest.mark.parametrize("feature", ["last", "mid", "concat"])
def test_pooled_gem_descriptor_is_gem_of_the_stage(feature: str) -> None:
    torch.manual_seed(0)
    model = create_model("pooled", backbone="efficientnet_lite0", feature=feature).eval()
    assert isinstance(model, PooledDescriptor)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        f3, f4 = model.globalmodel(x)
        out = model(x)
        expected = {
            "last": LF.gem(f4, 3.0).flatten(1),
            "mid": LF.gem(f3, 3.0).flatten(1),
            "concat": torch.cat((LF.l2n(LF.gem(f3, 3.0).flatten(1)),
                                 LF.l2n(LF.gem(f4, 3.0).flatten(1))), dim=1),
        }[feature]
    assert out.shape[1] == model.config.embedding_dim
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("pooling", ["gem", "mac", "spoc"])
def test_pooled_family_exports(pooling: str, tmp_path: Path) -> None:
    model = create_model("pooled", backbone="efficientnet_lite0", pooling=pooling,
                         reduction_dim=128)
    info = E.export_onnx(model, tmp_path / "p.onnx", parity_shapes=SMALL_SHAPES)
    assert info.embedding_dim == 128


def test_superglobal_pooling_modules_apply_to_a_lite_backbone() -> None:
    from models.superglobal import SuperGlobalOptions, apply_superglobal_

    model = create_model("pooled", backbone="efficientnet_lite0").eval()
    apply_superglobal_(model, SuperGlobalOptions(gem_p=4.6, rgem=True))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1280)
    with pytest.raises(TypeError, match="pycls ResNet"):
        apply_superglobal_(create_model("pooled", backbone="efficientnet_lite0"),
                           SuperGlobalOptions(relup=True))
