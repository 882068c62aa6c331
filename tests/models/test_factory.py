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
    assert family_names() == ["cfcd", "dolg", "pooled", "resnet_pool"]
    with pytest.raises(ValueError, match="valid families: cfcd, dolg, pooled, resnet_pool"):
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


def test_one_place_builds_configs_from_flags() -> None:
    from models.cfcd.model import CFCDConfig
    from models.factory import config_from_flags
    from models.model_flags import ModelFlags

    flags = ModelFlags(depth=101, pooling="mac", reduction_dim=None)
    assert config_from_flags("dolg", flags) == DOLGConfig(depth=101, pooling="mac")
    assert config_from_flags("resnet_pool", flags) == DOLGConfig(
        depth=101, pooling="mac", architecture="resnet_pool")
    assert config_from_flags("pooled", flags) == PooledConfig(backbone="resnet101",
                                                               pooling="mac")
    assert config_from_flags("cfcd", flags) == CFCDConfig(backbone="resnet101")
    lite = ModelFlags(backbone="efficientnet_lite0", feature="mid", reduction_dim=64)
    assert config_from_flags("pooled", lite) == PooledConfig(feature="mid", reduction_dim=64)
    for family in ("pooled", "cfcd", "resnet_pool"):
        with pytest.raises(ValueError, match="DOLG only"):
            config_from_flags(family, ModelFlags(with_ma=True))
    for family in family_names():
        with pytest.raises(ValueError, match="ResNet backbones only"):
            config_from_flags(family, ModelFlags(backbone="efficientnet_lite0",
                                                 zero_init_final_gamma=True))


def test_artifact_names_and_families_come_from_the_config() -> None:
    from models.cfcd.model import CFCDConfig
    from models.factory import family_of

    named = {
        DOLGConfig(): ("dolg", "dolg-r50"),
        DOLGConfig(depth=101, with_ma=True): ("dolg", "dolg-r101-ma"),
        DOLGConfig(backbone="efficientnet_lite1"): ("dolg", "dolg-efficientnet_lite1"),
        DOLGConfig(architecture="resnet_pool"): ("resnet_pool", "resnet_pool-r50"),
        PooledConfig(): ("pooled", "pooled-gem-efficientnet_lite0"),
        PooledConfig(backbone="resnet50", pooling="mac", feature="mid"):
            ("pooled", "pooled-mac-mid-resnet50"),
        CFCDConfig(): ("cfcd", "cfcd-r50"),
        CFCDConfig(backbone="efficientnet_lite0"): ("cfcd", "cfcd-efficientnet_lite0"),
    }
    for config, (family, arch) in named.items():
        assert (family_of(config), config.arch_name) == (family, arch)
        with torch.no_grad():
            out = build_model(config).eval()(torch.randn(1, 3, 40, 40))
        assert config.embedding_dim == out.shape[1]


def test_legacy_resnet_pool_checkpoint_maps_at_load_time(tmp_path: Path) -> None:
    """Checkpoints written when the baseline was stored under family "dolg" still load as
    the baseline (and new ones say "resnet_pool")."""
    from models import checkpoint as ckpt

    torch.manual_seed(0)
    config = DOLGConfig(architecture="resnet_pool", pooling="spoc", reduction_dim=32)
    model = build_model(config).eval()
    path = ckpt.save_checkpoint(tmp_path / "new.pth", model)
    assert torch.load(path, weights_only=True)["family"] == "resnet_pool"
    legacy = dict(torch.load(path, weights_only=True), family="dolg")
    torch.save(legacy, tmp_path / "legacy.pth")
    x = torch.randn(1, 3, 48, 40)
    for name in ("new.pth", "legacy.pth"):
        rebuilt, info = ckpt.build_model_from_checkpoint(tmp_path / name)
        assert isinstance(rebuilt, ResNetPool) and info.config == config
        with torch.no_grad():
            assert torch.equal(rebuilt(x), model(x))
