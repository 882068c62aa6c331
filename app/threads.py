"""Thread budgets of the native libraries the service loads, so they do not oversubscribe.

onnxruntime and FAISS take explicit thread counts (inference.intra_op_threads,
store.faiss.threads). numpy's BLAS (OpenBLAS in the wheels) starts one busy thread per core on
its own; its only real work in the service is SuperGlobal's [M, M] similarity product, and
those threads then fight onnxruntime's for the same cores. Measured on 2 cores (fp32 DOLG-R50
at 512 px inferring continuously next to an M=400 re-rank every 10 ms): onnxruntime 2.06
img/s and re-rank p50 18 ms with numpy's default 2 BLAS threads, 3.98 img/s and 2.2 ms with 1.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset), which is
    what every thread budget defaults to."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def limit_numpy_blas(threads: int) -> list[dict[str, Any]]:
    """Cap the BLAS libraries numpy loaded at `threads` (0 = leave them alone).

    FAISS ships its own OpenBLAS, governed by faiss.omp_set_num_threads (the store does that),
    so BLAS libraries loaded from a FAISS package are left as they are. Returns the libraries
    changed (threadpoolctl's info dicts, after the change).
    """
    if threads <= 0:
        return []
    import numpy  # noqa: F401  (loads numpy's BLAS, so threadpoolctl can find it)
    from threadpoolctl import ThreadpoolController

    changed = []
    for lib in ThreadpoolController().lib_controllers:
        info = lib.info()
        if info.get("user_api") != "blas" or "faiss" in str(info.get("filepath", "")).lower():
            continue
        lib.set_num_threads(threads)
        changed.append(lib.info())
    for info in changed:
        logger.info("numpy BLAS %s %s: %d thread(s)", info.get("internal_api"),
                    info.get("version"), info.get("num_threads"))
    return changed
