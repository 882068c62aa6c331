"""Copy verification with local features: is a stored item the same picture as the query?

A global descriptor says "looks alike"; it cannot tell a copy from a look-alike (different
flowers score as high as a tight crop of the same photo). Geometry can: a copy shares many
local features that one similarity transform (shift, rotation, uniform scale) maps onto each
other. Both sides are described at a small working size (grey, long side `working_side`):

    query:  decoded RGB H,W,3 -> grey h,w (long side <= working_side) -> CLAHE
            -> SIFT keypoints [N,2] + RootSIFT descriptors [N,128]
    stored: its JPEG thumbnail -> the same (cached per item version)

`geometric_inliers` counts the matches one RANSAC similarity transform explains, after the
rejections that keep unrelated photos at 0: Lowe's ratio test, one match per stored keypoint,
a transform scale inside [1/5, 5], and inliers spread over the part the two pictures share
rather than bunched on one spot (degenerate fits between unrelated photos produced 100+
"inliers" without these).
A mirrored query is tried when the straight one fails. The verdict (how inliers and the cosine
combine) lives in `app.search.verdict`.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from app.inference.preprocess import BBox, crop_bbox
from app.inference.working import DecodedImage

logger = logging.getLogger(__name__)

# Lowe's ratio test on RootSIFT distances (nearest / second nearest).
RATIO = 0.8
# RANSAC reprojection threshold, as a fraction of the stored working image's long side
# (4 px at 320 px).
REPROJ_FRACTION = 4.0 / 320.0
# Similarity transforms scaling by more than this (or less than its inverse) are degenerate.
MAX_SCALE = 5.0
# Inliers must spread: the smaller principal standard deviation of their positions, as a
# fraction of the long side of the part the two images share (the whole query when it is a
# crop of the stored picture, the query's footprint in the stored one), in both images.
MIN_SPREAD = 0.03
# Contrast-limited adaptive histogram equalisation before SIFT: dark or low-contrast photos
# (night skies, soft gradients) otherwise give a thumbnail a handful of keypoints or none.
CLAHE_CLIP = 2.0
CLAHE_TILES = (8, 8)
# SIFT keypoints kept per image (strongest first): bounds matching cost and cache memory.
MAX_KEYPOINTS = 600
# SIFT's contrast threshold (OpenCV's default is 0.04): half of it, after CLAHE, keeps the few
# structures of dark, soft photos; the keypoint cap above still keeps the strongest only.
CONTRAST_THRESHOLD = 0.02
# Below this many pixels on the short side an image carries no verifiable detail.
MIN_SIDE = 32


@dataclass(frozen=True, slots=True)
class LocalFeatures:
    """SIFT keypoints of one grey working image."""

    points: np.ndarray  # [N,2] float32, x,y in working pixels
    descriptors: np.ndarray  # [N,128] float32 RootSIFT (unit L2 rows)
    width: int
    height: int

    @property
    def long_side(self) -> int:
        return max(self.width, self.height)

    @property
    def nbytes(self) -> int:
        return int(self.points.nbytes + self.descriptors.nbytes)


def grey_working_image(rgb: np.ndarray, working_side: int) -> np.ndarray:
    """H,W,3 (or H,W) uint8 -> h,w uint8 grey with long side <= working_side (never enlarged;
    INTER_AREA, the antialiased shrink)."""
    grey = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape[:2]
    f = working_side / max(h, w)
    if f < 1.0:
        size = (max(1, round(w * f)), max(1, round(h * f)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(grey)


def normalise_contrast(grey: np.ndarray) -> np.ndarray:
    """h,w uint8 -> h,w uint8 after CLAHE (local contrast stretched, noise amplification
    capped by the clip limit), so SIFT's contrast threshold finds keypoints in dark photos."""
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES)
    return clahe.apply(np.ascontiguousarray(grey))


