"""``[store]``: its validation, and the store client against a real redis-server —
scripts, the timeout bound when Redis hangs, failing fast while it is down, AUTH."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import loads_config
from core.errors import ConfigError
from core.store import configure
from plugin_sdk import store
from tests.redis_server import RedisServer

INCR = store.Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture(autouse=True)
def no_store() -> Iterator[None]:
    yield
    store.configure(None)


def use(toml: str) -> store.Store:
    configure(loads_config(toml, "gw.toml"))
    return store.get()


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        pytest.param(
            '[store]\nredis = "http://127.0.0.1:6379"',
            "store.redis: unsupported URL scheme http://",
            id="bad-scheme",
        ),
        pytest.param("[store]\ntimeout = 1", "[store] needs `redis`", id="no-url"),
        pytest.param(
            '[store]\nredis = "redis://h"\ntimeout = 0',
            "store.timeout: Input should be greater",
            id="timeout",
        ),
        pytest.param(
            '[store]\nsentinels = ["nohost"]',
            "store.sentinels: invalid sentinel address 'nohost'",
            id="sentinel",
        ),
        pytest.param(
            '[store]\nredis = "redis://h"\nttl = 1', "store.ttl: unknown field", id="unknown"
        ),
    ],
)
def test_store_config_errors_name_the_field(toml: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(toml, "gw.toml")
    assert str(info.value).startswith("gw.toml:")
    assert error in str(info.value)


def test_without_store_get_says_how_to_configure_it() -> None:
    configure(loads_config("", "gw.toml"))
    assert not store.configured()
    with pytest.raises(store.StoreUnavailable, match=r"set \[store\] redis"):
        store.get()


async def test_scripts_run_batched_and_reload_after_a_script_flush(
    redis_server: RedisServer,
) -> None:
    s = use(f'[store]\nredis = "{redis_server.url}"\nkey_prefix = "t:"\ntimeout = 3')
    # Calls made in one turn of the loop go out as one pipeline; each gets its result.
    results = await asyncio.gather(*(s.run(INCR, [s.key("n")], [1]) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))
    assert "51" not in redis_server.command("GET", "t:n") and "50" in redis_server.command(
        "GET", "t:n"
    )
    redis_server.command("SCRIPT", "FLUSH")  # as after a Redis restart
    assert await s.run(INCR, [s.key("n")], [5]) == 55
    assert await s.command("GET", s.key("n")) == b"55"
    # A whole pipeline that meets NOSCRIPT: each call is sent again with the body, once.
    redis_server.command("SCRIPT", "FLUSH")
    again = await asyncio.gather(*(s.run(INCR, [s.key("n")], [1]) for _ in range(20)))
    assert sorted(again) == list(range(56, 76))
    assert await s.command("GET", s.key("n")) == b"75"


async def test_a_hung_redis_costs_at_most_the_timeout_then_fails_fast(
    redis_server: RedisServer,
) -> None:
    s = use(f'[store]\nredis = "{redis_server.url}"\ntimeout = 0.5\nretry_interval = 0.5')
    assert await s.run(INCR, [s.key("n")], [1]) == 1
    redis_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(store.StoreTimeout):
            await s.run(INCR, [s.key("n")], [1])
        assert time.monotonic() - started < 2.0  # 0.5 s, with a generous margin
        # Backing off: the next call does not wait at all.
        started = time.monotonic()
        with pytest.raises(store.StoreUnavailable, match="backing off"):
            await s.run(INCR, [s.key("n")], [1])
        assert time.monotonic() - started < 0.1
    finally:
        redis_server.resume()
    await asyncio.sleep(0.6)  # past retry_interval: it tries again
    assert await s.run(INCR, [s.key("n")], [1]) >= 2


async def test_a_stopped_redis_is_unavailable_and_back_once_it_restarts(
    redis_server: RedisServer,
) -> None:
    s = use(f'[store]\nredis = "{redis_server.url}"\nretry_interval = 0.2\ntimeout = 3')
    assert await s.run(INCR, [s.key("n")], [1]) == 1
    redis_server.stop()
    with pytest.raises(store.StoreUnavailable, match="cannot reach the store"):
        await s.run(INCR, [s.key("n")], [1])
    redis_server.start()
    await asyncio.sleep(0.3)
    assert await s.run(INCR, [s.key("n")], [1]) == 1  # a fresh (empty) Redis


async def test_password_is_sent_and_a_wrong_one_is_a_command_error() -> None:
    server = RedisServer(password="s3cret-pw").start()
    try:
        s = use(f'[store]\nredis = "{server.url}"\npassword = "s3cret-pw"\ntimeout = 3')
        assert await s.run(INCR, [s.key("n")], [2]) == 2
        s = use(f'[store]\nredis = "{server.url}"\npassword = "wrong"\ntimeout = 3')
        with pytest.raises(store.StoreError) as info:
            await s.run(INCR, [s.key("n")], [2])
        assert "WRONGPASS" in str(info.value) or "invalid" in str(info.value).lower()
    finally:
        server.close()


def test_the_url_and_password_are_never_shown_back() -> None:
    from core.config import GatewayConfig
    from core.config_redact import core_config_schema, redact_config

    cfg = loads_config('[store]\nredis = "redis://:pw@h:6379/0"\npassword = "pw2"', "gw.toml")
    schema = core_config_schema(GatewayConfig.model_json_schema())
    shown = redact_config(cfg.model_dump(mode="json"), schema, lambda _name: None)
    assert shown["store"]["redis"] == shown["store"]["password"] == "<redacted>"
    assert shown["store"]["timeout"] == 0.25


async def test_a_failed_reload_keeps_the_store_of_the_configuration_serving(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from core.cli import build_snapshot
    from core.gateway import Gateway
    from core.reload import Reloader

    limit = '[filters.l]\nplugin = "rate-limit"\nconfig = { policy = "redis" }\n'
    path = tmp_path / "gateway.toml"
    path.write_text(f'[store]\nredis = "{redis_server.url}"\n{limit}')
    gateway = Gateway(build_snapshot(str(path)), asyncio.get_running_loop())
    reloader = Reloader(gateway, path, lambda prev: build_snapshot(str(path), previous=prev))
    # Another Redis, and a filter that cannot load: the reload fails as a whole.
    path.write_text(
        f'[store]\nredis = "redis://127.0.0.1:1/0"\n{limit}[filters.x]\nplugin = "nope"\n'
    )
    assert not await reloader.reload("test")
    assert store.get().settings.redis == redis_server.url
    assert (await store.get().run(INCR, ["k"], [1])) == 1
