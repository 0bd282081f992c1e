"""Exactly `limit` admissions on a real 3-primary cluster through redis-py's RedisCluster: threads,
processes and asyncio tasks; and while the keys' slot moves between primaries under load, by
hand (SETSLOT IMPORTING/MIGRATING + MIGRATE, clients follow ASK then MOVED) and by
`redis-cli --cluster reshard`."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from ratelimit import ALGORITHMS, AsyncRateLimiter, Decision, RateLimiter, decision_client_kwargs
from tests.support.cluster_load import SteadyLoad, hammer_cluster_in_process, keys_in_slot, wait_for_samples
from tests.support.redis_cluster import HOST, Cluster, Node, redis_cluster
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]

# As in test_ratelimit_exactness: a long window keeps GCRA's refill out of the test.
LIMIT = 100
WINDOW_S = 3600


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with redis_cluster(tmp_path_factory.mktemp("cluster-exact"), 3, 0) as c:
        yield c


def _limiter(c: Cluster, algorithm: str) -> RateLimiter:
    return RateLimiter(c.app_client(**decision_client_kwargs(5.0)), algorithm)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_threads_admit_exactly_limit(cluster: Cluster, algorithm: str) -> None:
    limiter = _limiter(cluster, algorithm)
    key = f"threads-{algorithm}"
    results: list[tuple[bool, bool, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def work() -> None:
        barrier.wait()
        for _ in range(15):
            d = limiter.hit(key, LIMIT, WINDOW_S)
            with lock:
                results.append((d.allowed, d.fallback, d.remaining))

    ts = [threading.Thread(target=work) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(results) == 300 and not any(fb for _, fb, _ in results)
    assert sum(ok for ok, _, _ in results) == LIMIT
    assert sorted(rem for ok, _, rem in results if ok) == list(range(LIMIT))


def test_processes_admit_exactly_limit(cluster: Cluster) -> None:
    ctx = multiprocessing.get_context("spawn")
    ports = [n.port for n in cluster.nodes]
    with ctx.Pool(3) as pool:
        for algorithm in ALGORITHMS:
            args = [(ports, cluster.passwords["app"], algorithm, f"procs-{algorithm}", LIMIT, WINDOW_S, 80, 4)] * 3
            counts = pool.starmap(hammer_cluster_in_process, args)
            assert sum(c[2] for c in counts) == 0, counts
            assert sum(c[0] for c in counts) == LIMIT and sum(c[1] for c in counts) == 240 - LIMIT, counts


def _async_cluster(c: Cluster) -> AsyncRedisCluster:
    return AsyncRedisCluster(startup_nodes=[AsyncClusterNode(HOST, n.port) for n in c.nodes],
                             password=c.passwords["app"],
                             **{**decision_client_kwargs(5.0), "retry": AsyncRetry(NoBackoff(), 0), "max_connections": 300})


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_async_tasks_admit_exactly_limit(cluster: Cluster, algorithm: str) -> None:
    async def run() -> list[tuple[bool, bool]]:
        rc = _async_cluster(cluster)
        # Initialized before the tasks share it (see AsyncRateLimiter._run on the race otherwise).
        await rc.initialize()
        limiter = AsyncRateLimiter(rc, algorithm, timeout=5.0)
        try:
            ds = await asyncio.gather(*(limiter.hit(f"async-{algorithm}", LIMIT, WINDOW_S) for _ in range(250)))
        finally:
            await rc.aclose()
        return [(d.allowed, d.fallback) for d in ds]

    results = asyncio.run(run())
    assert not any(fb for _, fb in results)
    assert sum(ok for ok, _ in results) == LIMIT


def test_async_tasks_on_a_cold_client_always_get_a_decision(cluster: Cluster) -> None:
    """Tasks racing a client's first initialize(): whatever redis-py raises, each request gets a
    Decision (fail closed here), never an exception, and never more than the limit."""
    async def run() -> tuple[list[Any], int]:
        rc = _async_cluster(cluster)
        limiter = AsyncRateLimiter(rc, "gcra", timeout=5.0)
        try:
            ds = await asyncio.gather(*(limiter.hit("async-cold", LIMIT, WINDOW_S) for _ in range(250)),
                                      return_exceptions=True)
        finally:
            await rc.aclose()
        return ds, limiter.fallbacks

    results, fallbacks = asyncio.run(run())
    assert all(isinstance(d, Decision) for d in results), [d for d in results if not isinstance(d, Decision)][:3]
    decided = [d for d in results if isinstance(d, Decision)]
    assert all(not d.allowed for d in decided if d.fallback) and sum(d.fallback for d in decided) == fallbacks
    assert sum(d.allowed for d in decided if not d.fallback) <= LIMIT


# ---- the slot moves under load ------------------------------------------------------------------


def _slot_load(c: Cluster, slot: int, tag: str) -> tuple[SteadyLoad, dict[tuple[str, str], list[bool]]]:
    """Load on 3 clients x every algorithm, all in `slot`; per (client, algorithm) verdicts."""
    names = keys_in_slot(slot, 3, stem=f"{tag}-")
    limiters = {a: _limiter(c, a) for a in ALGORITHMS}
    verdicts: dict[tuple[str, str], list[bool]] = {(n, a): [] for n in names for a in ALGORITHMS}
    order = list(verdicts)
    turn = iter(range(10**9))
    lock = threading.Lock()

    def decide():  # type: ignore[no-untyped-def]
        with lock:
            name, algorithm = order[next(turn) % len(order)]
        d = limiters[algorithm].hit(name, LIMIT, WINDOW_S)
        if not d.fallback:
            with lock:
                verdicts[(name, algorithm)].append(d.allowed)
        return d

    return SteadyLoad(decide, threads=6), verdicts


def _fill(c: Cluster, slot: int, n: int) -> None:
    """`n` more keys in the slot, so that moving it takes many MIGRATE batches under the load."""
    rc = c.app_client()
    (tag,) = keys_in_slot(slot, 1, stem="filler-")  # the hash tag decides the slot
    for i in range(n):
        rc.set(f"filler:{{{tag}}}:{i}", i)


def _judge(load: SteadyLoad, verdicts: dict[tuple[str, str], list[bool]]) -> None:
    samples = load.snapshot()
    assert not [s.error for s in samples if s.error], "the limiter let an exception through"
    assert not [s for s in samples if s.fallback], "a decision fell back during the move"
    for (name, algorithm), vs in verdicts.items():
        assert len(vs) > LIMIT, (name, algorithm, len(vs))
        # Exactly LIMIT admitted: no state was lost (a key recreated on the new owner would admit
        # again) or counted twice when the key changed hands.
        assert Counter(vs)[True] == LIMIT, (name, algorithm, Counter(vs))


def _migrate_by_hand(c: Cluster, slot: int, source: Node, target: Node) -> int:
    """The resharding protocol (redis.io "Redis cluster specification", live resharding):
    IMPORTING on the target, MIGRATING on the source, MIGRATE in batches of 5 keys, then NODE on both
    and on every other primary. Returns how many MIGRATE batches it took."""
    src, dst = c.node_client(source), c.node_client(target)
    src_id, dst_id = (x.execute_command("CLUSTER", "MYID").decode() for x in (src, dst))
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    batches = 0
    while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 5):
        src.execute_command("MIGRATE", HOST, target.port, "", 0, 10000, "AUTH2", "admin",
                            c.passwords["admin"], "KEYS", *keys)
        batches += 1
    for n in (target, source, *[p for p in c.primaries() if p not in (source, target)]):
        c.node_client(n).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    return batches


def test_exact_while_the_slot_migrates_by_hand_and_by_redis_cli_reshard(cluster: Cluster) -> None:
    c = cluster
    # The lowest slot of a primary: after the hand migration it is the target's lowest slot too,
    # which is the one `redis-cli --cluster reshard --cluster-slots 1` moves first.
    source = c.primary_of_slot(0)
    target = next(p for p in c.primaries() if p is not source)
    slot = 0
    _fill(c, slot, 400)
    load, verdicts = _slot_load(c, slot, "move")
    with load:
        wait_for_samples(load, lambda s: len(s) >= 60, 60, "load running before the move")
        before = load.count()
        batches = _migrate_by_hand(c, slot, source, target)
        during_hand = load.count() - before
        c.wait_slot_owner(slot, target)
        assert batches >= 80
        mid = load.count()
        other = next(p for p in c.primaries() if p not in (source, target))
        target_id = c.node_client(target).execute_command("CLUSTER", "MYID").decode()
        other_id = c.node_client(other).execute_command("CLUSTER", "MYID").decode()
        out = c.redis_cli("--cluster", "reshard", f"{HOST}:{target.port}", "--cluster-from", target_id,
                          "--cluster-to", other_id, "--cluster-slots", "1", "--cluster-yes",
                          "--cluster-pipeline", "10")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert f"Moving slot {slot} from" in out.stdout
        c.wait_slot_owner(slot, other)
        during_reshard = load.count() - mid
        wait_for_samples(load, lambda s: all(len(v) > LIMIT + 5 for v in verdicts.values()), 120,
                         "every key past its limit")
    # Decisions were made while the keys were changing hands, not only around it.
    assert during_hand > 0 and during_reshard > 0, (during_hand, during_reshard)
    _judge(load, verdicts)
