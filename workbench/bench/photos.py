#!/usr/bin/env python
"""Real photo sizes at the raw limit: web (1024 px), phone (12 MP) and camera (36 MP) JPEGs.

    python -m workbench.bench.photos --model-dir DIR [--photos ../shared/data/photos]
        [--requests 6] [--files-per-request 8] [--clients 2] [--no-memory]

Prints one JSON object (last stdout line); the suite (`python -m workbench.bench`) runs it as
its `photos` section.

Inputs: `web` = the shared JPEGs as they are; `phone` = the first --phone-count of them fitted
(crop + bicubic upscale) to 4032x3024 with seeded grain and saved at quality 92 (~2 MB, like a
phone's JPEG); `camera` = the same at 7360x4912 (36 MP). They are made in a temp folder at
every run (deterministic: seeded) and deleted after; never commit them.

1. stages: CPU ms per image of every stage of the service's chain on one thread (decode,
   which includes the long-side cap; resize = crop + scales; thumbnail), next to the raw
   model (onnxruntime on the exact tensors, batch 1, wall ms) and, for comparison in the
   same run, the chain before the one-decode path (full decode, numpy LANCZOS cap, cv2-style
   float resize, thumbnail decoded again from the bytes).
   duplicate_check: CPU ms per image of POST /index's duplicate check (a by-id search of each
   new item, with the copy verdict's SIFT geometry), in process over the web photos, for
   distinct uploads and for re-uploads (see `duplicate_check_cost`).
2. http: uvicorn app.main:app, --clients clients each sending POST /index with
   --files-per-request files: images/s against raw onnxruntime measured on the same photos'
   model inputs right before and after each block (the ratio); the server's own per-stage
   timings (decode, resize, thumbnail, inference, store) summed per request.
3. memory: a fresh server per variant (the service's defaults; glibc's malloc defaults; the
   official chain): idle RSS after warm-up, the peak while 12 searches of 36 MP photos run 3 at
   a time (VmHWM, reset before through /proc/PID/clear_refs, and sampled every 10 ms), and RSS
   still held 5 s after the last answer.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.common import cpu_seconds, loadavg, log, rss, summarize_s
from workbench.bench.inputs import default_photos_dir, load_photos
from workbench.bench.raw_ort import RawOrt, raw_measure
from workbench.servers.service import Server, server_env, settings_for

PHONE_SIZE = (4032, 3024)
CAMERA_SIZE = (7360, 4912)
MALLOC_DEFAULTS = {
    "memory.malloc_arena_max": "0",
    "memory.mmap_threshold_kib": "0",
    "memory.trim_threshold_kib": "0",
    "memory.trim_after_pixels": "0",
}


# ---------------------------------------------------------------------------- inputs
def upscaled_jpeg(data: bytes, size: tuple[int, int], seed: int, quality: int = 92) -> bytes:
    """A photo fitted (centre crop + bicubic) to `size` with seeded luma grain: sensor-like
    noise keeps the file as large as a real photo of that size (~2 MB at 12 MP)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        big = ImageOps.fit(img.convert("RGB"), size, Image.Resampling.BICUBIC)
    pixels = np.asarray(big, dtype=np.uint8)
    del big
    rng = np.random.default_rng(seed)
    grain = rng.integers(0, 9, size=(size[1], size[0], 1), dtype=np.uint8)  # [H,W,1] 0..8
    noisy = np.clip(pixels.astype(np.int16) + grain - 4, 0, 255).astype(np.uint8)
    del pixels
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, "JPEG", quality=quality)
    return out.getvalue()


