"""One factory for the `VectorStore` the service runs on: backend name -> opener.

`SIMSEARCH_STORE__BACKEND=faiss` (default) opens the embedded FAISS store in
<data_dir>/store; `milvus` connects to the Milvus server in `settings.store.milvus`. Both refuse a
store built by another model (ArtifactMismatch).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from app.config import Settings
from app.index.store import VectorStore

Opener = Callable[[Settings, int, "str | None"], VectorStore]
# (dim, model sha256) an existing store records, None when there is none yet: what a tool
# that opens a store it did not create (the copy tool) needs before it can open it.
IdentityReader = Callable[[Settings], "tuple[int, str | None] | None"]


def _open_faiss(settings: Settings, dim: int, model_sha256: str | None) -> VectorStore:
    from app.index.faiss_store import FaissStore

    return FaissStore.open(
        settings.store_dir, dim, settings.faiss_store_settings(), model_sha256=model_sha256
    )


def _faiss_identity(settings: Settings) -> tuple[int, str | None] | None:
    from app.index.catalog import Catalog
    from app.index.snapshots import CATALOG_FILE

    path = settings.store_dir / CATALOG_FILE
    if not path.is_file():
        return None
    catalog = Catalog.open(path)
    try:
        dim = catalog.get_meta("dim")
        return None if dim is None else (int(dim), catalog.get_meta("model_sha256"))
    finally:
        catalog.close()


_MILVUS_CLIENT_MISSING = (
    "store backend 'milvus' needs the Milvus client, which is not installed: "
    "pip install 'dolg-simsearch[milvus]' (pymilvus), or use the backend 'faiss'"
)


def _require_pymilvus() -> None:
    # Imported only when chosen: pymilvus (grpc) costs startup time the FAISS path never needs,
    # and it is the `milvus` extra, not part of the core install.
    try:
        import pymilvus  # noqa: F401
    except ImportError as exc:
        raise ValueError(_MILVUS_CLIENT_MISSING) from exc


def _milvus_identity(settings: Settings) -> tuple[int, str | None] | None:
    _require_pymilvus()
    from app.index.milvus_store import recorded_identity

    return recorded_identity(settings.store.milvus)


def _open_milvus(settings: Settings, dim: int, model_sha256: str | None) -> VectorStore:
    _require_pymilvus()
    from app.index.milvus_store import MilvusStore

    # Only the search knobs every backend shares: store.faiss.* stays with FAISS.
    return MilvusStore.open(settings.store.milvus, dim, settings.index, model_sha256=model_sha256)


BACKENDS: dict[str, Opener] = {"faiss": _open_faiss, "milvus": _open_milvus}
IDENTITIES: dict[str, IdentityReader] = {"faiss": _faiss_identity, "milvus": _milvus_identity}


def _backend(settings: Settings) -> str:
    name = settings.store.backend
    if name not in BACKENDS:
        raise ValueError(f"unknown store backend {name!r}; valid: {', '.join(sorted(BACKENDS))}")
    return name


def open_vector_store(settings: Settings, dim: int, model_sha256: str | None) -> VectorStore:
    """Open the configured backend for vectors of `dim` from the model `model_sha256`."""
    return BACKENDS[_backend(settings)](settings, dim, model_sha256)


def missing_client(settings: Settings) -> str | None:
    """Why the configured backend cannot run in this install (its extra is missing), else None;
    checked without importing the client, so the launcher can refuse before loading a model."""
    if settings.store.backend != "milvus":
        return None
    try:
        found = importlib.util.find_spec("pymilvus") is not None
    except ValueError:  # sys.modules["pymilvus"] is None: imports of it are blocked
        found = False
    return None if found else _MILVUS_CLIENT_MISSING


def recorded_identity(settings: Settings) -> tuple[int, str | None] | None:
    """(dim, model sha256) recorded by the configured store; None when it holds nothing yet."""
    return IDENTITIES[_backend(settings)](settings)
