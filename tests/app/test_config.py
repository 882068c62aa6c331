from pathlib import Path

import pytest

from app.config import Settings


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