def make_sets(
    photos: list[tuple[str, bytes]], phone_count: int, camera_count: int
) -> dict[str, list[tuple[str, bytes]]]:
    t0 = time.perf_counter()
    phone = [
        (f"phone-{n}", upscaled_jpeg(b, PHONE_SIZE, i))
        for i, (n, b) in enumerate(photos[:phone_count])
    ]
    camera = [
        (f"camera-{n}", upscaled_jpeg(b, CAMERA_SIZE, 100 + i))
        for i, (n, b) in enumerate(photos[:camera_count])
    ]
    log(
        f"photos: made {len(phone)} phone and {len(camera)} camera JPEGs in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return {"web": photos, "phone": phone, "camera": camera}


def describe(blobs: list[tuple[str, bytes]]) -> dict[str, Any]:
    from PIL import Image

    sizes = {Image.open(io.BytesIO(b)).size for _, b in blobs}
    return {
        "count": len(blobs),
        "sizes": sorted(f"{w}x{h}" for w, h in sizes),
        "mean_bytes": int(np.mean([len(b) for _, b in blobs])),
    }


# ---------------------------------------------------------------------------- stages
def chain_tensors(blobs: list[bytes], settings: Any, meta: Any) -> list[list[np.ndarray]]:
    """The exact model inputs the service computes for these files (its pixel chain)."""
    from app.inference.working import decode_working_image, model_inputs

    prep, chain = meta.preprocessing, resolved_chain(settings, meta)
    return [
        model_inputs(
            decode_working_image(
                b, prep, settings.limits.max_pixels, chain, settings.inference.jpeg_draft
            ),
            prep,
        )
        for b in blobs
    ]


def resolved_chain(settings: Any, meta: Any) -> Any:
    """ "official" or "fast": the setting, or the artifact's own when "auto"."""
    chain = settings.inference.pixel_chain
    return meta.preprocessing.pixel_chain if chain == "auto" else chain


def stage_costs(
    blobs: list[bytes], settings: Any, meta: Any, raw: RawOrt, reps: int = 2
) -> dict[str, Any]:
    """CPU ms per image of each stage on this thread (best of `reps` passes), the raw model's
    wall ms on the same inputs, and the previous chain's stages for comparison."""
    from app.inference.preprocess import cap_long_side, decode_image, preprocess_multiscale
    from app.inference.working import decode_working_image, model_inputs
    from app.thumbnails import make_thumbnail, thumbnail_jpeg

    prep, chain = meta.preprocessing, resolved_chain(settings, meta)
    limit, thumbs = settings.limits.max_pixels, settings.thumbnails

    def now_chain() -> tuple[list[float], list[list[np.ndarray]]]:
        t = [0.0, 0.0, 0.0]
        tensors = []
        for data in blobs:
            c0 = time.process_time()
            img = decode_working_image(data, prep, limit, chain, settings.inference.jpeg_draft)
            c1 = time.process_time()
            tensors.append(model_inputs(img, prep))
            c2 = time.process_time()
            thumbnail_jpeg(img.pixels, thumbs)
            c3 = time.process_time()
            for i, v in enumerate((c1 - c0, c2 - c1, c3 - c2)):
                t[i] += v * 1e3 / len(blobs)
        return t, tensors

    def before_chain() -> list[float]:
        t = [0.0, 0.0, 0.0]
        for data in blobs:
            c0 = time.process_time()
            img = decode_image(data, limit)
            c1 = time.process_time()
            preprocess_multiscale(cap_long_side(img, prep.max_side), prep)
            c2 = time.process_time()
            make_thumbnail(data, thumbs, limit)
            c3 = time.process_time()
            del img
            for i, v in enumerate((c1 - c0, c2 - c1, c3 - c2)):
                t[i] += v * 1e3 / len(blobs)
        return t

    runs = [now_chain() for _ in range(reps)]
    best, tensors = min(runs, key=lambda r: sum(r[0]))
    before = min((before_chain() for _ in range(reps)), key=sum)
    _, lat = raw.per_image(tensors)
    infer_ms = float(np.median(lat)) * 1e3
    names = ("decode_ms", "resize_ms", "thumbnail_ms")
    out: dict[str, Any] = {
        "chain": chain,
        "cpu_ms_per_image": {
            **{k: round(v, 2) for k, v in zip(names, best, strict=True)},
            "total_ms": round(sum(best), 2),
        },
        "raw_inference_ms_per_image": round(infer_ms, 2),
        "before_cpu_ms_per_image": {
            **{k: round(v, 2) for k, v in zip(names, before, strict=True)},
            "total_ms": round(sum(before), 2),
        },
        "loadavg": loadavg(),
    }
    return out


def duplicate_check_cost(
    blobs: list[bytes], settings: Any, work: Path, uploads: str
) -> dict[str, Any]:
    """CPU ms per image of POST /index's duplicate check (a by-id search of the new item: the
    store's neighbour search, then SIFT geometry for hits in the verdict's cosine band), on
    this process's threads, for a FAISS store built the way the service builds it.

    uploads "distinct": each photo is stored, then checked, one after the other (an archive
    of different photos). "repeated": the set is stored once, then every photo is uploaded
    again under a new id and checked (what the HTTP rows do from their second pass on: each
    upload has exact copies in the store, decided by the cosine alone, and the other
    neighbours in the band still need geometry).
    """
    from app.index.faiss_store import FaissStore
    from app.metrics import Metrics
    from app.runtime import Inference
    from app.search.service import SearchService

    inference = Inference.start(settings, Metrics())
    try:
        service = SearchService(inference.embedder, None, settings)  # type: ignore[arg-type]
        vectors, thumbs = asyncio.run(service.embed_for_index(blobs))
    finally:
        inference.close()
    folder = work / f"dupcheck-{uploads}"
    store = FaissStore.open(folder, int(vectors.shape[1]), settings.faiss_store_settings())
    service = SearchService(None, store, settings)  # type: ignore[arg-type]
    neighbours = settings.duplicates.neighbours
    n = len(blobs)
    if uploads == "repeated":
        store.add([f"stored-{i}" for i in range(n)], vectors, [None] * n, thumbs)

    # SIFT passes counted (a deterministic view of the CPU figure, which load inflates).
    import app.search.verdict as verdict_module
    import app.search.verify as verify_module

    passes = [0]
    real_extract = verify_module.extract

    def counted_extract(grey: np.ndarray) -> Any:
        passes[0] += 1
        return real_extract(grey)

    patched = [m for m in (verify_module, verdict_module) if hasattr(m, "extract")]
    for module in patched:
        module.extract = counted_extract  # type: ignore[attr-defined]

    async def check_all() -> tuple[float, int, int]:
        cpu = 0.0
        in_band = copies = 0
        for i in range(n):
            item_id = f"upload-{i}"
            store.add([item_id], vectors[i : i + 1], [None], [thumbs[i] if thumbs else None])
            c0 = time.process_time()
            out = await service.search_by_id(item_id, top_k=neighbours, rerank="none")
            cpu += time.process_time() - c0
            in_band += sum(service.verdict.rule.needs_geometry(h.score) for h in out.hits)
            copies += sum(h.match for h in out.hits)
        return cpu, in_band, copies

    try:
        cpu, in_band, copies = asyncio.run(check_all())
    finally:
        for module in patched:
            module.extract = real_extract  # type: ignore[attr-defined]
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "uploads": uploads,
        "images": n,
        "cpu_ms_per_image": round(cpu / n * 1e3, 2),
        "sift_passes_per_image": round(passes[0] / n, 2),
        "hits_in_geometry_band_per_image": round(in_band / n, 2),
        "copies_reported_per_image": round(copies / n, 2),
    }


