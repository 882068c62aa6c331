"""One Settings class for the service. Environment prefix `SIMSEARCH_`; nested groups use `__`
(e.g. `SIMSEARCH_INDEX__NPROBE=32`). Every field and its default is documented in the README.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class InferenceSettings(BaseModel):
    # "auto": CUDA when the installed onnxruntime has it, then CPU. TensorRT only when asked
    # for ("tensorrt"): it builds an engine per new input shape, and multi-scale has many.
    providers: Literal["auto", "cuda", "tensorrt", "cpu"] = "auto"
    # onnxruntime intra-op threads; 0 = number of usable cores.
    intra_op_threads: int = Field(default=0, ge=0)
    inter_op_threads: int = Field(default=1, ge=1)
    # Dynamic batcher: at most max_batch same-shaped tensors per session.run, waiting at most
    # max_wait_ms for a batch to fill; queue_size bounds the waiting requests (503 beyond).
    max_batch: int = Field(default=8, ge=1, le=256)
    max_wait_ms: float = Field(default=0.0, ge=0.0, le=1000.0)
    queue_size: int = Field(default=256, ge=1)
    # Threads that decode and resize uploads off the event loop.
    decode_threads: int = Field(default=0, ge=0)
    warmup: bool = True
    # Let idle onnxruntime intra-op threads spin (lower latency, but they burn the cores the
    # decode threads need on small CPU machines).
    allow_spinning: bool = False
    # CUDA EP cuDNN convolution algorithm search. EXHAUSTIVE benchmarks every new input shape,
    # and multi-scale uploads bring new shapes all the time, so HEURISTIC is the default.
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "HEURISTIC"
    # Decode large JPEGs at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling) when the long-side cap
    # would shrink them anyway. Faster, slightly different pixels: index and queries must agree.
    jpeg_draft: bool = False


class IndexSettings(BaseModel):
    # Exact (flat) search until the collection reaches this many live vectors; then IVF-PQ is
    # trained in the background. 0 = derive from the IVF parameters (39 x nlist, FAISS's floor).
    ivf_min_vectors: int = Field(default=0, ge=0)
    # Retrain IVF-PQ when the collection has grown this many times since the last training.
    retrain_growth: float = Field(default=4.0, gt=1.0)
    # ANN fetches top_k x candidate_factor candidates, then re-scores them exactly (fp16 rows).
    candidate_factor: int = Field(default=8, ge=1, le=64)
    # ...but never fewer than this many: at top_k 1-5, k x 8 PQ candidates can miss the true
    # nearest neighbour, and re-scoring 64 fp16 rows costs microseconds.
    min_candidates: int = Field(default=64, ge=1)
    nprobe: int = Field(default=16, ge=1)
    max_nprobe: int = Field(default=1024, ge=1)
    # Snapshot the FAISS index after this many adds (and on shutdown, and after training).
    snapshot_every: int = Field(default=10000, ge=1)
    # Compact tombstones out of the FAISS index once they exceed this fraction of it.
    compact_ratio: float = Field(default=0.2, gt=0.0, le=1.0)
    faiss_threads: int = Field(default=0, ge=0)
    training_sample: int = Field(default=200_000, ge=1000)


class LimitSettings(BaseModel):
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # Decoded pixels (w x h) allowed before we refuse: decompression-bomb guard.
    max_pixels: int = Field(default=40_000_000, ge=1)
    max_files_per_request: int = Field(default=32, ge=1)
    max_top_k: int = Field(default=1000, ge=1)
    max_metadata_bytes: int = Field(default=16 * 1024, ge=2)
    max_id_length: int = Field(default=512, ge=1)
    max_vectors_per_request: int = Field(default=10_000, ge=1)
    request_timeout_s: float = Field(default=60.0, gt=0)


class RerankSettings(BaseModel):
    # SuperGlobal (ICCV 2023) re-ranking over the exact top-M: K neighbours, beta weight.
    top_m: int = Field(default=100, ge=2)
    max_top_m: int = Field(default=400, ge=2)
    k: int = Field(default=9, ge=1)
    beta: float = Field(default=0.15, ge=0.0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIMSEARCH_", env_nested_delimiter="__", extra="ignore"
    )

    # Holds model/ (model.onnx + model_meta.json) and store/.
    data_dir: Path = Path("index_data")
    # Where model.onnx + model_meta.json live; default <data_dir>/model.
    model_dir: Path | None = None
    # Fail at startup unless a GPU execution provider is active.
    require_gpu: bool = False
    log_level: str = "INFO"
    inference: InferenceSettings = InferenceSettings()
    index: IndexSettings = IndexSettings()
    limits: LimitSettings = LimitSettings()
    rerank: RerankSettings = RerankSettings()

    def resolved_model_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "model"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    def resolved_intra_op_threads(self) -> int:
        return self.inference.intra_op_threads or _cpu_count()

    def resolved_decode_threads(self) -> int:
        return self.inference.decode_threads or max(2, _cpu_count())

    def resolved_faiss_threads(self) -> int:
        return self.index.faiss_threads or _cpu_count()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
