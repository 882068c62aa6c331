"""How the store contract suite opens each `VectorStore` backend.

A harness opens a store for (dim, model sha), reopens it (restart persistence), and cleans up.
The FAISS harness uses a temporary directory; the Milvus harness a fresh collection on the
session's real Milvus server (workbench/servers/milvus_server.py).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Protocol

from app.config import FaissStoreSettings, IndexSettings, MilvusSettings
from app.index.faiss_store import FaissStore
from app.index.store import VectorStore


class StoreHarness(Protocol):
    name: str

    def open(self, dim: int, model_sha256: str | None) -> VectorStore: ...

    def cleanup(self) -> None: ...


class FaissHarness:
    name = "faiss"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self, dim: int, model_sha256: str | None) -> VectorStore:
        # Exact search throughout: the suite checks the contract, not IVF-PQ recall.
        settings = FaissStoreSettings(ivf_min_vectors=1_000_000, threads=1)
        return FaissStore.open(self.directory, dim, settings, model_sha256=model_sha256)

    def cleanup(self) -> None:
        pass


_collection_numbers = itertools.count()


def milvus_store_settings(uri: str, collection: str, **overrides: object) -> MilvusSettings:
    return MilvusSettings(
        uri=uri,
        collection=collection,
        timeout_s=30.0,
        **overrides,  # type: ignore[arg-type]
    )


class MilvusHarness:
    name = "milvus"

    def __init__(self, uri: str, **overrides: object) -> None:
        self.uri = uri
        # One collection per test: tests never see each other's items.
        self.collection = f"contract_{os.getpid()}_{next(_collection_numbers)}"
        self.overrides = overrides

    def open(self, dim: int, model_sha256: str | None) -> VectorStore:
        from app.index.milvus_store import MilvusStore

        settings = milvus_store_settings(self.uri, self.collection, **self.overrides)
        return MilvusStore.open(settings, dim, IndexSettings(), model_sha256=model_sha256)

    def cleanup(self) -> None:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.uri, timeout=30)
        try:
            if client.has_collection(self.collection):
                client.drop_collection(self.collection)
        finally:
            client.close()
