"""Initialisation sources and the train-time network (head in float32 under autocast)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.checkpoint import pycls_to_torchvision
from models.dolg import DOLG, DOLGConfig
from models.resnet import ResNet
from models.training.network import HEADS, TrainNet, build_head, initialise_model

pytestmark = pytest.mark.torch


def test_init_from_torchvision_backbone_flips_the_stem_for_bgr(tmp_path: Path) -> None:
    torch.manual_seed(1)
    backbone = ResNet(50)
    path = tmp_path / "resnet50_tv.pth"
    torch.save(pycls_to_torchvision(backbone.state_dict()), path)
    model, config, report = initialise_model(DOLGConfig(), path)
    assert report["source"] == "torchvision" and report["flipped_stem_channels"]
    assert config == DOLGConfig() and model.training
    stem = model.state_dict()["globalmodel.stem.conv.weight"]
    assert torch.equal(stem, backbone.state_dict()["stem.conv.weight"].flip(1))
    assert torch.equal(model.state_dict()["globalmodel.s4.b3.f.c.weight"],
                       backbone.state_dict()["s4.b3.f.c.weight"])
    _, _, rgb_report = initialise_model(DOLGConfig(), path, input_colour="RGB")
    assert not rgb_report["flipped_stem_channels"]


def test_init_from_an_official_dolg_checkpoint_drops_its_head(tmp_path: Path) -> None:
    torch.manual_seed(2)
    official = DOLG(DOLGConfig(depth=50))
    state = {**official.state_dict(), "desc_cls.weight": torch.randn(7, 512),
             "desc_cls.t": torch.zeros(1)}
    path = tmp_path / "r50_dolg_512.pyth"
    torch.save({"model_state": state, "epoch": 99}, path)
    # The file's own config wins over the requested one (here a multi-atrous request).
    model, config, report = initialise_model(DOLGConfig(with_ma=True), path)
    assert report["source"] == "official" and report["dropped_keys"] == 2
    assert config == official.config and model.training
    for key, value in official.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_heads_run_in_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = DOLG(DOLGConfig())
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    for name in HEADS:
        net = TrainNet(model, build_head(name, 512, 3)).train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(images, targets)
        assert logits.dtype == torch.float32 and logits.shape == (2, 3), name
    # Gradients reach both the head and the network (one backward: bf16 on the CPU is slow).
    logits.sum().backward()
    assert net.head.weight.grad is not None and model.fc.weight.grad is not None
