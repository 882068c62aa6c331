"""Giving decode memory back to the OS (glibc malloc tuning through ctypes).

A decode allocates a few large buffers and frees them a moment later. With glibc's defaults
those pages mostly stay in the process: every decode thread gets its own malloc arena, and
after the first big mmapped buffer is freed glibc raises its mmap threshold (up to 32 MiB),
so later buffers of that size come from the arenas and are kept there. Measured figures are
in docs/BENCHMARKS.md ("Decode path and memory").

- `configure_malloc`: mallopt(M_ARENA_MAX), a fixed mmap threshold (which also turns the
  dynamic adjustment off) and a trim threshold, applied once before the decode threads start.
- `LargeDecodeTrimmer`: malloc_trim(0) once the last in-flight large decode is done.

Everything is a no-op (logged once) where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


@lru_cache(maxsize=1)
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError) as exc:
        logger.info("malloc tuning unavailable (not glibc?): %s", exc)
        return None
    return libc


def configure_malloc(
    arena_max: int, mmap_threshold_bytes: int, trim_threshold_bytes: int = 0
) -> dict[str, int]:
    """Apply the non-zero knobs; returns those glibc accepted (name -> value)."""
    libc = _libc()
    applied: dict[str, int] = {}
    if libc is None:
        return applied
    for name, param, value in (
        ("arena_max", M_ARENA_MAX, arena_max),
        ("mmap_threshold", M_MMAP_THRESHOLD, mmap_threshold_bytes),
        ("trim_threshold", M_TRIM_THRESHOLD, trim_threshold_bytes),
    ):
        if value > 0:
            if libc.mallopt(param, value) == 1:
                applied[name] = value
            else:
                logger.warning("mallopt(%s=%d) was refused", name, value)
    if applied:
        logger.info("malloc: %s", ", ".join(f"{k}={v}" for k, v in applied.items()))
    return applied


def malloc_trim() -> bool:
    """malloc_trim(0): hand free heap pages of every arena back to the OS. True if any went."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


class LargeDecodeTrimmer:
    """Trim once no large decode is in flight (so concurrent requests do not each pay for it).

    Usage, around the decode-and-prepare work of one upload (any thread):
        large = trimmer.begin(pixels)   # pixels of the upload as declared
        ... decode, resize, release the big buffers ...
        trimmer.end(large)
    """

    def __init__(self, min_pixels: int) -> None:
        self.min_pixels = min_pixels
        self.trims = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    def begin(self, pixels: int) -> bool:
        if self.min_pixels <= 0 or pixels < self.min_pixels:
            return False
        with self._lock:
            self._in_flight += 1
        return True

    def end(self, large: bool) -> None:
        if not large:
            return
        with self._lock:
            self._in_flight -= 1
            last = self._in_flight == 0
        if last:
            malloc_trim()
            self.trims += 1
