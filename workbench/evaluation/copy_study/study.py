"""The copy-verdict study in order: distractors, the data set, the evidence in two stores, the
rule fitted per fold and on everything, the served pass, the JSON (and the rule file)."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.config import Settings, ThumbnailSettings
from app.metrics import Metrics
from app.runtime import Runtime
from app.search.verdict import RULE_FILE
from workbench.evaluation.copy_study.dataset import build_dataset
from workbench.evaluation.copy_study.distractors import (
    DISTRACTOR_PACKAGES,
    distractor_files,
    fetch_distractors,
)
from workbench.evaluation.copy_study.edits import EDITS
from workbench.evaluation.copy_study.folds import cross_validate, held_out_summary
from workbench.evaluation.copy_study.progress import log
from workbench.evaluation.copy_study.recording import (
    build_evidence,
    record_evidence,
    save_evidence,
)
from workbench.evaluation.copy_study.report import rule_file, summary
from workbench.evaluation.copy_study.rule_fit import fit, rates
from workbench.evaluation.copy_study.served import served_pass


@dataclass
class StudyOptions:
    """The tool's options (workbench/evaluation/copy_verdict.py gives their meaning)."""

    model_dir: Path
    photos: Path
    distractors: Path
    fetch: bool
    folds: int
    max_fpr: float
    verify_top: int
    working_side: int
    thumb_side: int
    write_rule: bool
    save_evidence: Path | None
    served_every: int
    smoke: bool


async def run(opts: StudyOptions) -> dict[str, Any]:
    t_start = time.perf_counter()
    if opts.fetch:
        fetch_distractors(opts.distractors)
    photos = sorted(opts.photos.glob("*.jpg"))
    side = opts.working_side
    sources = distractor_files(opts.distractors, opts.photos / "MANIFEST.tsv")
    if opts.smoke:
        photos, sources = photos[:6], sources[:8]
    log(f"{len(photos)} photos, {len(sources)} distractor pictures")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "embed",
            model_dir=opts.model_dir,
            thumbnails=ThumbnailSettings(long_side=opts.thumb_side),
        )
        runtime = Runtime.start(settings, Metrics())
        try:
            data = await build_dataset(runtime, photos, sources, opts.distractors, side, opts.smoke)
        finally:
            runtime.close()
        log(f"{len(data.queries)} queries embedded ({time.perf_counter() - t_start:.0f} s)")

        rows, store_sizes, runtimes = record_evidence(
            data, Path(tmp), opts.model_dir, opts.thumb_side, side, opts.smoke, t_start
        )
        try:
            ev = build_evidence(rows)
            if opts.save_evidence is not None:
                save_evidence(opts.save_evidence, ev, rows)
            # Cross-validation by picture: fit on 4/5 of the pictures, measure on the fifth.
            held = cross_validate(ev, opts.folds, opts.max_fpr, opts.verify_top, side)
            for f, rule in enumerate(held.rules):
                log(f"fold {f}: {rule}")
            final = fit(ev, opts.max_fpr, opts.verify_top, side)
            in_sample = rates(ev, final)
            cosine_only = rates(ev, replace(final, cosine_floor=2.0))
            log(f"final: {final}")
            served = await served_pass(runtimes, rows, final, opts.served_every)
        finally:
            for rt in runtimes.values():
                rt.close()
    result = {
        "what": "copy verdict: held-out (5-fold by picture) rates of the fitted rule",
        "stores": store_sizes,
        "distractor_pictures": {
            "stored": data.stored_pictures,
            "never_stored": data.never_stored_pictures,
            "packages": DISTRACTOR_PACKAGES,
            "dropped": data.dropped,
        },
        "queries": {"copies": int(ev.positive.sum()), "never_stored": int((~ev.positive).sum())},
        "edits": list(EDITS),
        "fold_rules": [rule.as_dict() for rule in held.rules],
        "held_out": held_out_summary(ev, held),
        "final_rule": final.as_dict(),
        "final_rule_in_sample": in_sample,
        "cosine_only_in_sample": cosine_only,
        "served_path_in_sample": served.rates(),
        "verify_ms_per_search": summary(served.verify_ms),
        "embed_ms_per_search": summary(served.embed_ms),
        "thumb_side": opts.thumb_side,
        "max_fpr_fitted": opts.max_fpr,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    if opts.write_rule:
        RULE_FILE.write_text(json.dumps(rule_file(result, final, cosine_only), indent=2) + "\n")
    return result
