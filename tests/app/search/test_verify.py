"""Geometric copy verification on real photos: copies of a photo (crops, rotation, mirror, grey,
small, re-encoded) keep enough RANSAC inliers against its thumbnail; different photos,
including look-alikes, and degenerate images do not."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from app.config import ThumbnailSettings
from app.search.verdict import default_rule
from app.search.verify import (
    MIN_SIDE,
    FeatureCache,
    LocalFeatures,
    extract,
    features_from_jpeg,
    geometric_inliers,
    normalise_contrast,
    query_image,
    query_image_from_jpeg,
)
from app.thumbnails import make_thumbnail

PHOTOS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "photos"
pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared photos not available")

RULE = default_rule()
# Different pictures, several of them look-alikes (flowers and plants; the frost textures; one
# author's landscapes).
NAMES = [
    "mate_garden.jpg",
    "mate_freshflower.jpg",
    "mate_ladybird.jpg",
    "lomiri_seeding.jpg",
    "imagecorruptions_frost2.jpg",
    "imagecorruptions_frost4.jpg",
    "plasma_kite.jpg",
    "plasma_path.jpg",
    # Dark, soft night photos: contrast normalisation must not make them copies of each other.
    "mate_storm.jpg",
    "plasma_darkesthour.jpg",
]


def _photo(name: str) -> Image.Image:
    with Image.open(PHOTOS / name) as im:
        return im.convert("RGB")


def _thumbnail(img: Image.Image) -> bytes:
    """What the store keeps (app/thumbnails.py with the default settings)."""
    return make_thumbnail(_jpeg_bytes(img), ThumbnailSettings(), 1 << 30) or b""


def _jpeg_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _stored(name: str) -> LocalFeatures:
    features = features_from_jpeg(_thumbnail(_photo(name)), RULE.working_side)
    assert features is not None
    return features


EDITS = {
    "crop_50": lambda im: im.crop(
        (im.width // 4, im.height // 4, 3 * im.width // 4, 3 * im.height // 4)
    ),
    "rotate_90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "mirror": ImageOps.mirror,
    "grey": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "width_200": lambda im: im.resize((200, round(im.height * 200 / im.width))),
    "jpeg_q15": lambda im: _jpeg(im, 15),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_copies_keep_enough_inliers(edit: str) -> None:
    name = "mate_garden.jpg"
    query = query_image(np.asarray(EDITS[edit](_photo(name))), RULE.working_side)
    assert query.inliers(_stored(name), RULE.min_inliers) >= RULE.min_inliers


def _corner_half(img: Image.Image) -> Image.Image:
    """A half-size crop off the centre (upper right), as a user would cut out a detail."""
    w, h = img.size
    return img.crop((int(0.45 * w), int(0.05 * h), int(0.95 * w), int(0.55 * h)))


def test_an_off_centre_half_crop_is_verified() -> None:
    """The crop covers half the thumbnail's width: its inliers spread over half the stored
    picture, which is the whole of what the two share (judged on the full thumbnail, this
    copy was rejected as "bunched", 0 inliers)."""
    for name in ("lomiri_greentock.jpg", "mate_garden.jpg"):
        query = query_image(np.asarray(_corner_half(_photo(name))), RULE.working_side)
        assert query.inliers(_stored(name), RULE.min_inliers) >= RULE.min_inliers, name


def test_dark_low_contrast_photos_are_verified() -> None:
    """A night sky's thumbnail gave SIFT one keypoint before contrast normalisation; its
    rotated and cropped copies had 0 inliers."""
    name = "mate_storm.jpg"
    stored = _stored(name)
    assert len(stored.points) >= 60
    for edit in ("rotate_90", "crop_50", "width_200"):
        query = query_image(np.asarray(EDITS[edit](_photo(name))), RULE.working_side)
        assert query.inliers(stored, RULE.min_inliers) >= RULE.min_inliers, edit


def test_contrast_normalisation_keeps_the_image_shape() -> None:
    dark = (np.random.default_rng(2).random((90, 120)) * 40).astype(np.uint8)
    out = normalise_contrast(dark)
    assert out.shape == dark.shape and out.dtype == np.uint8
    assert int(out.max()) - int(out.min()) > int(dark.max()) - int(dark.min())


def test_different_photos_and_look_alikes_do_not() -> None:
    stored = {n: _stored(n) for n in NAMES}
    worst = 0
    for q in NAMES:
        query = query_image(np.asarray(_photo(q)), RULE.working_side)
        for s in NAMES:
            if s != q:
                worst = max(worst, query.inliers(stored[s], RULE.min_inliers))
    assert worst < RULE.min_inliers


def test_mirrored_copy_needs_the_mirrored_pass() -> None:
    name = "lomiri_seeding.jpg"
    stored = _stored(name)
    query = query_image(np.asarray(ImageOps.mirror(_photo(name))), RULE.working_side)
    assert geometric_inliers(query.straight(), stored) < RULE.min_inliers
    assert geometric_inliers(query.mirrored(), stored) >= RULE.min_inliers


def test_flat_and_tiny_images_have_nothing_to_verify() -> None:
    flat = extract(np.full((200, 300), 128, np.uint8))
    assert len(flat.points) == 0
    assert geometric_inliers(flat, flat) == 0
    noise = np.random.default_rng(0).integers(0, 256, (200, 300), dtype=np.uint8)
    # Independent noise: plenty of keypoints, no consistent transform.
    other = np.random.default_rng(1).integers(0, 256, (200, 300), dtype=np.uint8)
    assert geometric_inliers(extract(noise), extract(other)) < RULE.min_inliers
    tiny = query_image(np.zeros((12, 12, 3), np.uint8), RULE.working_side)
    assert tiny.too_small and tiny.original_size == (12, 12)
    assert not query_image(np.zeros((MIN_SIDE, 40, 3), np.uint8), 256).too_small


def test_a_repeated_pattern_is_not_a_copy_of_a_shifted_one() -> None:
    """A regular grid matches itself under many shifts; one match per stored keypoint and the
    spread check keep it from looking like a copy of a different crop of the grid."""
    yy, xx = np.mgrid[0:240, 0:320]
    grid = (((yy // 20) + (xx // 20)) % 2 * 255).astype(np.uint8)
    blob = np.zeros_like(grid)
    blob[100:140, 140:180] = 255
    a, b = extract(grid), extract(blob)
    assert geometric_inliers(a, b) < RULE.min_inliers


def test_query_from_a_thumbnail_and_the_working_size() -> None:
    data = _thumbnail(_photo("plasma_kite.jpg"))
    query = query_image_from_jpeg(data, 128)
    assert query is not None and max(query.grey.shape) == 128
    assert query_image_from_jpeg(b"not a jpeg", 128) is None
    assert features_from_jpeg(b"not a jpeg", 128) is None


def test_feature_cache_is_bounded_by_bytes() -> None:
    f = extract(np.asarray(ImageOps.grayscale(_photo("plasma_kite.jpg"))))
    cache = FeatureCache(max_bytes=int(2.5 * f.nbytes))
    for i in range(4):
        cache.put((f"id{i}", i), f)
    assert len(cache) == 2
    assert cache.get(("id0", 0)) == (False, None)
    found, got = cache.get(("id3", 3))
    assert found and got is f
    cache.put(("none", 9), None)  # "no thumbnail" is remembered too
    assert cache.get(("none", 9)) == (True, None)
