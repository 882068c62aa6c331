"""workbench/ingest/bulk.py (embed_shard.py, load_shards.py): shards cover a listing once, an
interrupted shard resumes, the Parquet rows are the service's own embeddings, and the shards
load into a searchable FAISS store and (tests marked `milvus`) into Milvus by bulk insert."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.config import ThumbnailSettings
from workbench.artifacts.tiny_model import write_tiny_model
from workbench.ingest.bulk import (
    check_parts,
    embed_shard,
    find_parts,
    load_faiss,
    load_milvus_bulk,
    part_info,
    read_listing,
    read_part,
    shard_bounds,
)

REPO = Path(__file__).resolve().parents[3]
PHOTOS = REPO.parent / "shared" / "data" / "photos"
NAMES = [
    "mate_aqua.jpg",
    "mate_garden.jpg",
    "plasma_kite.jpg",
    "plasma_path.jpg",
    "skimage_coffee.jpg",
    "lomiri_free.jpg",
]

needs_photos = pytest.mark.skipif(
    not PHOTOS.is_dir(), reason="../shared/data/photos is not available"
)


def test_shards_cover_every_entry_exactly_once() -> None:
    for total in range(0, 40):
        for count in range(1, 9):
            covered = []
            for i in range(count):
                lo, hi = shard_bounds(total, i, count)
                assert 0 <= hi - lo <= total // count + 1
                covered.extend(range(lo, hi))
            assert covered == list(range(total))


def test_listing_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# photos\na.jpg\n\n sub/b.png \n")
    root, entries = read_listing(listing, None)
    assert root == tmp_path and entries == ["a.jpg", "sub/b.png"]


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Six shared photos and one broken file embedded in 2 shards by the tiny model; shard 0
    interrupted after its first part and resumed."""
    if not PHOTOS.is_dir():
        pytest.skip("../shared/data/photos is not available")
    from app.config import Settings

    tmp = tmp_path_factory.mktemp("ingest")
    photos = tmp / "photos"
    photos.mkdir()
    for name in NAMES:
        shutil.copy(PHOTOS / name, photos / name)
    (photos / "broken.jpg").write_bytes(b"not an image at all")
    listing = tmp / "listing.txt"
    listing.write_text("\n".join(sorted(p.name for p in photos.iterdir())) + "\n")
    model = write_tiny_model(tmp / "model")
    settings = Settings(data_dir=tmp / "data", model_dir=model)
    out = tmp / "shards"
    kw = {"root": photos, "part_size": 2}
    interrupted = embed_shard(listing, out, (0, 2), settings, stop_after_parts=1, **kw)
    left_after_interruption = sorted(p.name for p in Path(interrupted.out).iterdir())
    resumed = embed_shard(listing, out, (0, 2), settings, **kw)
    other = embed_shard(listing, out, (1, 2), settings, **kw)
    again = embed_shard(listing, out, (1, 2), settings, **kw)
    return {
        "tmp": tmp,
        "photos": photos,
        "listing": listing,
        "settings": settings,
        "out": out,
        "runs": (interrupted, resumed, other, again),
        "left": left_after_interruption,
    }


@needs_photos
def test_interrupted_shard_resumes_and_shards_hold_every_image_once(ingest: dict) -> None:
    interrupted, resumed, other, again = ingest["runs"]
    # 7 entries: shard 0 = entries [0, 3) in parts of 2 -> 2 parts; shard 1 = [3, 7) -> 2 parts.
    assert (interrupted.parts, interrupted.parts_skipped) == (2, 0)
    assert ingest["left"] == ["part-000000.parquet"]  # no _SUCCESS, no temp file
    assert (resumed.parts_skipped, other.parts_skipped, again.parts_skipped) == (1, 0, 2)
    assert again.embedded == 0  # nothing redone
    parts = find_parts([ingest["out"]])
    assert len(parts) == 4
    ids = [i for p in parts for b in read_part(p) for i in b.ids]
    assert sorted(ids) == sorted(NAMES)  # the broken file is skipped, recorded as failed
    failed = [f for p in parts for f in part_info(p)["failed"]]
    assert [f["path"] for f in failed] == ["broken.jpg"]
    assert "not a decodable image" in failed[0]["error"]
    for run in (resumed, other):
        assert (Path(run.out) / "_SUCCESS.json").is_file()


@needs_photos
def test_rows_are_the_services_embeddings_and_thumbnails(ingest: dict) -> None:
    import asyncio

    from app.metrics import Metrics
    from app.runtime import Inference

    parts = find_parts([ingest["out"]])
    dim = check_parts(parts, None)
    inference = Inference.start(ingest["settings"], Metrics())
    try:
        assert dim == inference.meta.embedding_dim
        assert part_info(parts[0])["model_sha256"] == inference.meta.onnx_sha256
        for part in parts:
            for batch in read_part(part):
                blobs = [(ingest["photos"] / i).read_bytes() for i in batch.ids]
                want = asyncio.run(inference.embedder.embed_many(blobs))  # [N, D]
                np.testing.assert_allclose(batch.vectors, want, atol=2e-3)
                assert all(
                    m == {"filename": Path(i).name}
                    for m, i in zip(batch.metadata, batch.ids, strict=True)
                )
                for thumb in batch.thumbnails:
                    with Image.open(io.BytesIO(thumb)) as img:
                        assert img.format == "JPEG"
                        assert max(img.size) <= ThumbnailSettings().long_side
    finally:
        inference.close()


