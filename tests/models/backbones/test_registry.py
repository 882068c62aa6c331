"""Backbone registry: declared widths equal the maps, names are checked, weights load by name."""

from __future__ import annotations

import pytest
import torch

from models.backbones import backbone_names, create_backbone, get_backbone_spec
from models.resnet import ResNet

pytestmark = pytest.mark.torch


def test_names() -> None:
    assert backbone_names() == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                                "resnet101", "resnet50"]


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_lite0", "efficientnet_lite2"])
def test_declared_stage_channels_and_strides(name: str) -> None:
    spec = get_backbone_spec(name)
    net = create_backbone(name).eval()
    assert tuple(net.stage_channels) == spec.stage_channels
    with torch.no_grad():
        maps = net.forward_stages(torch.randn(1, 3, 67, 45))
        f3, f4 = net(torch.randn(1, 3, 67, 45))
    assert tuple(m.shape[1] for m in maps) == spec.stage_channels
    # strides 4, 8, 16, 32 with ceil rounding
    assert [tuple(m.shape[-2:]) for m in maps] == [(-(-67 // s), -(-45 // s))
                                                   for s in (4, 8, 16, 32)]
    assert (f3.shape[1], f4.shape[1]) == spec.stage_channels[-2:]


def test_resnet_forward_stages_agree_with_forward() -> None:
    torch.manual_seed(0)
    net = ResNet(50).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        maps = net.forward_stages(x)
        f3, f4 = net(x)
    assert torch.equal(maps[2], f3) and torch.equal(maps[3], f4)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"valid backbones: efficientnet_lite0, .*resnet50"):
        get_backbone_spec("vgg16")


def test_imagenet_weights_by_name() -> None:
    net = create_backbone("efficientnet_lite0", imagenet=True)
    spec = get_backbone_spec("efficientnet_lite0")
    assert spec.preprocessing["colour_order"] == "RGB"
    assert spec.preprocessing["interpolation"] == "bicubic"
    assert float(net.state_dict()["_bn0.running_var"].std()) > 0  # trained statistics
    with pytest.raises(ValueError, match="no installable ImageNet weights; backbones with them"):
        create_backbone("resnet50", imagenet=True)


@pytest.mark.parametrize("name", backbone_names())
def test_declared_capabilities_hold(name: str) -> None:
    """What a spec declares is what its module does: a backbone that says it zeroes its final
    gammas builds with every residual block's last BN gamma at 0; one that does not refuses."""
    from models.backbones import check_zero_init_final_gamma

    spec = get_backbone_spec(name)
    if spec.zero_init_final_gamma:
        net = create_backbone(name, zero_init_final_gamma=True)
        gammas = [m.weight for n, m in net.named_modules() if n.endswith("f.c_bn")]
        assert gammas and all(torch.count_nonzero(g) == 0 for g in gammas)
        check_zero_init_final_gamma(name, True)
    else:
        with pytest.raises(TypeError):
            create_backbone(name, zero_init_final_gamma=True)
        with pytest.raises(ValueError, match="ResNet backbones only"):
            check_zero_init_final_gamma(name, True)
    if spec.pycls_depth is not None:
        assert isinstance(create_backbone(name), ResNet)
        assert spec.short_name == f"r{spec.pycls_depth}"
    else:
        assert not isinstance(create_backbone(name), ResNet) and spec.short_name == name


def test_pycls_backbone_name_by_depth() -> None:
    from models.backbones import pycls_backbone_name

    assert (pycls_backbone_name(50), pycls_backbone_name(101)) == ("resnet50", "resnet101")
    with pytest.raises(ValueError, match="depths: \\[50, 101\\]"):
        pycls_backbone_name(34)
