"""One factory for the `VectorStore` the service runs on: backend name -> opener.

`SIMSEARCH_STORE__BACKEND=faiss` (default) opens the embedded FAISS store in
<data_dir>/store; `milvus` connects to the Milvus server in `settings.store`. Both refuse a
store built by another model (ArtifactMismatch).
"""

from __future__ import annotations

from collections.abc import Callable

from app.config import Settings
from app.index.store import VectorStore

Opener = Callable[[Settings, int, "str | None"], VectorStore]


def _open_faiss(settings: Settings, dim: int, model_sha256: str | None) -> VectorStore:
    from app.index.faiss_store import FaissStore

    return FaissStore.open(settings.store_dir, dim, settings.index, model_sha256=model_sha256)


def _open_milvus(settings: Settings, dim: int, model_sha256: str | None) -> VectorStore:
    # Imported only when chosen: pymilvus (grpc) costs startup time the FAISS path never needs,
    # and it is the `milvus` extra, not part of the core install.
    try:
        import pymilvus  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            "store backend 'milvus' needs the Milvus client, which is not installed: "
            "pip install 'dolg-simsearch[milvus]' (pymilvus), or use the backend 'faiss'"
        ) from exc
    from app.index.milvus_store import MilvusStore

    return MilvusStore.open(settings.store, dim, settings.index, model_sha256=model_sha256)


BACKENDS: dict[str, Opener] = {"faiss": _open_faiss, "milvus": _open_milvus}


def open_vector_store(settings: Settings, dim: int, model_sha256: str | None) -> VectorStore:
    """Open the configured backend for vectors of `dim` from the model `model_sha256`."""
    name = settings.store.backend
    try:
        opener = BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown store backend {name!r}; valid: {', '.join(sorted(BACKENDS))}"
        ) from None
    return opener(settings, dim, model_sha256)
