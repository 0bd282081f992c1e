"""Fixtures and helpers for the rate-limiter tests (imported by tests/*/test_ratelimit_*.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ratelimit import decision_client_kwargs, function_library, make_key
from ratelimit.functions import function_name
from tests.support.redisproc import RedisProcess, free_port, have_redis

PLAIN_CONFIG = 'save ""\nappendonly no\n'

requires_redis = pytest.mark.skipif(not have_redis(), reason="redis-server not installed")


def start_server(workdir: Any, config: str = PLAIN_CONFIG, *, cluster_bus: bool = False) -> RedisProcess:
    port = free_port(cluster_bus=cluster_bus)
    rp = RedisProcess(workdir=workdir, config_text=config, port=port, extra_args=["--port", str(port)])
    return rp.start()


@pytest.fixture
def own_server(tmp_path: Any) -> Iterator[RedisProcess]:
    """A server of the test's own, for tests that stall (SIGSTOP) or stop it."""
    rp = start_server(tmp_path / "redis")
    try:
        yield rp
    finally:
        rp.resume() if rp.running() else None
        rp.stop()


@pytest.fixture(scope="module")
def rl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    rp = start_server(tmp_path_factory.mktemp("rl-redis"))
    try:
        yield rp
    finally:
        rp.stop()


@pytest.fixture
def rl_redis(rl_server: RedisProcess) -> Iterator[redis.Redis]:
    """A decision-path client (1 s timeout: loaded 2-core CI must not trip the fallback)."""
    assert rl_server.running(), "a test stopped the module's server (use a server of its own)"
    admin = redis.Redis(port=rl_server.port)
    admin.flushall()
    admin.close()
    client = redis.Redis(port=rl_server.port, **{**decision_client_kwargs(1.0), "max_connections": 128})
    try:
        yield client
    finally:
        client.close()


def scan_keys(r: redis.Redis) -> list[bytes]:
    return list(r.scan_iter(count=1000))


def timed_eval(r: redis.Redis, algorithm: str, key: str, args: list[str]) -> tuple[int, list[int], int]:
    """Run one library function (FCALL) between two TIME calls inside MULTI/EXEC.

    Nothing else runs inside a transaction, so the function's own TIME lies in [t0, t1] and
    t1 - t0 is a few microseconds: the server-side truth to hold the function's answers to.
    """
    r.function_load(function_library(), replace=True)
    with r.pipeline(transaction=True) as p:
        p.time()
        p.fcall(function_name(algorithm), 1, make_key("rl", key, algorithm), *args)
        p.time()
        t0, reply, t1 = p.execute()
    return t0[0] * 1_000_000 + t0[1], [int(v) for v in reply], t1[0] * 1_000_000 + t1[1]


def hammer_in_process(port: int, algorithm: str, key: str, limit: int, window_s: float, n: int,
                      threads: int, auth: dict[str, Any] | None = None,
                      may_load: bool = True) -> tuple[int, int, int]:
    """Child-process body for the multiprocessing test: (allowed, denied, fallbacks)."""
    client = redis.Redis(port=port, **{**decision_client_kwargs(2.0), "max_connections": threads + 2, **(auth or {})})
    return hammer_with(client, algorithm, key, limit, window_s, n, threads, may_load=may_load)


def hammer_with(client: Any, algorithm: str, key: str, limit: int, window_s: float, n: int,
                threads: int, may_load: bool = True) -> tuple[int, int, int]:
    """`n` hits from `threads` threads through `client` (closed after): (allowed, denied, fallbacks)."""
    from ratelimit import RateLimiter

    limiter = RateLimiter(client, algorithm, timeout=2.0, load_library=may_load)
    counts = [0, 0, 0]
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work(share: int) -> None:
        barrier.wait()
        for _ in range(share):
            d = limiter.hit(key, limit, window_s)
            with lock:
                counts[0 if d.allowed and not d.fallback else 1 if not d.fallback else 2] += 1

    ts = [threading.Thread(target=work, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    client.close()
    return counts[0], counts[1], counts[2]
