"""Recording the evidence: two stores (half the photos each, the same distractor items), every
query searched plain and SuperGlobal-re-ranked in each, the cosine and the geometric inliers of
every hit kept once, so that `rule_fit` can score any rule without searching again."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.config import RerankSettings, Settings, ThumbnailSettings
from app.index.store import Hit
from app.metrics import Metrics
from app.runtime import Runtime
from app.search.service import SearchService
from app.search.verdict import CopyVerdict, VerdictRule
from workbench.evaluation.copy_study.dataset import MIN_STORE, Query, StudyData
from workbench.evaluation.copy_study.progress import log
from workbench.evaluation.copy_study.rule_fit import FLOORS, Evidence

TOP_K = 10
RECORD = 12  # hits recorded per query, cosine order (the verdict never verifies beyond)
MODES = ("plain", "superglobal")


@dataclass
class Row:
    """One query searched in one store."""

    query: Query
    config: str  # the store: "A" or "B"
    positive: bool  # the query's source picture is in this store
    hits: list[Hit]  # plain and re-ranked hits together, best cosine first
    inliers: dict[str, int | None]  # hit id -> geometric inliers (None: below every floor)
    returned: dict[str, list[str]]  # mode -> the ids that mode returns in its top 10


def split_stores(stems: list[str]) -> dict[str, set[str]]:
    """Alternating by name, so look-alike pairs (the three frost textures) are on both sides."""
    return {"A": set(stems[0::2]), "B": set(stems[1::2])}


def store_settings(data_dir: Path, model_dir: Path, thumb_side: int, smoke: bool) -> Settings:
    return Settings(
        data_dir=data_dir,
        model_dir=model_dir,
        thumbnails=ThumbnailSettings(long_side=thumb_side),
        rerank=RerankSettings(min_store_items=10 if smoke else 100, top_m=20 if smoke else 100),
    )


def fill_store(svc: SearchService, data: StudyData, stored: set[str]) -> None:
    """The distractor items, then the stored photos (with their thumbnails)."""
    ids = list(data.item_ids)
    vecs = [data.item_vecs]
    thumbs = list(data.item_thumbs or [])
    for k, stem in enumerate(data.photo_stems):
        if stem in stored:
            ids.append(f"photo:{stem}")
            vecs.append(data.photo_vecs[k : k + 1])
            thumbs.append((data.photo_thumbs or [None] * len(data.photo_stems))[k])
    svc.index_vectors_sync(ids, np.concatenate(vecs), [None] * len(ids), thumbs)


def record_store(
    svc: SearchService, queries: list[Query], stored: set[str], config: str, side: int
) -> list[Row]:
    """Every query but the stored originals, searched in `svc`, with the inliers of each hit
    at or above the lowest floor tried."""
    # Inliers of every hit, the mirrored query always tried (min_inliers out of reach), so the
    # larger of the two counts is kept, as the served verdict would see it.
    verdict = CopyVerdict(svc.store, VerdictRule(2.0, -1.0, 1 << 30, 10_000, side), 256 << 20)
    rows = []
    for q in queries:
        if q.source_id is not None and q.edit == "original" and q.group in stored:
            continue  # the stored file itself: trivially found
        assert q.vector is not None and q.image is not None
        plain = svc.search_vector_sync(q.vector, top_k=RECORD)
        sg = svc.search_vector_sync(q.vector, top_k=TOP_K, rerank="superglobal")
        assert sg.rerank == "superglobal", sg.rerank_skipped
        hits = sorted({h.id: h for h in plain.hits + sg.hits}.values(), key=lambda h: -h.score)
        rows.append(
            Row(
                query=q,
                config=config,
                positive=q.source_id is not None and q.group in stored,
                hits=hits,
                inliers={
                    h.id: verdict.inliers(q.image, h) if h.score >= FLOORS[0] else None
                    for h in hits
                },
                returned={
                    "plain": [h.id for h in plain.hits[:TOP_K]],
                    "superglobal": [h.id for h in sg.hits],
                },
            )
        )
    return rows


def record_evidence(
    data: StudyData,
    workdir: Path,
    model_dir: Path,
    thumb_side: int,
    side: int,
    smoke: bool,
    started: float,
) -> tuple[list[Row], dict[str, int], dict[str, Runtime]]:
    """(rows, store sizes, the open runtime of each store: the served pass searches them).
    `started`: the study's perf_counter at its start, for the progress lines."""
    rows: list[Row] = []
    sizes: dict[str, int] = {}
    runtimes: dict[str, Runtime] = {}
    for config, stored in split_stores(data.photo_stems).items():
        settings = store_settings(workdir / config, model_dir, thumb_side, smoke)
        runtime = Runtime.start(settings, Metrics())
        runtimes[config] = runtime
        fill_store(runtime.service, data, stored)
        sizes[config] = len(runtime.service.store)
        assert smoke or sizes[config] >= MIN_STORE, sizes[config]
        rows += record_store(runtime.service, data.queries, stored, config, side)
        log(
            f"config {config}: {sizes[config]} items, evidence recorded "
            f"({time.perf_counter() - started:.0f} s)"
        )
    return rows, sizes, runtimes


def build_evidence(rows: list[Row]) -> Evidence:
    """The rows as arrays [E, R] (R = the most hits of any row; shorter rows padded)."""
    width = max(len(r.hits) for r in rows)
    e = len(rows)
    cos = np.full((e, width), -2.0)
    inl = np.full((e, width), -1, dtype=np.int64)
    src = np.zeros((e, width), bool)
    ret = {m: np.zeros((e, width), bool) for m in MODES}
    for i, r in enumerate(rows):
        for j, h in enumerate(r.hits):
            cos[i, j] = h.score
            n = r.inliers[h.id]
            inl[i, j] = -1 if n is None else n
            src[i, j] = h.id == r.query.source_id
            for m in ret:
                ret[m][i, j] = h.id in r.returned[m]
    return Evidence(
        cos,
        inl,
        src,
        ret,
        np.array([r.positive for r in rows]),
        np.array([bool(r.query.image is not None and r.query.image.too_small) for r in rows]),
        np.array([r.query.edit for r in rows]),
        np.array([r.query.group for r in rows]),
    )


def save_evidence(path: Path, ev: Evidence, rows: list[Row]) -> None:
    """The evidence as an .npz, with which query, store and stored items each row and hit are."""
    np.savez(
        path,
        cos=ev.cos,
        inliers=ev.inliers,
        is_source=ev.is_source,
        ret_plain=ev.returned["plain"],
        ret_superglobal=ev.returned["superglobal"],
        positive=ev.positive,
        too_small=ev.too_small,
        edit=ev.edit,
        group=ev.group,
        query=np.array([r.query.name for r in rows]),
        config=np.array([r.config for r in rows]),
        hit_ids=np.array(
            [[h.id for h in r.hits] + [""] * (ev.cos.shape[1] - len(r.hits)) for r in rows]
        ),
    )
