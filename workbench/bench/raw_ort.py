"""The raw limit of the embedding benchmarks: onnxruntime alone with the service's session
options, fed the service's own tensors, at batch 1 and batched."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import cpu_seconds, loadavg, summarize_s


class RawOrt:
    """onnxruntime with the service's session options, fed prepared tensors."""

    def __init__(self, model_path: Path, settings: Any) -> None:
        import onnxruntime as ort

        from app.inference.session import choose_providers

        inf = settings.inference
        options = ort.SessionOptions()
        self.threads = settings.resolved_intra_op_threads()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = inf.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if inf.allow_spinning else "0"
        )
        providers = choose_providers(inf.providers, ort.get_available_providers(), inf)
        self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        self.max_batch = inf.max_batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def per_image(self, images: list[list[np.ndarray]]) -> tuple[float, list[float]]:
        """Batch 1, one image's scales back to back: (images/s, per-image seconds)."""
        lat = []
        t0 = time.perf_counter()
        for tensors in images:
            t = time.perf_counter()
            for x in tensors:
                self.run(x[None])
            lat.append(time.perf_counter() - t)
        return len(images) / (time.perf_counter() - t0), lat

    def batched(self, images: list[list[np.ndarray]]) -> float:
        """Same-shaped tensors of all images stacked into batches of <= max_batch: images/s."""
        groups: dict[tuple[int, ...], list[np.ndarray]] = {}
        for tensors in images:
            for x in tensors:
                groups.setdefault(x.shape, []).append(x)
        batches = [
            np.stack(g[i : i + self.max_batch])
            for g in groups.values()
            for i in range(0, len(g), self.max_batch)
        ]
        t0 = time.perf_counter()
        for b in batches:
            self.run(b)
        return len(images) / (time.perf_counter() - t0)


def raw_measure(raw: RawOrt, tensors: list[list[np.ndarray]]) -> dict[str, Any]:
    c0 = cpu_seconds()
    ips1, lat = raw.per_image(tensors)
    cpu = (cpu_seconds() - c0) / len(tensors)
    ipsb = raw.batched(tensors) if raw.max_batch > 1 else ips1
    return {
        "images_per_s_batch1": round(ips1, 3),
        "images_per_s_batched": round(ipsb, 3),
        "images_per_s": round(max(ips1, ipsb), 3),
        "latency": summarize_s(lat),
        "cpu_s_per_image": round(cpu, 4),
        "loadavg": loadavg(),
    }


def against_raw(
    images: int, wall_s: float, server_cpu_s: float, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, float]:
    """One measured block of the service beside the raw limit taken just before and just
    after it (`raw_measure`): throughput and CPU per image, each side, and their ratio."""
    limit = (before["images_per_s"] + after["images_per_s"]) / 2
    return {
        "images_per_s": images / wall_s,
        "raw_images_per_s": limit,
        "ratio": images / wall_s / limit,
        "server_cpu_s_per_image": server_cpu_s / images,
        "raw_cpu_s_per_image": (before["cpu_s_per_image"] + after["cpu_s_per_image"]) / 2,
    }
