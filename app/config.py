"""One Settings class for the service. Environment prefix `SIMSEARCH_`; nested groups use `__`
(e.g. `SIMSEARCH_INDEX__NPROBE=32`). Every field and its default is documented in the README.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.threads import usable_cores

logger = logging.getLogger(__name__)

Scope = Literal["read", "write"]
# Shorter keys are refused at startup: an API key is a password nobody has to type.
MIN_API_KEY_LENGTH = 16


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
    # The same bound when onnxruntime runs on the CPU only. Stacking images costs CPU there
    # instead of saving it: Lite0 at 512x384 + 362x272 took 95 ms of CPU per image at batch 1,
    # 103-109 at 2, 124-129 at 4 and 115-133 at 8 on the 2-core machine (docs/BENCHMARKS.md).
    cpu_max_batch: int = Field(default=1, ge=1, le=256)
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
    # (The "fast" pixel chain always does this; this setting adds it to the official chain.)
    jpeg_draft: bool = False
    # Upload -> model input: "auto" = what the artifact's meta says (preprocessing.pixel_chain),
    # "official" = the cv2-style DOLG chain, "fast" = DCT-scaled decode + antialiased bicubic
    # (app/inference/working.py). Index and queries must use the same chain.
    pixel_chain: Literal["auto", "official", "fast"] = "auto"


class MemorySettings(BaseModel):
    """glibc allocator tuning (app/memory.py), applied once at startup; 0 leaves a knob alone.

    Decoding threads otherwise each get their own malloc arena, and glibc's dynamic mmap
    threshold makes freed multi-MB decode buffers stay in those arenas: RSS only grows.
    """

    # Like MALLOC_ARENA_MAX: most malloc arenas for the process's threads.
    malloc_arena_max: int = Field(default=2, ge=0, le=64)
    # Allocations of at least this size are mmapped and handed back to the OS when freed
    # (setting it also stops glibc raising the threshold after each big free). 8 MiB: above
    # the fast chain's per-request buffers (model inputs 2.3 MB, a 1/4-scale 12 MP decode
    # 3 MB), which then stay in the heap and cost no page faults; below Pillow's 16 MiB
    # blocks, so full-size decodes always go back.
    mmap_threshold_kib: int = Field(default=8192, ge=0, le=32768)
    # Free memory at the top of a heap beyond this is returned at once (glibc's M_TRIM_THRESHOLD;
    # fixing the mmap threshold would otherwise leave it at 128 KiB, and every request's
    # buffers would fault their pages in again: 2.4 ms instead of 0.3 ms per pair of inputs).
    trim_threshold_kib: int = Field(default=32768, ge=0, le=1048576)
    # After a request that decoded an upload of at least this many pixels, once no other such
    # decode is running: malloc_trim(0), which returns the arenas' free pages. 0 = never.
    trim_after_pixels: int = Field(default=4_000_000, ge=0)


class IndexSettings(BaseModel):
    """SIMSEARCH_INDEX__*: how a search fetches and re-scores candidates, on every backend."""

    # ANN fetches top_k x candidate_factor candidates, then re-scores them exactly (fp16 rows).
    candidate_factor: int = Field(default=8, ge=1, le=64)
    # ...but never fewer than this many: at top_k 1-5, k x 8 PQ candidates can miss the true
    # nearest neighbour, and re-scoring 64 fp16 rows costs microseconds.
    min_candidates: int = Field(default=64, ge=1)
    # IVF lists probed per search (FAISS IVF-PQ, Milvus IVF_*; HNSW's ef on Milvus is at least
    # this), and the largest value a request may ask for.
    nprobe: int = Field(default=16, ge=1)
    max_nprobe: int = Field(default=1024, ge=1)


class FaissSettings(BaseModel):
    """SIMSEARCH_STORE__FAISS__*: the embedded FAISS store's own knobs (never passed to Milvus)."""

    # Exact (flat) search until the collection reaches this many live vectors; then IVF-PQ is
    # trained in the background. 0 = derive from the IVF parameters (39 x nlist, FAISS's floor).
    ivf_min_vectors: int = Field(default=0, ge=0)
    # Retrain IVF-PQ when the collection has grown this many times since the last training.
    retrain_growth: float = Field(default=4.0, gt=1.0)
    # Snapshot the FAISS index after this many adds (and on shutdown, and after training).
    snapshot_every: int = Field(default=10000, ge=1)
    # Compact tombstones out of the FAISS index once they exceed this fraction of it.
    compact_ratio: float = Field(default=0.2, gt=0.0, le=1.0)
    # FAISS OpenMP threads; 0 = number of usable cores.
    threads: int = Field(default=0, ge=0)
    training_sample: int = Field(default=200_000, ge=1000)


