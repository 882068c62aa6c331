"""The study's data set, through the service's embedder: descriptors of the shared photos and
the distractors, the distractor items both stores hold, and the queries (edited copies of every
photo, never-stored distractors and a few of their edits)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from app.runtime import Runtime
from app.search.verify import QueryImage, query_view
from workbench.evaluation.copy_study.edits import (
    EDITS,
    NEGATIVE_EDITS,
    crops,
    jpeg_bytes,
    load_rgb,
    tiles,
)
from workbench.evaluation.copy_study.progress import log

MIN_STORE = 1000  # items per store (the study's stores are at least this large)
NEAR_COPY = 0.9  # a distractor this close (cosine) to a photo or a kept distractor is dropped


@dataclass
class Query:
    name: str
    group: str  # the picture it comes from (folds split by this)
    edit: str
    data: bytes
    source_id: str | None  # id of the picture in a store (None for distractor negatives)
    vector: np.ndarray | None = None  # [D]
    image: QueryImage | None = None  # the verdict's view of it


@dataclass
class StudyData:
    photo_stems: list[str]
    photo_vecs: np.ndarray  # [P, D], row k for photo_stems[k]
    photo_thumbs: list[bytes | None] | None
    item_ids: list[str]  # the distractor items both stores hold
    item_vecs: np.ndarray  # [S, D], row k for item_ids[k]
    item_thumbs: list[bytes | None] | None
    queries: list[Query]
    stored_pictures: int  # distractor pictures whose items are stored
    never_stored_pictures: int  # distractor pictures only queried
    dropped: list[str]  # distractors dropped as near-copies


async def embed_all(runtime: Runtime, blobs: list[bytes], cache: Path) -> np.ndarray:
    """[N, D] descriptors of `blobs`; kept in `cache` (an .npz keyed by the bytes' SHA-256,
    the model's and the pixel chain), so a re-run does not embed the same distractors again."""
    known: dict[str, np.ndarray] = dict(np.load(cache)) if cache.is_file() else {}
    # The model and the pixel chain that decodes for it both shape the descriptor.
    salt = f"{runtime.meta.onnx_sha256}/{runtime.embedder.chain}".encode()
    keys = [hashlib.sha256(salt + b).hexdigest() for b in blobs]
    todo = [i for i, k in enumerate(keys) if k not in known]
    for lo in range(0, len(todo), 32):
        part = todo[lo : lo + 32]
        vecs = await runtime.service.embed_images([blobs[i] for i in part])
        known.update({keys[i]: v for i, v in zip(part, vecs, strict=True)})
        np.savez(cache, **known)  # type: ignore[arg-type]  # numpy's stub: keys as arrays
    if not blobs:
        return np.zeros((0, runtime.meta.embedding_dim), np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def cache_file(runtime: Runtime, folder: Path) -> Path:
    """Descriptors depend on the artifact and on the pixel chain that decodes for it."""
    return folder / f"embeddings-{runtime.meta.onnx_sha256[:12]}-{runtime.embedder.chain}.npz"


async def embed_query(runtime: Runtime, q: Query, side: int) -> None:
    # The service's own view of a query (SearchService.search_image uses the same function).
    out = await runtime.embedder.embed_upload(
        q.data, views={"verdict": lambda decoded: query_view(decoded, side)}
    )
    q.vector = out.vector
    q.image = cast(QueryImage, out.views["verdict"])


def distinct_sources(
    photo_vecs: np.ndarray, src_vecs: np.ndarray, limit: float = NEAR_COPY
) -> tuple[list[int], list[int]]:
    """(kept, dropped) rows of `src_vecs` [N, D]: a distractor whose cosine to a photo
    (`photo_vecs` [P, D]) or to a distractor kept before it exceeds `limit` would be a
    mislabelled negative, so it is dropped."""
    kept: list[int] = []
    dropped: list[int] = []
    for i, v in enumerate(src_vecs):
        near = max(
            float(np.max(photo_vecs @ v)), max((float(src_vecs[j] @ v) for j in kept), default=-1.0)
        )
        (dropped if near > limit else kept).append(i)
    return kept, dropped


def never_stored(name: str) -> bool:
    """A fifth of the distractor pictures, by name, are only ever queried."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 5 == 0


def distractor_items(
    names: dict[int, str],
    sources: list[int],
    images: list[Image.Image],
    photos_stored: int,
    smoke: bool,
) -> tuple[list[str], list[bytes]]:
    """(ids, JPEG bytes) of the crops the stores hold beside the whole pictures: each source
    picture's halves and 2x2 and 3x3 tiles, then the 4x4 tiles of as many pictures as it takes
    to pass MIN_STORE items (with `photos_stored` photos in a store)."""
    ids, blobs = [], []
    for i in sources:
        for t, im in enumerate(crops(images[i]), start=1):
            ids.append(f"{names[i]}#{t}")
            blobs.append(jpeg_bytes(im))
    for i in sources:
        if len(sources) + len(ids) + photos_stored >= MIN_STORE and not smoke:
            break
        for t, im in enumerate(tiles(images[i], 4), start=100):
            ids.append(f"{names[i]}#{t}")
            blobs.append(jpeg_bytes(im))
    return ids, blobs


def make_queries(
    photo_imgs: dict[str, Image.Image], negatives: list[tuple[str, Image.Image]]
) -> list[Query]:
    """Every photo and each of its EDITS (copies of a photo wherever it is stored), then each
    never-stored distractor (name, picture) and its NEGATIVE_EDITS."""
    queries: list[Query] = []
    for stem, im in photo_imgs.items():
        queries.append(Query(f"{stem}/original", stem, "original", jpeg_bytes(im), f"photo:{stem}"))
        for edit, fn in EDITS.items():
            queries.append(Query(f"{stem}/{edit}", stem, edit, jpeg_bytes(fn(im)), f"photo:{stem}"))
    for name, im in negatives:
        queries.append(Query(f"{name}/original", name, "original", jpeg_bytes(im), None))
        for edit in NEGATIVE_EDITS:
            queries.append(Query(f"{name}/{edit}", name, edit, jpeg_bytes(EDITS[edit](im)), None))
    return queries


async def build_dataset(
    runtime: Runtime,
    photos: list[Path],
    sources: list[Path],
    distractors: Path,
    side: int,
    smoke: bool,
) -> StudyData:
    """Descriptors, thumbnails and queries through `runtime` (descriptors of the photos and
    distractors cached in `distractors`), queries embedded with the verdict's view at `side`."""
    cache = cache_file(runtime, distractors)
    photo_imgs = {p.stem: load_rgb(p) for p in photos}
    photo_vecs = await embed_all(runtime, [jpeg_bytes(im) for im in photo_imgs.values()], cache)
    src_imgs = [load_rgb(p) for p in sources]
    src_vecs = await embed_all(runtime, [jpeg_bytes(im) for im in src_imgs], cache)
    kept, dropped_rows = distinct_sources(photo_vecs, src_vecs)
    dropped = [str(sources[i]).split("/usr/share/")[-1] for i in dropped_rows]
    names = {i: f"dist:{sources[i].relative_to(distractors)}" for i in kept}
    assert len(set(names.values())) == len(names)
    neg_sources = [i for i in kept if never_stored(names[i])]
    store_sources = [i for i in kept if i not in neg_sources]
    # Store items (shared by both stores): distractor pictures, their halves and tiles.
    item_ids = [f"{names[i]}#0" for i in store_sources]
    item_blobs = [jpeg_bytes(src_imgs[i]) for i in store_sources]
    crop_ids, crop_blobs = distractor_items(names, store_sources, src_imgs, len(photos) // 2, smoke)
    log(
        f"{len(item_ids) + len(crop_ids)} distractor items from {len(store_sources)} pictures; "
        f"{len(neg_sources)} pictures kept never-stored; dropped as near-copies: {dropped}"
    )
    crop_vecs = await embed_all(runtime, crop_blobs, cache)
    item_vecs = np.concatenate([src_vecs[store_sources], crop_vecs])
    item_ids += crop_ids
    item_blobs += crop_blobs
    queries = make_queries(photo_imgs, [(names[i], src_imgs[i]) for i in neg_sources])
    data = StudyData(
        photo_stems=list(photo_imgs),
        photo_vecs=photo_vecs,
        photo_thumbs=runtime.service.make_thumbnails(
            [jpeg_bytes(im) for im in photo_imgs.values()]
        ),
        item_ids=item_ids,
        item_vecs=item_vecs,
        item_thumbs=runtime.service.make_thumbnails(item_blobs),
        queries=queries,
        stored_pictures=len(store_sources),
        never_stored_pictures=len(neg_sources),
        dropped=dropped,
    )
    for q in queries:
        await embed_query(runtime, q, side)
    return data