def extract(grey: np.ndarray) -> LocalFeatures:
    """h,w uint8 grey -> its SIFT keypoints with RootSIFT descriptors (empty when flat).
    Both sides (query and stored thumbnail) go through the same contrast normalisation."""
    h, w = grey.shape[:2]
    empty = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), w, h)
    if min(h, w) < 16:
        return empty
    grey = normalise_contrast(grey)
    sift = cv2.SIFT_create(  # type: ignore[attr-defined]
        nfeatures=MAX_KEYPOINTS, contrastThreshold=CONTRAST_THRESHOLD
    )
    keypoints, desc = sift.detectAndCompute(grey, None)
    if desc is None or len(keypoints) == 0:
        return empty
    # RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, square root -> unit L2 rows.
    desc = desc.astype(np.float32)
    desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)
    desc = np.sqrt(desc)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32).reshape(-1, 2)
    return LocalFeatures(points, desc, w, h)


def features_from_jpeg(data: bytes, working_side: int) -> LocalFeatures | None:
    """A stored thumbnail (JPEG bytes) -> its features; None when it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("L", (working_side, working_side))
            grey = np.asarray(img.convert("L"))
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        logger.warning("thumbnail of %d bytes did not decode: %s", len(data), exc)
        return None
    return extract(grey_working_image(grey, working_side))


def _spread(points: np.ndarray, long_side: float) -> float:
    """Smaller principal std of [K,2] points over the long side (0 for < 3 points)."""
    if len(points) < 3:
        return 0.0
    cov = np.cov(points.T.astype(np.float64))
    return float(np.sqrt(max(np.linalg.eigvalsh(cov)[0], 0.0))) / long_side


def geometric_inliers(query: LocalFeatures, stored: LocalFeatures) -> int:
    """Matches between the two images that one similarity transform explains (0 when the best
    transform is degenerate: scale outside [1/MAX_SCALE, MAX_SCALE] or inliers not spread)."""
    if len(query.points) < 3 or len(stored.points) < 3:
        return 0
    # Distances of unit rows from their dot products: |q - s| = sqrt(2 - 2 q.s).
    sims = query.descriptors @ stored.descriptors.T  # [Nq, Ns]
    rows = np.arange(len(sims))
    nearest = np.argmax(sims, axis=1)
    best = sims[rows, nearest]
    sims[rows, nearest] = -np.inf
    second = sims.max(axis=1)
    d1 = np.sqrt(np.maximum(2.0 - 2.0 * best, 0.0))
    d2 = np.sqrt(np.maximum(2.0 - 2.0 * second, 0.0))
    keep = d1 < RATIO * d2
    q_idx, s_idx = rows[keep], nearest[keep]
    if len(q_idx) < 3:
        return 0
    # One match per stored keypoint (the closest), so a repeated texture cannot vote many times.
    by_dist = np.argsort(d1[q_idx])
    _, first = np.unique(s_idx[by_dist], return_index=True)
    chosen = by_dist[first]
    q_idx, s_idx = q_idx[chosen], s_idx[chosen]
    if len(q_idx) < 3:
        return 0
    src, dst = query.points[q_idx], stored.points[s_idx]
    transform, mask = cv2.estimateAffinePartial2D(
        src,
        dst,
        method=cv2.RANSAC,
        ransacReprojThreshold=REPROJ_FRACTION * stored.long_side,
        maxIters=2000,
        confidence=0.995,
    )
    if transform is None or mask is None:
        return 0
    inl = mask.ravel().astype(bool)
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if not (1.0 / MAX_SCALE <= scale <= MAX_SCALE):
        return 0
    # Spread is judged on the part the two pictures share: a half crop of a stored photo
    # covers half of its thumbnail, so there the inliers spread over half the long side.
    query_shared = min(query.long_side, stored.long_side / scale)
    stored_shared = min(stored.long_side, query.long_side * scale)
    if (
        _spread(src[inl], query_shared) < MIN_SPREAD
        or _spread(dst[inl], stored_shared) < MIN_SPREAD
    ):
        return 0
    return int(inl.sum())


class QueryImage:
    """The query side: its grey working image, with features (straight and mirrored) computed
    on first use, so a query whose hits need no geometry pays nothing."""

    def __init__(self, grey: np.ndarray, original_size: tuple[int, int]) -> None:
        self.grey = grey  # h,w uint8
        self.original_size = original_size  # (width, height) before the working resize
        self._straight: LocalFeatures | None = None
        self._mirrored: LocalFeatures | None = None
        # Where the straight features come from when not extracted here (see `share_straight`).
        self._straight_source: Callable[[np.ndarray], LocalFeatures] | None = None

    def share_straight(self, source: Callable[[np.ndarray], LocalFeatures]) -> None:
        """Take the straight features from `source(grey)` instead of extracting them here: a
        stored item used as the query ("more like this", the duplicate check of POST /index)
        has the very features the verdict's cache keeps for it, from the same thumbnail."""
        self._straight_source = source

    @property
    def too_small(self) -> bool:
        """Too few pixels to be verified or trusted as a copy (its global vector is near the
        constant one every tiny image gets)."""
        return min(self.original_size) < MIN_SIDE

    def straight(self) -> LocalFeatures:
        if self._straight is None:
            source = self._straight_source or extract
            self._straight = source(self.grey)
        return self._straight

    def mirrored(self) -> LocalFeatures:
        if self._mirrored is None:
            self._mirrored = extract(np.ascontiguousarray(self.grey[:, ::-1]))
        return self._mirrored

    def inliers(self, stored: LocalFeatures, min_inliers: int) -> int:
        """Inliers against `stored`; the mirrored query is tried when the straight one has
        fewer than `min_inliers`. The larger count wins."""
        n = geometric_inliers(self.straight(), stored)
        if n >= min_inliers:
            return n
        return max(n, geometric_inliers(self.mirrored(), stored))