@needs_photos
def test_faiss_store_built_from_shards_is_searchable_and_reload_skips(ingest: dict) -> None:
    from app.config import FaissStoreSettings
    from app.index.faiss_store import FaissStore

    parts = find_parts([ingest["out"]])
    store_dir = ingest["tmp"] / "store"
    report = load_faiss(parts, store_dir, FaissStoreSettings(threads=1))
    assert (report.rows, report.ntotal, report.parts_skipped) == (6, 6, 0)
    again = load_faiss(parts, store_dir, FaissStoreSettings(threads=1))
    assert (again.rows, again.ntotal, again.parts_skipped) == (0, 6, 4)
    store = FaissStore.open(store_dir, check_parts(parts, None), FaissStoreSettings(threads=1))
    try:
        for name in NAMES:
            item = store.get(name, with_vector=True)
            assert item is not None and item.has_thumbnail
            assert item.metadata == {"filename": Path(name).name}
            hits = store.search(item.vector[None, :], 3)[0]
            assert hits[0].id == name and hits[0].score == pytest.approx(1.0, abs=1e-3)
    finally:
        store.close()


@needs_photos
def test_parts_of_another_model_are_refused(ingest: dict) -> None:
    with pytest.raises(ValueError, match="not comparable"):
        check_parts(find_parts([ingest["out"]]), "0" * 64)


@needs_photos
@pytest.mark.milvus
def test_milvus_bulk_insert_of_shards(ingest: dict, milvus_server) -> None:
    from app.config import IndexSettings
    from tests.app.index.backends import MilvusHarness, milvus_store_settings

    parts = find_parts([ingest["out"]])
    harness = MilvusHarness(milvus_server.uri)
    store_settings = milvus_store_settings(milvus_server.uri, harness.collection)
    # The standalone server's local storage: it reads import files from <data-dir>/data.
    files_dir = milvus_server.data_dir / "data" / "imports"
    files_dir.mkdir(parents=True, exist_ok=True)
    try:
        report = load_milvus_bulk(parts, store_settings, IndexSettings(), files_dir, timeout=300)
        assert (report.rows, report.ntotal) == (6, 6)
        assert not list(files_dir.glob("*.parquet"))  # staged files are removed after import
        again = load_milvus_bulk(parts, store_settings, IndexSettings(), files_dir, timeout=300)
        assert (again.rows, again.parts_skipped, again.ntotal) == (0, 4, 6)
        store = harness.open(check_parts(parts, None), part_info(parts[0])["model_sha256"])
        try:
            for part in parts:
                for batch in read_part(part):
                    for i, item_id in enumerate(batch.ids):
                        item = store.get(item_id, with_vector=True)
                        assert item is not None
                        assert item.metadata == {"filename": Path(item_id).name}
                        np.testing.assert_allclose(item.vector, batch.vectors[i], atol=1e-6)
                        assert store.thumbnail(item_id) == batch.thumbnails[i]
                        hit = store.search(batch.vectors[i][None, :], 1)[0][0]
                        assert hit.id == item_id
        finally:
            store.close()
    finally:
        harness.cleanup()


def test_summary_files_are_json(tmp_path: Path) -> None:
    # _SUCCESS.json is what a scheduler (or a person) checks; it must be valid JSON.
    from dataclasses import asdict

    from workbench.ingest.bulk import ShardReport

    report = ShardReport("0/1", 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, str(tmp_path))
    assert json.loads(json.dumps(asdict(report)))["shard"] == "0/1"


@needs_photos
def test_sha256_ids_keep_one_item_per_content(tmp_path: Path) -> None:
    from app.config import Settings

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg"):  # the same bytes under two names
        shutil.copy(PHOTOS / NAMES[0], photos / name)
    shutil.copy(PHOTOS / NAMES[1], photos / "c.jpg")
    settings = Settings(data_dir=tmp_path / "data", model_dir=write_tiny_model(tmp_path / "m"))
    report = embed_shard(photos, tmp_path / "out", (0, 1), settings, id_mode="sha256")
    ids = [i for p in find_parts([tmp_path / "out"]) for b in read_part(p) for i in b.ids]
    assert report.embedded == 2 and len(ids) == 2 and all(len(i) == 64 for i in ids)


@needs_photos
def test_each_image_is_decoded_once_for_its_vector_and_its_thumbnail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.inference.embedder as embedder_module
    import app.thumbnails as thumbnails_module
    from app.config import Settings
    from app.metrics import Metrics
    from app.runtime import Inference
    from app.thumbnails import working_thumbnail

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in NAMES[:3]:
        shutil.copy(PHOTOS / name, photos / name)
    decodes: list[int] = []
    real_decode = embedder_module.decode_working_image

    def counting_decode(data: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        decodes.append(len(data))
        return real_decode(data, *args, **kwargs)

    def no_second_decode(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a thumbnail was decoded again from the file")

    monkeypatch.setattr(embedder_module, "decode_working_image", counting_decode)
    monkeypatch.setattr(thumbnails_module, "make_thumbnail", no_second_decode)
    settings = Settings(data_dir=tmp_path / "data", model_dir=write_tiny_model(tmp_path / "m"))
    report = embed_shard(photos, tmp_path / "shards", (0, 1), settings, part_size=8)
    assert report.embedded == 3
    assert sorted(decodes) == sorted((photos / n).stat().st_size for n in NAMES[:3])
    # The thumbnails are the service's: its working image's, made the same way.
    (part,) = find_parts([tmp_path / "shards"])
    inference = Inference.start(settings, Metrics())
    try:
        for batch in read_part(part):
            for item_id, thumb in zip(batch.ids, batch.thumbnails, strict=True):
                decoded = inference.embedder.decode((photos / item_id).read_bytes())
                want = working_thumbnail(decoded.pixels, settings.thumbnails, decoded.upload_size)
                assert thumb == want
    finally:
        inference.close()
