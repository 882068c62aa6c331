"""Which network a training run builds (family, backbone) and how its input is normalised."""

from __future__ import annotations

import pytest

from models.cfcd.model import CFCDConfig
from models.dolg import DOLGConfig
from models.training.config import TrainConfig
from models.training.engine import colour_spec, embedding_dim


def test_family_and_backbone_choose_the_config() -> None:
    assert TrainConfig().model_config() == DOLGConfig(depth=50, zero_init_final_gamma=True)
    cfcd = TrainConfig(family="cfcd", backbone="efficientnet_lite0", reduction_dim=256)
    # zero-init-final-gamma is a ResNet notion: dropped for other backbones.
    assert cfcd.model_config() == CFCDConfig(backbone="efficientnet_lite0", reduction_dim=256)
    assert TrainConfig(family="cfcd", depth=101).model_config() == CFCDConfig(
        backbone="resnet101", zero_init_final_gamma=True)
    assert embedding_dim(cfcd.model_config()) == 256
    assert embedding_dim(TrainConfig(reduction_dim=128).model_config()) == 128
    with pytest.raises(ValueError, match="DOLG only"):
        TrainConfig(family="cfcd", with_ma=True).model_config()
    with pytest.raises(ValueError, match="unknown training family"):
        TrainConfig(family="vit").model_config()


def test_auto_colour_follows_the_backbone_weights() -> None:
    resnet = colour_spec(TrainConfig())
    assert (resnet.order, resnet.mean, resnet.std) == ("BGR", (0.406, 0.456, 0.485),
                                                       (0.225, 0.224, 0.229))
    lite = colour_spec(TrainConfig(backbone="efficientnet_lite0"))
    assert (lite.order, lite.mean, lite.std) == ("RGB", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    rgb = colour_spec(TrainConfig(colour_order="RGB", backbone="efficientnet_lite0"))
    assert (rgb.order, rgb.mean) == ("RGB", (0.485, 0.456, 0.406))
    with pytest.raises(ValueError, match="colour_order must be"):
        colour_spec(TrainConfig(colour_order="HSV"))


@pytest.mark.torch
def test_imagenet_initialisation_loads_the_wheel_weights_into_the_backbone() -> None:
    import torch

    from models.backbones import create_backbone
    from models.training.network import initialise_model

    config = CFCDConfig(backbone="efficientnet_lite0", reduction_dim=32)
    model, used, report = initialise_model(config, None, imagenet=True)
    assert used == config and report == {"source": "imagenet", "backbone": "efficientnet_lite0"}
    reference = create_backbone("efficientnet_lite0", imagenet=True).state_dict()
    for key, value in model.globalmodel.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(value, reference[key]), key
    assert model.training
    with pytest.raises(ValueError, match="not both"):
        initialise_model(config, "weights.pth", imagenet=True)
