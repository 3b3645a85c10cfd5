"""Settings resolution, the client-id file and the token cache."""

from __future__ import annotations

import os
import stat
import time
import uuid
from pathlib import Path

import httpx
import pytest

from nemo_notebook import ConfigError, NemoClient
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
    cache.put("cid", "http://a", CachedToken("nmv_usr_y", "anon_1", time.time() + 3600))
    assert cache.get("cid", "http://a").token == "nmv_usr_y"
    assert "nmv_usr_x" not in (tmp_path / "tokens.json").read_text()


def test_corrupt_cache_is_ignored(tmp_path: Path):
    (tmp_path / "tokens.json").write_text("{not json")
    (tmp_path / "tokens.json").chmod(0o600)
    assert TokenCache(tmp_path).get("cid", "http://a") is None


def test_parse_expiry_forms():
    assert parse_expiry("2030-01-01T00:00:00Z") == pytest.approx(1893456000)
    assert parse_expiry(123.0) == 123.0
    assert parse_expiry(None, now=10) == 10 + 7 * 24 * 3600


# --------------------------------------------------- a co-user on the same machine (issue 12)

OTHER_UID = 65534  # nobody: the tests run as root, so they can plant a file of another user


def planted_cache(config_dir: Path, token: str) -> None:
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    TokenCache(config_dir).put("cid", "http://a", CachedToken(token, "anon_x", time.time() + 86400))


def test_the_config_folder_is_made_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        load_or_create_client_id(tmp_path / "nemovideo")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "nemovideo").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "nemovideo" / "client_id").stat().st_mode) == 0o600


def test_a_loose_folder_of_ones_own_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "nemovideo"
    folder.mkdir()
    folder.chmod(0o777)
    load_or_create_client_id(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.skipif(os.getuid() != 0, reason="planting another user's file needs root")
def test_a_token_cache_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    planted_cache(tmp_path, "nmv_usr_" + "P" * 43)
    os.chown(tmp_path / "tokens.json", OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError, match=r"tokens\.json belongs to another user; remove it"):
        TokenCache(tmp_path).get("cid", "http://a")


@pytest.mark.skipif(os.getuid() != 0, reason="planting another user's folder needs root")
def test_a_config_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "nemovideo"
    folder.mkdir()
    os.chown(folder, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError, match=r"belongs to another user.*XDG_CONFIG_HOME"):
        load_or_create_client_id(folder)


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder"])
def test_odd_files_in_place_of_the_client_id_are_refused_at_once(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "client_id"
    if kind == "fifo":
        os.mkfifo(path)  # reading it used to wait forever for a writer
    elif kind == "symlink":
        (tmp_path / "elsewhere").write_text(str(uuid.uuid4()))
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.mkdir()
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"client_id .*remove it"):
        load_or_create_client_id(tmp_path)
    assert time.monotonic() - started < 2


def test_a_token_cache_others_may_read_is_refused(tmp_path: Path) -> None:
    planted_cache(tmp_path, "nmv_usr_" + "Q" * 43)
    (tmp_path / "tokens.json").chmod(0o644)
    with pytest.raises(ConfigError, match=r"may be read by other users.*chmod 600"):
        TokenCache(tmp_path).get("cid", "http://a")


def test_the_client_says_what_to_fix_and_sends_nothing(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "client_id")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"code": 0, "data": {}})

    client = NemoClient(
        "http://api.test", config_dir=tmp_path, transport=httpx.MockTransport(handler)
    )
    with pytest.raises(ConfigError, match="not a regular file"):
        client.credits()
    assert seen == []