def query_image(rgb: np.ndarray, working_side: int) -> QueryImage:
    """Decoded query H,W,3 uint8 RGB (already cropped to its bbox) -> QueryImage. Cheap (one
    antialiased shrink); the SIFT pass runs only if a hit needs geometry."""
    h, w = rgb.shape[:2]
    return QueryImage(grey_working_image(rgb, working_side), (w, h))


def query_view(decoded: DecodedImage, working_side: int, bbox: BBox | None = None) -> QueryImage:
    """The query as the verdict sees it, from the one decode of the upload (an embedder view):
    the pixels the model sees (bbox crop included), grey at the working size. "Too small" is
    judged on the upload's own pixels, not on the working image."""
    img = decoded.pixels  # [h,w,3] uint8, long side <= the model's max_side
    if bbox is not None:
        img = crop_bbox(img, bbox, decoded.crop_scale, upload_size=decoded.upload_size)
    f = max(img.shape[:2]) / max(decoded.pixels.shape[:2])
    w, h = decoded.upload_size
    return QueryImage(grey_working_image(img, working_side), (round(w * f), round(h * f)))


def query_image_from_jpeg(data: bytes, working_side: int) -> QueryImage | None:
    """A stored thumbnail as the query ("more like this", duplicates)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("L", (working_side, working_side))
            size = img.size
            grey = np.asarray(img.convert("L"))
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        logger.warning("thumbnail of %d bytes did not decode: %s", len(data), exc)
        return None
    return QueryImage(grey_working_image(grey, working_side), size)


class FeatureCache:
    """LRU of stored items' features keyed by (id, row): a re-added id gets a new row, so a
    replaced item is never verified against its old picture. Bounded by bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int], LocalFeatures | None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> tuple[bool, LocalFeatures | None]:
        with self._lock:
            if key not in self._entries:
                return False, None
            self._entries.move_to_end(key)
            return True, self._entries[key]

    def put(self, key: tuple[str, int], features: LocalFeatures | None) -> None:
        size = features.nbytes if features is not None else 0
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            self._bytes -= old.nbytes if old is not None else 0
            self._entries[key] = features
            self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes if dropped is not None else 0

    def __len__(self) -> int:
        return len(self._entries)
