"""What an embedding job's options mean: which shard it embeds (given as i/n, or n with the
index from the scheduler's environment) and the service settings it embeds with."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import Settings

# Where schedulers put a job's index: a Kubernetes indexed Job, a Slurm job array.
INDEX_ENV_VARS = ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID")


def parse_shard(text: str) -> tuple[int, int]:
    """ "i/n" -> (i, n) with 0 <= i < n; ValueError saying what is accepted otherwise."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard i/n needs n >= 1 and 0 <= i < n, got {text!r}")
    return index, count


def shard_from_args(shard: str | None, shards: int | None) -> tuple[int, int]:
    """(i, n) from --shard i/n, or from --shards n and the first of INDEX_ENV_VARS that is
    set; ValueError saying what to give otherwise."""
    if shard is not None:
        return parse_shard(shard)
    if shards is None:
        raise ValueError(
            "give --shard i/n, or --shards n with the index in one of " + ", ".join(INDEX_ENV_VARS)
        )
    for var in INDEX_ENV_VARS:
        if os.environ.get(var, "").strip():
            return parse_shard(f"{os.environ[var].strip()}/{shards}")
    raise ValueError(f"--shards {shards}: none of {', '.join(INDEX_ENV_VARS)} is set")


def embed_settings(model_dir: Path | None, thumbnails: bool) -> Settings:
    """The service's settings (SIMSEARCH_* environment), with --model-dir and
    --no-thumbnails applied."""
    from app.config import Settings

    settings = Settings()
    if model_dir is not None:
        settings = settings.model_copy(update={"model_dir": model_dir})
    if not thumbnails:
        thumbs = settings.thumbnails.model_copy(update={"enabled": False})
        settings = settings.model_copy(update={"thumbnails": thumbs})
    return settings
