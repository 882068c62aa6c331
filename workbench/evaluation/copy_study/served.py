"""The served path with the final rule: queries through `SearchService.search_image`, as an
upload is searched (in-sample; a check that the served verdict agrees with the fitted one),
and what the verdict costs per search."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.runtime import Runtime
from app.search.service import RerankMode
from app.search.verdict import CopyVerdict, VerdictRule
from workbench.evaluation.copy_study.recording import TOP_K, Row

SERVED_MODES: tuple[tuple[str, RerankMode], ...] = (
    ("plain", "none"),
    ("superglobal", "superglobal"),
)


@dataclass
class Served:
    """Per mode [copies found, copies, never-stored matched, never-stored] and the timings."""

    counts: dict[str, list[int]] = field(
        default_factory=lambda: {"plain": [0, 0, 0, 0], "superglobal": [0, 0, 0, 0]}
    )
    verify_ms: list[float] = field(default_factory=list)  # plain searches
    embed_ms: list[float] = field(default_factory=list)  # plain searches

    def rates(self) -> dict[str, dict[str, float]]:
        return {
            m: {
                "copies_found_rate": v[0] / max(v[1], 1),
                "never_stored_match_rate": v[2] / max(v[3], 1),
            }
            for m, v in self.counts.items()
        }


async def served_pass(
    runtimes: dict[str, Runtime], rows: list[Row], rule: VerdictRule, every: int
) -> Served:
    """Every `every`-th row searched in its store, plain and re-ranked, judged by `rule`."""
    served = Served()
    for config, rt in runtimes.items():
        svc = rt.service
        svc.verdict = CopyVerdict(svc.store, rule, 64 << 20)
        for row in rows[::every]:
            if row.config != config:
                continue
            q = row.query
            for mode, rerank in SERVED_MODES:
                out = await svc.search_image(q.data, top_k=TOP_K, rerank=rerank)
                found = any(h.match and h.id == q.source_id for h in out.hits)
                false = any(h.match and h.id != q.source_id for h in out.hits)
                s = served.counts[mode]
                if row.positive:
                    s[0] += found
                    s[1] += 1
                else:
                    s[2] += false
                    s[3] += 1
                if mode == "plain":
                    served.verify_ms.append(out.timings_ms["verify"])
                    served.embed_ms.append(out.timings_ms["embed"])
    return served
