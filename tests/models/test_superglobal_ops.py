"""SuperGlobal descriptor ops (GeM+, Regional-GeM, ReLU+, Scale-GeM): closed forms, the
official formulas, their placement in DOLG / ResNetPool, and the export option."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from app.artifacts import Preprocessing, load_model_meta
from app.inference.preprocess import pool_scales
from models.dolg import DOLG, DOLGConfig
from models.layers import functional as LF
from models.layers.modules import GeM, GeMPlus, RegionalGeM, ReLUPlus, ScaleGeM
from models.resnet_pool import ResNetPool
from models.superglobal import SuperGlobalOptions, apply_superglobal_
from tests.models.evaluation.tiny_revisitop import load_script

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ GeM+


def test_gem_plus_closed_forms() -> None:
    x = torch.rand(2, 3, 4, 5) + 0.1
    # p = 1 is average pooling; a constant map pools to the constant.
    torch.testing.assert_close(LF.gem_plus(x, p=1.0), x.mean(dim=(2, 3), keepdim=True))
    const = torch.full((1, 2, 3, 3), 0.7)
    torch.testing.assert_close(LF.gem_plus(const), torch.full((1, 2, 1, 1), 0.7))
    # Default p is SuperGlobal's 4.6 with clamp 1e-8: an all-zero map pools to 1e-8.
    zero = LF.gem_plus(torch.zeros(1, 1, 2, 2))
    assert math.isclose(float(zero), 1e-8, rel_tol=1e-4)
    # Large p approaches max pooling.
    assert float((LF.gem_plus(x, p=200.0) - x.amax(dim=(2, 3), keepdim=True)).abs().max()) < 0.05


def test_gem_plus_matches_official_gemp() -> None:
    x = torch.rand(2, 8, 5, 7)
    flat = x.view(2, 8, -1)  # official: [B,C,HW] -> adaptive_avg_pool1d
    official = nn.functional.adaptive_avg_pool1d(flat.clamp(1e-8).pow(4.6), 1).pow(1 / 4.6)
    torch.testing.assert_close(LF.gem_plus(x).view(2, 8, 1), official)
    assert torch.equal(GeMPlus()(x), LF.gem_plus(x))


# ------------------------------------------------------------------------------------ R-GeM


def _official_rgem(x: torch.Tensor, pr: float = 2.5, size: int = 5) -> torch.Tensor:
    pad = nn.ReflectionPad2d((size - 1) // 2)
    return 0.5 * nn.LPPool2d(pr, size, stride=1)(pad(x / (size**2) ** (1 / pr))) + 0.5 * x


@pytest.mark.parametrize("shape", [(1, 4, 3, 3), (2, 3, 5, 7), (1, 2, 12, 9)])
def test_regional_gem_matches_official(shape: tuple[int, ...]) -> None:
    x = torch.rand(*shape)
    torch.testing.assert_close(LF.regional_gem(x), _official_rgem(x), rtol=1e-5, atol=1e-6)
    assert torch.equal(RegionalGeM()(x), LF.regional_gem(x))


@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (1, 6), (3, 3), (6, 4)])
def test_regional_gem_constant_map_and_tiny_maps(hw: tuple[int, int]) -> None:
    # A power mean of a constant is the constant, so R-GeM leaves a constant map unchanged,
    # including maps smaller than the reflection padding (which ReflectionPad2d refuses).
    x = torch.full((1, 3, *hw), 0.3)
    torch.testing.assert_close(LF.regional_gem(x), x)
    y = LF.regional_gem(torch.rand(1, 3, *hw))
    assert y.shape == (1, 3, *hw) and torch.isfinite(y).all()


def test_regional_gem_p1_is_local_average() -> None:
    # p = 1: 0.5 * (5x5 mean of the reflection-padded map) + 0.5 * x; a linear ramp along W
    # is symmetric around every interior pixel, so the window mean equals the pixel there.
    ramp = torch.arange(9.0).repeat(7, 1)[None, None]  # [1,1,7,9], value = column index
    out = LF.regional_gem(ramp, p=1.0)
    torch.testing.assert_close(out[..., 2:-2], ramp[..., 2:-2])
    with pytest.raises(ValueError):
        LF.regional_gem(ramp, kernel=4)


# ------------------------------------------------------------------------------------ ReLU+


def test_relu_plus() -> None:
    x = torch.tensor([-1.0, 0.0, 0.01, 0.014, 0.5])
    assert LF.relu_plus(x).tolist() == pytest.approx([0.014, 0.014, 0.014, 0.014, 0.5])
    assert torch.equal(LF.relu_plus(x, 0.0), torch.relu(x))
    assert torch.equal(ReLUPlus()(x), LF.relu_plus(x))


# ------------------------------------------------------------------------------------ S-GeM


def test_scale_gem_max_of_unit_vectors() -> None:
    d = torch.tensor([[[3.0, 4.0, 0.0]], [[0.0, 0.0, 2.0]]])  # [S=2,B=1,D=3]
    torch.testing.assert_close(LF.scale_gem(d), torch.tensor([[0.6, 0.8, 1.0]]))
    assert torch.equal(ScaleGeM()(d), LF.scale_gem(d))


def test_scale_gem_power_mode_closed_form() -> None:
    d = torch.tensor([[[1.0, 3.0]], [[3.0, 1.0]]])  # gamma = 1; shifted values {0, 2}
    expected = 2.0 * 0.5 ** (1 / 10) + 1.0  # (mean(0, 2^10))^(1/10) + 1
    torch.testing.assert_close(LF.scale_gem(d, p=10.0), torch.full((1, 2), expected))
    same = torch.rand(1, 2, 5).repeat(3, 1, 1)  # identical scales pool to themselves
    torch.testing.assert_close(LF.scale_gem(same, p=10.0), same[0])
    with pytest.raises(ValueError):
        LF.scale_gem(torch.rand(2, 3))


def test_scale_gem_equals_service_max_pooling() -> None:
    vectors = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)  # [S,D]
    service = pool_scales(vectors, Preprocessing(scale_pooling="max"))
    reference = LF.l2n(LF.scale_gem(torch.from_numpy(vectors)[:, None, :]), dim=-1)[0]
    np.testing.assert_allclose(service, reference.numpy(), atol=1e-6)


# ------------------------------------------------------------------------------ placement


def test_apply_superglobal_to_dolg_places_modules_officially() -> None:
    model = DOLG(DOLGConfig(depth=50)).eval()
    original_pool = model.pool_g
    assert apply_superglobal_(model, SuperGlobalOptions()) is model
    assert model.pool_g is original_pool  # nothing enabled: untouched
    apply_superglobal_(model, SuperGlobalOptions(gem_p=4.6, rgem=True, relup=True))
    net = model.globalmodel
    assert isinstance(model.pool_g, nn.Sequential)
    assert isinstance(model.pool_g[0], RegionalGeM) and isinstance(model.pool_g[1], GeMPlus)
    assert model.pool_g[1].p == 4.6
    for name in ("s1", "s2", "s3"):
        for block in getattr(net, name).children():
            assert isinstance(block.relu, ReLUPlus) and block.relu.alpha == 0.014
            inner = ReLUPlus if name == "s1" else nn.ReLU  # the official s1 quirk
            assert isinstance(block.f.a_relu, inner) and isinstance(block.f.b_relu, inner)
    for block in net.s4.children():
        assert type(block.relu) is nn.ReLU
    assert type(net.stem.relu) is nn.ReLU
    out = model(torch.rand(1, 3, 48, 64))
    assert out.shape == (1, 512) and torch.isfinite(out).all()


def test_apply_superglobal_to_resnet_pool() -> None:
    model = ResNetPool(DOLGConfig(architecture="resnet_pool", pooling="mac")).eval()
    apply_superglobal_(model, SuperGlobalOptions(rgem=True))
    assert isinstance(model.pool, nn.Sequential) and isinstance(model.pool[0], RegionalGeM)
    apply_superglobal_(model, SuperGlobalOptions(gem_p=3.0))  # replaces the whole pooling
    assert isinstance(model.pool, GeMPlus) and model.pool.p == 3.0
    gem_model = ResNetPool(DOLGConfig(architecture="resnet_pool"))
    assert isinstance(gem_model.pool, GeM)
    with pytest.raises(TypeError):
        apply_superglobal_(nn.Linear(2, 2), SuperGlobalOptions(relup=True))


def test_export_superglobal_option(tmp_path: Path) -> None:
    """python -m workbench.export --superglobal: the graph carries GeM+/R-GeM/ReLU+, the meta says
    scale_pooling "max", and the graph runs on inputs whose f4 is smaller than the padding."""
    out = tmp_path / "sg"
    summary = load_script("export").run(["--random-init", "--superglobal", "--out", str(out)])
    assert min(summary["cosines"].values()) >= 0.9999
    assert summary["superglobal"] == {"gem_p": 4.6, "rgem": True, "relup": True, "rgem_p": 2.5,
                                      "rgem_kernel": 5, "relu_alpha": 0.014,
                                      "scale_pooling": "max"}
    meta = load_model_meta(out)
    assert meta.preprocessing.scale_pooling == "max" and meta.name.startswith("dolg-r50-sg")
    assert "SuperGlobal" in meta.source.description and "CVNet" in meta.source.description
    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert json.loads(props["superglobal"])["rgem"] is True
    # 16 x 24 px -> f4 1 x 1 (R-GeM's bounded fallback) and 40 x 70 -> 2 x 3.
    torch.manual_seed(0)
    reference = DOLG(DOLGConfig(depth=50)).eval()  # same seed as --random-init (seed 0)
    apply_superglobal_(reference, SuperGlobalOptions(gem_p=4.6, rgem=True, relup=True))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for h, w in ((16, 24), (40, 70)):
        x = torch.randn(1, 3, h, w)
        got = session.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            want = LF.l2n(reference(x), dim=1).numpy()
        assert float((got * want).sum()) >= 0.9999


def test_export_scale_pooling_only(tmp_path: Path) -> None:
    args = load_script("export").parse_args(["--random-init", "--out", str(tmp_path),
                                             "--scale-pooling", "max"])
    assert args.scale_pooling == "max" and args.superglobal_gem_p is None
    assert not args.superglobal_rgem and not args.superglobal_relup
