"""Settings resolution, the client-id file and the token cache."""

from __future__ import annotations

import stat
import time
import uuid
from pathlib import Path

import pytest

from nemo_notebook import ConfigError
from nemo_notebook._config import (
    DEFAULT_API_URL,
    CachedToken,
    TokenCache,
    default_config_dir,
    load_or_create_client_id,
    parse_expiry,
    resolve_settings,
)


def test_arguments_override_the_environment():
    env = {"NEMO_API_URL": "http://env.test/", "NEMO_TOKEN": "nmv_usr_env", "SKILL_SOURCE": "colab"}
    settings = resolve_settings(api_url="http://arg.test", token="nmv_usr_arg", env=env)
    assert settings.api_url == "http://arg.test"
    assert settings.token == "nmv_usr_arg"
    assert settings.platform == "colab"
    from_env = resolve_settings(env=env)
    assert from_env.api_url == "http://env.test" and from_env.token == "nmv_usr_env"
    assert resolve_settings(env={}).api_url == DEFAULT_API_URL


def test_bad_url_and_token_are_refused_with_advice():
    with pytest.raises(ConfigError, match="must be an http"):
        resolve_settings(api_url="ftp://x", env={})
    with pytest.raises(ConfigError, match="whitespace"):
        resolve_settings(token="nmv_usr_a b", env={})


def test_settings_repr_hides_the_token():
    settings = resolve_settings(token="nmv_usr_secretsecret", env={})
    assert "secret" not in repr(settings)


def test_config_dir_respects_xdg(tmp_path: Path):
    assert default_config_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "nemovideo"


def test_client_id_is_created_once_and_reused(tmp_path: Path):
    first = load_or_create_client_id(tmp_path)
    assert str(uuid.UUID(first)) == first
    assert load_or_create_client_id(tmp_path) == first
    (tmp_path / "client_id").write_text("garbage")
    assert load_or_create_client_id(tmp_path) != first


def test_token_cache_roundtrip_expiry_and_mode(tmp_path: Path):
    cache = TokenCache(tmp_path)
    cache.put("cid", "http://a", CachedToken("nmv_usr_x", "anon_1", time.time() + 3600))
    assert cache.get("cid", "http://a").token == "nmv_usr_x"
    assert cache.get("cid", "http://b") is None
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
    cache.put("cid", "http://a", CachedToken("nmv_usr_x", "anon_1", time.time() + 10))
    assert cache.get("cid", "http://a") is None  # inside the renewal margin
    cache.discard("cid", "http://a")
    assert "nmv_usr_x" not in (tmp_path / "tokens.json").read_text()


def test_corrupt_cache_is_ignored(tmp_path: Path):
    (tmp_path / "tokens.json").write_text("{not json")
    assert TokenCache(tmp_path).get("cid", "http://a") is None


def test_parse_expiry_forms():
    assert parse_expiry("2030-01-01T00:00:00Z") == pytest.approx(1893456000)
    assert parse_expiry(123.0) == 123.0
    assert parse_expiry(None, now=10) == 10 + 7 * 24 * 3600
