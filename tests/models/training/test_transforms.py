"""The official augmentation in torch/numpy/Pillow: shapes, seeding, and agreement with the
official formulas and with the service's preprocessing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from app.artifacts import BGR_MEAN, BGR_STD, Preprocessing
from app.inference.preprocess import normalise_planar
from app.inference.preprocess import resize_bilinear as service_resize
from models.training.transforms import (
    EIG_VALS,
    EIG_VECS,
    ColourSpec,
    EvalTransform,
    RetrievalTransform,
    TrainTransform,
    lighting_offsets,
    random_sized_crop_box,
    resize_bilinear,
    to_planar,
)

pytestmark = pytest.mark.torch


def _image(h: int = 50, w: int = 70, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_train_transform_shape_and_seed_determinism() -> None:
    img, transform = _image(), TrainTransform(size=32)
    a = transform(img, np.random.default_rng(7))
    b = transform(img, np.random.default_rng(7))
    c = transform(img, np.random.default_rng(8))
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32 and a.is_contiguous()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.isfinite(a).all()


def test_crop_box_follows_the_inception_rules() -> None:
    rng = np.random.default_rng(0)
    h, w = 60, 90
    for _ in range(300):
        box = random_sized_crop_box(h, w, rng)
        assert box is not None  # a roomy image always finds a crop within 10 tries
        y, x, ch, cw = box
        assert y >= 0 and x >= 0 and y + ch <= h and x + cw <= w
        # Area >= 8% of the image (up to the rounding of each side) and aspect within
        # [3/4, 4/3] or its swap.
        assert ch * cw >= 0.08 * h * w * 0.8
        ratio = cw / ch
        assert 0.5 <= ratio <= 2.0
    # A 2 x 400 strip: every try fails; the transform falls back to scale + centre crop.
    assert random_sized_crop_box(2, 400, np.random.default_rng(1)) is None
    out = TrainTransform(size=16)(_image(2, 400), np.random.default_rng(1))
    assert out.shape == (3, 16, 16)


def test_lighting_offsets_equal_the_official_formula_in_bgr_order() -> None:
    # pycls `lighting`: alpha [1,3] repeated to [3,3], rgb = sum(eig_vec * alpha * eig_val, 1),
    # then channel i of the BGR image gets rgb[2 - i].
    alpha = np.random.default_rng(5).normal(0, 0.1, size=(1, 3))
    alpha = np.repeat(alpha, 3, axis=0)
    eig_val = np.repeat(np.array([EIG_VALS]), 3, axis=0)
    rgb = np.sum(np.array(EIG_VECS) * alpha * eig_val, axis=1)
    expected_bgr = np.array([rgb[2 - i] for i in range(3)])
    np.testing.assert_allclose(lighting_offsets(np.random.default_rng(5), 0.1, "BGR"),
                               expected_bgr, rtol=1e-12)
    np.testing.assert_allclose(lighting_offsets(np.random.default_rng(5), 0.1, "RGB"), rgb,
                               rtol=1e-12)


def test_train_pipeline_equals_manual_composition() -> None:
    """crop -> resize -> flip -> /255 + lighting -> normalise, drawing the RNG in that order."""
    img, size = _image(40, 60, seed=3), 24
    transform = TrainTransform(size=size)
    got = transform(img, np.random.default_rng(11))
    rng = np.random.default_rng(11)
    y, x, h, w = random_sized_crop_box(40, 60, rng)  # type: ignore[misc]
    crop = img[y : y + h, x : x + w, ::-1].astype(np.float32)  # BGR
    planes = torch.from_numpy(crop.copy()).permute(2, 0, 1)
    planes = torch.nn.functional.interpolate(planes[None], size=(size, size), mode="bilinear",
                                             align_corners=False)[0]
    if rng.uniform() < 0.5:
        planes = planes.flip(-1)
    light = lighting_offsets(rng, 0.1, "BGR")
    mean, std = np.array(BGR_MEAN), np.array(BGR_STD)
    expected = torch.stack([(planes[c] / 255.0 + light[c] - mean[c]) / std[c] for c in range(3)])
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-5)


def test_eval_normalisation_equals_the_service_preprocessing() -> None:
    img = _image(32, 32, seed=4)
    prep = Preprocessing()
    assert ColourSpec().preprocessing_fields() == {
        "colour_order": prep.colour_order, "mean": list(prep.mean), "std": list(prep.std),
        "pixel_divisor": prep.pixel_divisor,
    }
    ours = EvalTransform(size=32, resize=32)(img)  # no resize, no crop: only normalisation
    np.testing.assert_allclose(ours.numpy(), normalise_planar(img, prep), atol=1e-5)
    rgb = ColourSpec.imagenet("RGB")
    prep_rgb = Preprocessing(**rgb.preprocessing_fields())
    ours_rgb = EvalTransform(size=32, resize=32, colour=rgb)(img)
    np.testing.assert_allclose(ours_rgb.numpy(), normalise_planar(img, prep_rgb), atol=1e-5)


@pytest.mark.parametrize("out_hw", [(23, 41), (97, 130)])
def test_resize_has_cv2_linear_semantics(out_hw: tuple[int, int]) -> None:
    img = _image(50, 70, seed=6)
    ours = resize_bilinear(to_planar(img, "RGB"), *out_hw).permute(1, 2, 0).numpy()
    service = service_resize(img, out_hw[1], out_hw[0])  # cv2.INTER_LINEAR reimplementation
    np.testing.assert_allclose(ours, service, atol=2e-3)


def test_eval_transform_scales_short_side_and_centre_crops() -> None:
    img = _image(60, 100, seed=2)
    out = EvalTransform(size=64, resize=73)(img)
    assert out.shape == (3, 64, 64)
    # pycls: short 60 -> 73, long floor(100 / 60 * 73) = 121; crop offset ceil((121-64)/2) = 29.
    planes = resize_bilinear(to_planar(img, "BGR"), 73, math.floor(100 / 60 * 73))
    manual = planes[:, 5:69, 29:93]
    mean, std = torch.tensor(BGR_MEAN).view(3, 1, 1), torch.tensor(BGR_STD).view(3, 1, 1)
    torch.testing.assert_close(out, (manual / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)


def test_retrieval_transform_caps_and_scales() -> None:
    outs = RetrievalTransform(max_side=50, scales=(0.5, 1.0))(_image(80, 100))
    assert [tuple(o.shape) for o in outs] == [(3, 20, 25), (3, 40, 50)]
    # Scales whose side would be < 16 px are dropped, the largest kept.
    outs = RetrievalTransform(max_side=40, scales=(0.25, 1.0))(_image(30, 40))
    assert [tuple(o.shape) for o in outs] == [(3, 30, 40)]
