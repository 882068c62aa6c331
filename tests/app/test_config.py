import logging
import re
from pathlib import Path

import pytest

from app.config import (
    FaissSettings,
    IndexSettings,
    MilvusSettings,
    Settings,
    setting_env_names,
)


def test_env_prefix_and_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMSEARCH_DATA_DIR", "/srv/simsearch")
    monkeypatch.setenv("SIMSEARCH_REQUIRE_GPU", "true")
    monkeypatch.setenv("SIMSEARCH_INDEX__NPROBE", "32")
    monkeypatch.setenv("SIMSEARCH_INFERENCE__PROVIDERS", "cpu")
    s = Settings()
    assert s.data_dir == Path("/srv/simsearch") and s.require_gpu
    assert s.index.nprobe == 32 and s.inference.providers == "cpu"
    assert s.resolved_model_dir() == Path("/srv/simsearch/model")
    assert s.store_dir == Path("/srv/simsearch/store")


def test_invalid_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMSEARCH_INFERENCE__PROVIDERS", "quantum")
    with pytest.raises(ValueError):
        Settings()


def test_store_settings_per_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMSEARCH_STORE__MILVUS__URI", "http://milvus.internal:19530")
    monkeypatch.setenv("SIMSEARCH_STORE__MILVUS__TOKEN", "user:secret")
    monkeypatch.setenv("SIMSEARCH_STORE__FAISS__SNAPSHOT_EVERY", "77")
    monkeypatch.setenv("SIMSEARCH_STORE__FAISS__THREADS", "3")
    s = Settings()
    assert s.store.milvus.uri == "http://milvus.internal:19530"
    assert s.store.milvus.token.get_secret_value() == "user:secret"
    assert s.store.faiss.snapshot_every == 77 and s.store.faiss.threads == 3
    # What each backend is given: FAISS its own knobs and the shared search knobs; Milvus's
    # settings carry none of the FAISS knobs.
    faiss = s.faiss_store_settings()
    assert faiss.snapshot_every == 77 and faiss.nprobe == s.index.nprobe
    assert not set(FaissSettings.model_fields) & set(MilvusSettings.model_fields)
    assert not set(FaissSettings.model_fields) & set(IndexSettings.model_fields)


@pytest.mark.parametrize(
    ("old", "new", "value", "read"),
    [
        (
            "SIMSEARCH_STORE__MILVUS_URI",
            "SIMSEARCH_STORE__MILVUS__URI",
            "http://m:19530",
            lambda s: s.store.milvus.uri,
        ),
        (
            "SIMSEARCH_STORE__MILVUS_STRONG_WAIT",
            "SIMSEARCH_STORE__MILVUS__STRONG_WAIT",
            "read",
            lambda s: s.store.milvus.strong_wait,
        ),
        (
            "SIMSEARCH_INDEX__SNAPSHOT_EVERY",
            "SIMSEARCH_STORE__FAISS__SNAPSHOT_EVERY",
            "123",
            lambda s: str(s.store.faiss.snapshot_every),
        ),
        (
            "SIMSEARCH_INDEX__FAISS_THREADS",
            "SIMSEARCH_STORE__FAISS__THREADS",
            "2",
            lambda s: str(s.store.faiss.threads),
        ),
    ],
)
def test_previous_names_still_work_with_a_warning_naming_the_new_one(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    old: str,
    new: str,
    value: str,
    read,
) -> None:
    monkeypatch.setenv(old, value)
    with caplog.at_level(logging.WARNING, logger="app.config"):
        s = Settings()
    assert read(s) == value
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(old in w and new in w and "deprecated" in w for w in warnings), warnings


def test_the_new_name_wins_over_the_previous_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SIMSEARCH_STORE__MILVUS_COLLECTION", "old_name")
    monkeypatch.setenv("SIMSEARCH_STORE__MILVUS__COLLECTION", "new_name")
    monkeypatch.setenv("SIMSEARCH_INDEX__TRAINING_SAMPLE", "5000")
    monkeypatch.setenv("SIMSEARCH_STORE__FAISS__TRAINING_SAMPLE", "6000")
    with caplog.at_level(logging.WARNING, logger="app.config"):
        s = Settings()
    assert s.store.milvus.collection == "new_name" and s.store.faiss.training_sample == 6000
    text = caplog.text
    assert "SIMSEARCH_STORE__MILVUS_COLLECTION is deprecated and ignored" in text
    assert "SIMSEARCH_INDEX__TRAINING_SAMPLE is deprecated and ignored" in text


def test_current_names_log_no_deprecation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SIMSEARCH_STORE__MILVUS__URI", "http://m:19530")
    monkeypatch.setenv("SIMSEARCH_INDEX__NPROBE", "8")
    with caplog.at_level(logging.WARNING, logger="app.config"):
        Settings()
    assert "deprecated" not in caplog.text


def test_every_store_and_index_variable_is_in_the_readme() -> None:
    """The settings table of the README names every variable of the store and index groups
    (derived from the model, so a new field without a row fails here)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = set(re.findall(r"`(SIMSEARCH_[A-Z0-9_]+)`", readme))
    names = {
        n for n in setting_env_names() if n.startswith(("SIMSEARCH_STORE__", "SIMSEARCH_INDEX__"))
    }
    assert "SIMSEARCH_STORE__FAISS__THREADS" in names
    assert names <= documented, sorted(names - documented)