def resize_options(data: bytes, prep: Any, reps: int = 10) -> dict[str, float]:
    """CPU ms of the candidate resizers on one phone photo's 1/4-scale draft decode (uint8
    RGB -> the capped size): what chose Pillow's antialiased bicubic for the fast chain."""
    from PIL import Image

    from app.inference.preprocess import capped_size, decode_pil, normalise_planar, resize_bicubic

    img, _ = decode_pil(data, 10**9, draft_max_side=prep.max_side)
    arr = np.asarray(img)
    size = capped_size(img.width, img.height, prep.max_side)

    def cpu_ms(fn: Any) -> float:
        fn()
        c0 = time.process_time()
        for _ in range(reps):
            fn()
        return round((time.process_time() - c0) / reps * 1e3, 2)

    out = {
        f"pillow_{m.name.lower()}": cpu_ms(lambda m=m: img.resize(size, m, reducing_gap=3.0))
        for m in (
            Image.Resampling.BICUBIC,
            Image.Resampling.BILINEAR,
            Image.Resampling.LANCZOS,
            Image.Resampling.BOX,
        )
    }
    out["numpy_cv2_bicubic_float_planes"] = cpu_ms(
        lambda: resize_bicubic(normalise_planar(arr, prep).transpose(1, 2, 0), *size)
    )
    try:
        import cv2

        cv2.setNumThreads(1)
        out["opencv_inter_area"] = cpu_ms(
            lambda: cv2.resize(arr, size, interpolation=cv2.INTER_AREA)
        )
        out["opencv_inter_cubic_no_antialiasing"] = cpu_ms(
            lambda: cv2.resize(arr, size, interpolation=cv2.INTER_CUBIC)
        )
    except ImportError:  # not a service dependency
        pass
    return {"from": f"{img.width}x{img.height}", "to": f"{size[0]}x{size[1]}", **out}


