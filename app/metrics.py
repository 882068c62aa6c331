"""Prometheus metrics. One registry per app instance so several apps (tests) can coexist."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# Latency buckets from 0.5 ms to 30 s: covers ANN (sub-ms) up to multi-scale CPU inference.
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "simsearch_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "simsearch_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            "simsearch_inference_batch_size",
            "Tensors per onnxruntime run",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "simsearch_inference_queue_wait_seconds",
            "Time a tensor waited for its batch",
            buckets=_LATENCY,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "simsearch_inference_seconds",
            "onnxruntime session.run time per batch",
            buckets=_LATENCY,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "simsearch_search_stage_seconds",
            "Search pipeline stages (embed, ann_rescore, verify, rerank)",
            ["stage"],
            buckets=_LATENCY,
            registry=r,
        )
        self.indexed = Counter("simsearch_indexed_items_total", "Items added", registry=r)
        self.ntotal = Gauge("simsearch_index_ntotal", "Live items in the store", registry=r)
        self.index_info = Info("simsearch_index", "Index type and generation", registry=r)
        self.model_info = Info("simsearch_model", "Model name, version, providers", registry=r)

    # DynamicBatcher observer hook.
    def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
        self.batch_size.observe(size)
        self.queue_wait_seconds.observe(queue_wait_s)
        self.inference_seconds.observe(run_s)
