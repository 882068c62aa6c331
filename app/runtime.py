"""Everything the service holds while it runs: model artifact, ORT session, batcher, embedder,
store and search service. Built once in the lifespan; routes reach it through app/api/deps.py."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from app.artifacts import MODEL_FILE, ModelMeta, load_model_meta
from app.config import Settings
from app.index.factory import open_vector_store
from app.index.store import StoreStats, VectorStore
from app.inference.batcher import DynamicBatcher
from app.inference.embedder import Embedder
from app.inference.session import OnnxSession
from app.memory import LargeDecodeTrimmer, configure_malloc
from app.metrics import Metrics
from app.search.service import SearchService
from app.threads import limit_numpy_blas

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    meta: ModelMeta
    session: OnnxSession
    batcher: DynamicBatcher
    executor: ThreadPoolExecutor
    embedder: Embedder
    store: VectorStore
    service: SearchService
    ready: threading.Event = field(default_factory=threading.Event)
    warmup_error: str | None = None

    @classmethod
    def start(cls, settings: Settings, metrics: Metrics) -> Runtime:
        """Load and cross-check the artifact and the store; refuse to start on any mismatch."""
        limit_numpy_blas(settings.rerank.blas_threads)
        mem = settings.memory
        # Before the decode threads exist, so each of them honours it.
        configure_malloc(mem.malloc_arena_max, mem.mmap_threshold_kib * 1024,
                         mem.trim_threshold_kib * 1024)
        model_dir = settings.resolved_model_dir()
        meta = load_model_meta(model_dir)
        session = OnnxSession(
            model_dir / meta.onnx_file,
            meta,
            settings.inference,
            require_gpu=settings.require_gpu,
            intra_op_threads=settings.resolved_intra_op_threads(),
        )
        logger.info(
            "model %s %s (%s) on providers %s",
            meta.name,
            meta.version,
            meta.source.kind,
            session.active_providers,
        )
        # A graph exported with a fixed batch axis caps the batch size.
        max_batch = settings.inference.max_batch
        if session.max_batch is not None:
            max_batch = min(max_batch, session.max_batch)
        if session.active_providers == ["CPUExecutionProvider"]:
            max_batch = min(max_batch, settings.inference.cpu_max_batch)
        batcher = DynamicBatcher(
            session.run,
            max_batch=max_batch,
            max_wait_ms=settings.inference.max_wait_ms,
            queue_size=settings.inference.queue_size,
            observer=metrics,
        )
        executor = ThreadPoolExecutor(
            max_workers=settings.resolved_decode_threads(), thread_name_prefix="decode"
        )
        embedder = Embedder(
            meta, batcher, executor, settings.limits, jpeg_draft=settings.inference.jpeg_draft,
            pixel_chain=settings.inference.pixel_chain,
            trimmer=LargeDecodeTrimmer(mem.trim_after_pixels),
        )
        logger.info("pixel chain: %s (artifact: %s)", embedder.chain,
                    meta.preprocessing.pixel_chain)
        try:
            store = open_vector_store(settings, meta.embedding_dim, meta.onnx_sha256)
        except BaseException:
            batcher.close()
            executor.shutdown(wait=False)
            raise
        service = SearchService(embedder, store, settings, metrics)
        metrics.model_info.info(
            {
                "name": meta.name,
                "version": meta.version,
                "source": meta.source.kind,
                "providers": ",".join(session.active_providers),
                "file": MODEL_FILE,
            }
        )
        return cls(settings, metrics, meta, session, batcher, executor, embedder, store, service)

    def warm_up_in_background(self) -> threading.Thread:
        """Run every scale once so the first request does not pay graph initialisation."""

        def _run() -> None:
            try:
                if self.settings.inference.warmup:
                    self.embedder.warmup()
                self.ready.set()
                logger.info("warm-up done; ready")
            except Exception as exc:
                self.warmup_error = f"{type(exc).__name__}: {exc}"
                logger.exception("warm-up failed; the service stays not-ready")

        thread = threading.Thread(target=_run, name="warmup", daemon=True)
        thread.start()
        return thread

    def not_ready_reason(self) -> str | None:
        """None when requests can be served; else why not (warm-up, store unreachable)."""
        if not self.ready.is_set():
            return self.warmup_error or "the model is warming up"
        return self.store.availability()

    def refresh_gauges(self, stats: StoreStats | None = None) -> None:
        stats = self.store.stats() if stats is None else stats
        self.metrics.ntotal.set(stats.ntotal)
        self.metrics.index_info.info(
            {
                "type": stats.index_type,
                "generation": str(stats.generation),
            }
        )

    def close(self) -> None:
        """Called after the server stopped taking requests: finish what is queued, then close
        the store (final snapshot), so a restart finds nothing to replay."""
        self.ready.clear()
        logger.info(
            "shutting down: draining %d queued inference tensors", self.batcher.queue_depth
        )
        self.batcher.close(drain=True)
        self.executor.shutdown(wait=True)
        self.store.close()