def batch_cost(
    raw: RawOrt, tensors: list[np.ndarray], sizes: tuple[int, ...] = (1, 2, 4, 8)
) -> dict[str, float]:
    """onnxruntime CPU ms per image at each batch size (one image = its scales)."""
    out = {}
    for bs in sizes:
        batches = [np.stack([t] * bs) for t in tensors]  # [bs,3,h,w] per scale
        for b in batches:
            raw.run(b)
        c0 = cpu_seconds()
        for _ in range(max(1, 8 // bs)):
            for b in batches:
                raw.run(b)
        out[f"batch_{bs}"] = round((cpu_seconds() - c0) / (bs * max(1, 8 // bs)) * 1e3, 1)
    return out


# ---------------------------------------------------------------------------- http
async def _index_block(
    base: str,
    photos: list[tuple[str, bytes]],
    requests: int,
    files_per_request: int,
    clients: int,
    tag: str,
    check_duplicates: bool = True,
) -> tuple[float, list[float], list[dict]]:
    import httpx

    counter = iter(range(requests))
    lat: list[float] = []
    bodies: list[dict] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=900.0, limits=limits) as client:

        async def worker() -> None:
            for r in counter:
                picks = [
                    photos[(r * files_per_request + k) % len(photos)]
                    for k in range(files_per_request)
                ]
                files = [("files", (n, b, "image/jpeg")) for n, b in picks]
                ids = json.dumps([f"{tag}-{r}-{k}" for k in range(files_per_request)])
                t = time.perf_counter()
                form = {"ids": ids}
                if not check_duplicates:
                    form["check_duplicates"] = "false"
                resp = await client.post("/index", files=files, data=form)
                if resp.status_code != 201:
                    raise RuntimeError(f"/index: {resp.status_code} {resp.text[:300]}")
                lat.append(time.perf_counter() - t)
                bodies.append(resp.json())

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0, lat, bodies


def http_index(
    server: Server,
    name: str,
    photos: list[tuple[str, bytes]],
    tensors: list[list[np.ndarray]],
    raw: RawOrt,
    args: argparse.Namespace,
    check_duplicates: bool = True,
) -> dict[str, Any]:
    """`--repeats` blocks, each between two raw measurements on the same photos' inputs.
    `check_duplicates=False`: the uploads opt out of the per-file duplicate report, as the
    client's folder loader does."""
    n_images = args.requests * args.files_per_request
    blocks: list[dict[str, float]] = []
    stages: dict[str, list[float]] = {}
    before = raw_measure(raw, tensors)
    for b in range(args.repeats):
        c0 = cpu_seconds(server.proc.pid)
        wall, lat, bodies = asyncio.run(
            _index_block(
                server.base,
                photos,
                args.requests,
                args.files_per_request,
                args.clients,
                f"{name}-{b}-{time.monotonic_ns()}",
                check_duplicates,
            )
        )
        cpu = (cpu_seconds(server.proc.pid) - c0) / n_images
        after = raw_measure(raw, tensors)
        limit = (before["images_per_s"] + after["images_per_s"]) / 2
        raw_cpu = (before["cpu_s_per_image"] + after["cpu_s_per_image"]) / 2
        blocks.append(
            {
                "images_per_s": n_images / wall,
                "raw_images_per_s": limit,
                "ratio": n_images / wall / limit,
                "server_cpu_s_per_image": cpu,
                "raw_cpu_s_per_image": raw_cpu,
                "p50_request_s": float(np.median(lat)),
            }
        )
        for body in bodies:
            for key, ms in body.get("timings_ms", {}).items():
                stages.setdefault(key, []).append(ms / args.files_per_request)
        before = after

    def med(key: str) -> float:
        return float(np.median([blk[key] for blk in blocks]))

    return {
        "set": name,
        "endpoint": "POST /index",
        "check_duplicates": check_duplicates,
        "clients": args.clients,
        "files_per_request": args.files_per_request,
        "images": n_images * args.repeats,
        "images_per_s": round(med("images_per_s"), 3),
        "raw_images_per_s": round(med("raw_images_per_s"), 3),
        "ratio_to_raw": round(med("ratio"), 3),
        "ratio_per_block": [round(blk["ratio"], 3) for blk in blocks],
        "server_cpu_s_per_image": round(med("server_cpu_s_per_image"), 4),
        "raw_cpu_s_per_image": round(med("raw_cpu_s_per_image"), 4),
        "request_p50_ms": round(med("p50_request_s") * 1e3, 1),
        # The server's timings_ms per image: decode/resize/thumbnail are thread time summed
        # over the request's files, inference includes queueing, store is the durable add.
        "server_ms_per_image": {k: round(float(np.median(v)), 2) for k, v in stages.items()},
        "loadavg": loadavg(),
    }


# ---------------------------------------------------------------------------- memory
class PeakSampler:
    """RSS of a process every `period` seconds in a thread; `peak` in MiB."""

    def __init__(self, pid: int, period: float = 0.01) -> None:
        self.pid, self.period, self.peak = pid, period, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid)["rss_mib"])
            time.sleep(self.period)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


async def _search_block(
    base: str, photos: list[tuple[str, bytes]], n: int, concurrency: int
) -> list[float]:
    import httpx

    counter = iter(range(n))
    lat: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=900.0) as client:

        async def worker() -> None:
            for i in counter:
                name, data = photos[i % len(photos)]
                t = time.perf_counter()
                r = await client.post(
                    "/search", files={"file": (name, data, "image/jpeg")}, data={"top_k": "10"}
                )
                if r.status_code != 200:
                    raise RuntimeError(f"/search: {r.status_code} {r.text[:300]}")
                lat.append(time.perf_counter() - t)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat


def memory_variant(
    label: str,
    sets: dict[str, str],
    model_dir: Path,
    work: Path,
    web: list[tuple[str, bytes]],
    camera: list[tuple[str, bytes]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    data_dir = work / f"mem-{len(list(work.iterdir()))}"
    server = Server(server_env(data_dir, model_dir, sets), work / f"{data_dir.name}.log")
    try:
        server.wait_ready(args.ready_timeout)
        asyncio.run(
            _search_block(
                server.base,
                web[:4],
                4,
                1,
            )
        )  # warm: shapes, arenas
        time.sleep(1.0)
        idle = server.rss()["rss_mib"]
        reset = _reset_peak(server.proc.pid)
        with PeakSampler(server.proc.pid) as sampler:
            lat = asyncio.run(
                _search_block(server.base, camera, args.memory_searches, args.memory_concurrency)
            )
        hwm = server.rss()["peak_mib"] if reset else float("nan")
        time.sleep(5.0)
        held = server.rss()["rss_mib"]
    finally:
        server.stop()
    peak = max(sampler.peak, hwm) if reset else sampler.peak
    return {
        "variant": label,
        "overrides": sets,
        "idle_rss_mib": idle,
        "peak_over_idle_mib": round(peak - idle, 1),
        "held_5s_over_idle_mib": round(held - idle, 1),
        "peak_source": "VmHWM after clear_refs + 10 ms samples" if reset else "samples",
        "searches": args.memory_searches,
        "concurrency": args.memory_concurrency,
        "search_latency": summarize_s(lat),
        "loadavg": loadavg(),
    }


# ---------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    from app.artifacts import load_model_meta

    meta = load_model_meta(args.model_dir)
    photos = load_photos(args.photos or default_photos_dir(), args.photos_limit)
    sets = make_sets(photos, args.phone_count, args.camera_count)
    work = Path(tempfile.mkdtemp(prefix="bench-photos-"))
    try:
        settings = settings_for(work / "inproc", args.model_dir, {})
        raw = RawOrt(args.model_dir / meta.onnx_file, settings)
        result: dict[str, Any] = {
            "model": {
                "name": meta.name,
                "max_side": meta.preprocessing.max_side,
                "scales": list(meta.preprocessing.scales),
                "pixel_chain": resolved_chain(settings, meta),
            },
            "inputs": {k: describe(v) for k, v in sets.items()},
            "threads": {
                "intra_op": settings.resolved_intra_op_threads(),
                "decode": settings.resolved_decode_threads(),
            },
        }
        tensors = {k: chain_tensors([b for _, b in v], settings, meta) for k, v in sets.items()}
        for t in tensors.values():
            raw.per_image(t[:4])  # first runs per shape grow the arenas: not measured
        result["resize_options_cpu_ms"] = resize_options(sets["phone"][0][1], meta.preprocessing)
        result["onnxruntime_cpu_ms_per_image_by_batch"] = batch_cost(raw, tensors["phone"][0])
        log(
            f"photos: resizers {result['resize_options_cpu_ms']}; batch cost "
            f"{result['onnxruntime_cpu_ms_per_image_by_batch']}"
        )
        result["stages"] = {}
        for name, blobs in sets.items():
            result["stages"][name] = stage_costs([b for _, b in blobs], settings, meta, raw)
            log(
                f"photos: stages {name}: {result['stages'][name]['cpu_ms_per_image']} "
                f"(raw inference {result['stages'][name]['raw_inference_ms_per_image']} ms)"
            )
        web_blobs = [b for _, b in sets["web"]]
        result["duplicate_check"] = [
            duplicate_check_cost(web_blobs, settings, work, uploads)
            for uploads in ("distinct", "repeated")
        ]
        log(f"photos: duplicate check {result['duplicate_check']}")
        if args.http:
            server = Server(server_env(work / "server", args.model_dir, {}), work / "server.log")
            try:
                server.wait_ready(args.ready_timeout)
                asyncio.run(
                    _index_block(server.base, sets["web"], 2, args.files_per_request, 1, "warm")
                )
                rows = []
                checks = {"on": [True], "off": [False], "both": [True, False]}
                for name in ("web", "phone"):
                    for check in checks[args.duplicate_check]:
                        rows.append(
                            http_index(server, name, sets[name], tensors[name], raw, args, check)
                        )
                        log(
                            f"photos: http {name} (duplicate check {check}): "
                            f"{rows[-1]['images_per_s']} img/s, {rows[-1]['ratio_to_raw']} x raw "
                            f"{rows[-1]['ratio_per_block']}"
                        )
                result["http"] = rows
            finally:
                server.stop()
        if args.memory:
            variants = [
                ("service defaults", {}),
                ("glibc malloc defaults", MALLOC_DEFAULTS),
                ("official chain", {"inference.pixel_chain": "official"}),
                (
                    "official chain, glibc malloc defaults",
                    {"inference.pixel_chain": "official", **MALLOC_DEFAULTS},
                ),
            ]
            result["memory_36mp"] = []
            for label, overrides in variants:
                row = memory_variant(
                    label, overrides, args.model_dir, work, sets["web"], sets["camera"], args
                )
                result["memory_36mp"].append(row)
                log(
                    f"photos: memory {label}: peak +{row['peak_over_idle_mib']} MiB, held "
                    f"+{row['held_5s_over_idle_mib']} MiB"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--photos", type=Path, help="folder of JPEGs (default ../shared/data/photos)")
    p.add_argument("--photos-limit", type=int, default=0, help="0 = all")
    p.add_argument("--phone-count", type=int, default=8)
    p.add_argument("--camera-count", type=int, default=4)
    p.add_argument("--requests", type=int, default=6, help="POST /index requests per block")
    p.add_argument("--files-per-request", type=int, default=8)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="blocks per HTTP row")
    p.add_argument("--no-http", dest="http", action="store_false")
    p.add_argument(
        "--duplicate-check",
        choices=("on", "off", "both"),
        default="both",
        help="HTTP rows with POST /index's per-file duplicate report, without it "
        "(check_duplicates=false), or both",
    )
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--memory-searches", type=int, default=12)
    p.add_argument("--memory-concurrency", type=int, default=3)
    p.add_argument("--ready-timeout", type=float, default=300.0)
    args = p.parse_args(argv)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