class FaissStoreSettings(IndexSettings, FaissSettings):
    """Everything the FAISS store reads: the shared search knobs (`index.*`) and its own
    (`store.faiss.*`), in one object so its modules take one parameter."""

    @classmethod
    def of(cls, index: IndexSettings, faiss: FaissSettings) -> FaissStoreSettings:
        return cls(**index.model_dump(), **faiss.model_dump())


MilvusIndexType = Literal["HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "FLAT"]


class MilvusSettings(BaseModel):
    """SIMSEARCH_STORE__MILVUS__*: how to reach the Milvus server and index the collection."""

    uri: str = "http://127.0.0.1:19530"
    # "user:password" or an API key; empty when the server has authentication off.
    token: SecretStr = SecretStr("")
    database: str = "default"
    collection: str = Field(default="simsearch", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    # Default HNSW: measured on Milvus 2.3.5 at 100k x 512 (2 cores) it reached recall@10 1.0
    # at 2.8 ms p50 after a 97 s build; IVF_PQ m64 built in 820 s and alone reached 0.44
    # (this store re-scores IVF_PQ candidates exactly, as the FAISS path does).
    index_type: MilvusIndexType = "HNSW"
    hnsw_m: int = Field(default=16, ge=4, le=64)
    hnsw_ef_construction: int = Field(default=200, ge=8, le=1024)
    # HNSW search breadth; raised to top_k (x candidate_factor for IVF_PQ) when smaller.
    ef: int = Field(default=64, ge=1, le=32768)
    # IVF_* lists.
    nlist: int = Field(default=1024, ge=1, le=65536)
    # IVF_PQ sub-quantizers; 0 = dim / 8 (PQ64 for 512-d).
    pq_m: int = Field(default=0, ge=0)
    # Strong: a search right after an acknowledged add or delete sees it (the guarantee
    # POST /index gives with FAISS). Bounded/Session/Eventually trade that for latency.
    consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = "Strong"
    # Where Strong pays Milvus's time-tick wait (about two ticks, `proxy.timeTickInterval`):
    # "write" acknowledges an add or delete only once reads see it, and reads then do not
    # wait (Bounded); "read" makes every read wait instead (Milvus Strong). By-id search
    # through the API on Milvus 2.3.5 at 50 ms ticks: p50 21.5 ms ("write") vs 189 ms
    # ("read"); README "Scale-out on Milvus". "write" needs one query replica per shard
    # (what this store loads).
    strong_wait: Literal["write", "read"] = "write"
    # Per-call deadline; an unreachable server answers 503 + Retry-After after this long.
    timeout_s: float = Field(default=10.0, gt=0)


class StoreSettings(BaseModel):
    """Which `VectorStore` serves (SIMSEARCH_STORE__BACKEND) and each backend's settings.

    "faiss" (default): the embedded store in <data_dir>/store, one process owns it
    (`store.faiss.*`). "milvus": a Milvus server (standalone or cluster); API processes are
    stateless replicas (`store.milvus.*`).
    """

    backend: Literal["faiss", "milvus"] = "faiss"
    faiss: FaissSettings = FaissSettings()
    milvus: MilvusSettings = MilvusSettings()

    @model_validator(mode="before")
    @classmethod
    def _flat_milvus_names(cls, data: Any) -> Any:
        """The flat names of the previous release (`store.milvus_uri`, env
        SIMSEARCH_STORE__MILVUS_URI) still work, with a warning naming the new one."""
        if not isinstance(data, dict):
            return data
        fields = MilvusSettings.model_fields
        moved = {
            key: key.removeprefix("milvus_")
            for key in data
            if key.startswith("milvus_") and key.removeprefix("milvus_") in fields
        }
        if not moved:
            return data
        data = dict(data)
        group = _as_dict(data.get("milvus"))
        for old, new in moved.items():
            value = data.pop(old)
            _warn_renamed(f"STORE__{old}", f"STORE__MILVUS__{new}", used=new not in group)
            group.setdefault(new, value)
        data["milvus"] = group
        return data


# Env names of the previous release that moved (SIMSEARCH_INDEX__<old> -> store.faiss.<new>).
_FAISS_KNOBS_FROM_INDEX = {
    "ivf_min_vectors": "ivf_min_vectors",
    "retrain_growth": "retrain_growth",
    "snapshot_every": "snapshot_every",
    "compact_ratio": "compact_ratio",
    "faiss_threads": "threads",
    "training_sample": "training_sample",
}


def _as_dict(group: Any) -> dict[str, Any]:
    if isinstance(group, BaseModel):
        # Only the fields someone set: defaults must not shadow a renamed value.
        return group.model_dump(exclude_unset=True)
    return dict(group) if isinstance(group, dict) else {}


def _warn_renamed(old: str, new: str, used: bool) -> None:
    old_env, new_env = f"SIMSEARCH_{old.upper()}", f"SIMSEARCH_{new.upper()}"
    if used:
        logger.warning(
            "%s is deprecated and will be removed in the next release: use %s", old_env, new_env
        )
    else:
        logger.warning(
            "%s is deprecated and ignored because %s is also set; remove it", old_env, new_env
        )


class LimitSettings(BaseModel):
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # Decoded pixels (w x h) allowed before we refuse: decompression-bomb guard.
    max_pixels: int = Field(default=40_000_000, ge=1)
    max_files_per_request: int = Field(default=32, ge=1)
    max_top_k: int = Field(default=1000, ge=1)
    max_metadata_bytes: int = Field(default=16 * 1024, ge=2)
    max_id_length: int = Field(default=512, ge=1)
    max_vectors_per_request: int = Field(default=10_000, ge=1)
    # Requests admitted at once (probes and /metrics excluded); beyond it: 503 + Retry-After.
    max_in_flight: int = Field(default=128, ge=1)
    # Deadline for the work of one request (decode + queue + inference + search): past it the
    # client gets 503 with Retry-After instead of waiting on an overloaded server.
    request_timeout_s: float = Field(default=60.0, gt=0)


class RerankSettings(BaseModel):
    # SuperGlobal (ICCV 2023) re-ranking over the exact top-M: K neighbours, beta weight.
    top_m: int = Field(default=100, ge=2)
    max_top_m: int = Field(default=400, ge=2)
    # K = 1 rather than the official 9: on copies with the default model, K = 9 lowered
    # recall@1 by up to 14 points, K = 1 by at most 1.3 (docs/EVALUATION.md, section 8).
    k: int = Field(default=1, ge=1)
    beta: float = Field(default=0.15, ge=0.0)
    # SuperGlobal is skipped (the response says so in `rerank_skipped`) while the store holds
    # fewer items than max(top_m, this): there the top-M is the whole collection and the
    # re-ranking lowered recall@1 of copies (docs/EVALUATION.md has the measurement).
    min_store_items: int = Field(default=100, ge=0)
    # numpy's BLAS threads (the [M, M] product); 1 keeps them off onnxruntime's cores
    # (app/threads.py has the measurement). 0 leaves the library's default.
    blas_threads: int = Field(default=1, ge=0)


class DuplicateSettings(BaseModel):
    # Neighbours checked per stored item (its by-id top-k) when grouping copies for
    # GET /duplicates and reporting them for POST /index; larger sets of copies still join one
    # group through chains of matches.
    neighbours: int = Field(default=10, ge=1, le=100)
    # By-id searches in flight at once while scanning the store (overlaps store round trips).
    concurrency: int = Field(default=4, ge=1, le=64)
    # How long GET /duplicates waits for a scan of the store before answering 503 with
    # Retry-After (the scan goes on in the background; later calls pick up its result).
    wait_s: float = Field(default=20.0, gt=0)
    # Rescan the whole store after this many seconds (0 = never): adds and deletes through
    # this process update the groups as they happen, writes by other processes (replicas on
    # one Milvus collection, bulk loaders) are caught by a count check or by this rescan.
    max_age_s: float = Field(default=3600.0, ge=0)


class ThumbnailSettings(BaseModel):
    # Keep a small JPEG of every indexed image (GET /items/{id}/thumbnail, the search page).
    enabled: bool = True
    # Longest side in pixels; the aspect ratio is kept and images are never enlarged. 384, not
    # 256: the copy verdict verifies against thumbnails, and at 384 px it found more copies in
    # its study (app/search/copy_verdict.json; 256 px: 93.1 % vs 94.0 % held out).
    long_side: int = Field(default=384, ge=16, le=2048)
    # JPEG quality (libjpeg scale): 80 keeps a 384 px thumbnail around 20-40 KB.
    quality: int = Field(default=80, ge=30, le=95)


class VerdictSettings(BaseModel):
    # Stored items' local features (from their thumbnails) kept in memory for the copy verdict
    # (app/search/verdict.py); about 60-300 KB per item, so 64 MB holds a few hundred hot items.
    cache_mb: int = Field(default=64, ge=0)


class ApiKey(BaseModel):
    """One accepted API key. "read": search, items GET, /health, /metrics; "write": also
    index and delete."""

    # Errors about a key must never echo it into a log.
    model_config = ConfigDict(hide_input_in_errors=True)

    key: SecretStr
    scope: Scope
    # Shown in logs instead of the key.
    name: str | None = None

    @field_validator("key")
    @classmethod
    def _long_enough(cls, key: SecretStr) -> SecretStr:
        if len(key.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"API keys must be at least {MIN_API_KEY_LENGTH} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return key

    def label(self, position: int) -> str:
        return self.name or f"key #{position + 1} ({self.scope})"


def _split_list(value: Any) -> Any:
    """Env form of a list: a JSON array, or comma-separated entries ("" = empty list)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_api_key(entry: Any) -> Any:
    """"<key>:<scope>" -> {"key", "scope"}; dicts (JSON form) pass through."""
    if not isinstance(entry, str):
        return entry
    key, sep, scope = entry.rpartition(":")
    if not sep or scope not in ("read", "write"):
        raise ValueError(
            "each API key must be written '<key>:read' or '<key>:write' (comma-separated), "
            "or as a JSON array of {\"key\", \"scope\", \"name\"} objects"
        )
    return {"key": key, "scope": scope}


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; a host name or 0.0.0.0/:: is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIMSEARCH_",
        env_nested_delimiter="__",
        extra="ignore",
        # API keys are settings: a validation error must not print them.
        hide_input_in_errors=True,
    )

    # Holds model/ (model.onnx + model_meta.json) and store/.
    data_dir: Path = Path("index_data")
    # Where model.onnx + model_meta.json live; default <data_dir>/model.
    model_dir: Path | None = None
    # Fail at startup unless a GPU execution provider is active.
    require_gpu: bool = False
    log_level: str = "INFO"
    # Where `python -m app` binds. A non-loopback host needs api_keys, or the explicit opt-out
    # allow_unauthenticated (the launcher refuses otherwise).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # SIMSEARCH_API_KEYS="key1:read,key2:write" (or a JSON array of {"key","scope","name"}).
    # Empty: no authentication, and only loopback clients are served.
    api_keys: Annotated[list[ApiKey], NoDecode] = Field(default_factory=list)
    # Serve clients beyond loopback without API keys (only behind something that authenticates).
    allow_unauthenticated: bool = False
    # Browser origins allowed by CORS ("https://a.example,https://b.example"); empty = CORS off.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # After SIGTERM: how long in-flight requests may take before they are cancelled.
    shutdown_timeout_s: int = Field(default=30, ge=1)
    # uvicorn's one line per request.
    access_log: bool = True
    inference: InferenceSettings = InferenceSettings()
    index: IndexSettings = IndexSettings()
    store: StoreSettings = StoreSettings()
    limits: LimitSettings = LimitSettings()
    rerank: RerankSettings = RerankSettings()
    thumbnails: ThumbnailSettings = ThumbnailSettings()
    memory: MemorySettings = MemorySettings()
    verdict: VerdictSettings = VerdictSettings()
    duplicates: DuplicateSettings = DuplicateSettings()

    @model_validator(mode="before")
    @classmethod
    def _faiss_knobs_from_index(cls, data: Any) -> Any:
        """The FAISS-only knobs of the previous release's `index.*` group (env
        SIMSEARCH_INDEX__SNAPSHOT_EVERY, ...) still work, with a warning naming their new
        home under `store.faiss.*`."""
        if not isinstance(data, dict) or not isinstance(data.get("index"), dict):
            return data
        index = dict(data["index"])
        old_keys = [key for key in index if key in _FAISS_KNOBS_FROM_INDEX]
        if not old_keys:
            return data
        data = dict(data)
        store = _as_dict(data.get("store"))
        faiss = _as_dict(store.get("faiss"))
        for old in old_keys:
            new = _FAISS_KNOBS_FROM_INDEX[old]
            value = index.pop(old)
            _warn_renamed(f"INDEX__{old}", f"STORE__FAISS__{new}", used=new not in faiss)
            faiss.setdefault(new, value)
        store["faiss"] = faiss
        data["index"], data["store"] = index, store
        return data

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys_from_env(cls, value: Any) -> Any:
        entries = _split_list(value)
        if isinstance(entries, list):
            return [_parse_api_key(e) for e in entries]
        return entries

    @field_validator("api_keys")
    @classmethod
    def _unique_keys(cls, keys: list[ApiKey]) -> list[ApiKey]:
        secrets = [k.key.get_secret_value() for k in keys]
        if len(set(secrets)) != len(secrets):
            raise ValueError("the same API key is listed twice")
        return keys

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_from_env(cls, value: Any) -> Any:
        return _split_list(value)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def resolved_model_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "model"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    def faiss_store_settings(self) -> FaissStoreSettings:
        return FaissStoreSettings.of(self.index, self.store.faiss)

    def resolved_intra_op_threads(self) -> int:
        return self.inference.intra_op_threads or usable_cores()

    def resolved_decode_threads(self) -> int:
        return self.inference.decode_threads or max(2, usable_cores())


def setting_env_names(model: type[BaseModel] = Settings, prefix: str = "SIMSEARCH_") -> set[str]:
    """Every environment variable the settings model reads, e.g. SIMSEARCH_STORE__MILVUS__URI
    (the deprecated names it still accepts are not listed)."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= setting_env_names(kind, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
