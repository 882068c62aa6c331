"""workbench/ingest/shard_options.py: the shard a job embeds, from --shard i/n or from the
scheduler's environment, and the settings it embeds with."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.ingest.shard_options import (
    INDEX_ENV_VARS,
    embed_settings,
    parse_shard,
    shard_from_args,
)


@pytest.mark.parametrize("text", ["2/2", "-1/3", "a/b", "1", "0/0", "1/2/3"])
def test_parse_shard_rejects_what_is_not_i_of_n(text: str) -> None:
    with pytest.raises(ValueError, match="i/n"):
        parse_shard(text)
    assert parse_shard("3/4") == (3, 4)


def test_the_shard_index_comes_from_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert shard_from_args(None, 3) == (2, 3)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")  # Kubernetes first
    assert shard_from_args(None, 3) == (1, 3)
    assert shard_from_args("0/5", None) == (0, 5)  # --shard wins
    with pytest.raises(ValueError, match="i/n"):
        shard_from_args("3/3", None)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")  # out of range for 3 shards
    with pytest.raises(ValueError, match="0 <= i < n"):
        shard_from_args(None, 3)


def test_without_a_shard_or_an_index_the_error_says_what_to_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in INDEX_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="give --shard i/n, or --shards n"):
        shard_from_args(None, None)
    with pytest.raises(ValueError, match="--shards 4: none of JOB_COMPLETION_INDEX"):
        shard_from_args(None, 4)


def test_settings_take_the_model_dir_and_thumbnails_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SIMSEARCH_MODEL_DIR", raising=False)
    monkeypatch.delenv("SIMSEARCH_THUMBNAILS__ENABLED", raising=False)
    default = embed_settings(None, thumbnails=True)
    assert default.thumbnails.enabled
    chosen = embed_settings(tmp_path, thumbnails=False)
    assert chosen.model_dir == tmp_path
    assert not chosen.thumbnails.enabled
    assert chosen.thumbnails.long_side == default.thumbnails.long_side
