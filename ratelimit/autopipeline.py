"""Async auto-pipelining: the decisions asked in one event-loop turn go to Redis as one pipeline.

As ioredis's `enableAutoPipelining` does: the first command of a turn schedules a flush with
`loop.call_soon`; every command queued before it runs shares the flush. Each caller awaits its
own future, so:

* each caller gets its own reply, or its own error: per-command errors come back one per
  command (`raise_on_error=False`), so a NOSCRIPT or WRONGTYPE on one key fails only that call;
* a caller's deadline is its own: the pipeline ends by the earliest deadline of its callers
  (`asyncio.timeout_at`), so none waits past its own; a cancelled pipeline drops its connection,
  so a late reply is never read by anyone else;
* a pipeline that fails as a whole (connection refused, timeout) fails each of its callers,
  and each then gets its own tier's failure policy.

The pipeline is never retried (the decision clients have `Retry(NoBackoff(), 0)`): a re-sent
pipeline could count its decisions twice.
"""

from __future__ import annotations

import asyncio
import math
from functools import lru_cache
from typing import Any

from redis.exceptions import ResponseError
from redis.utils import deprecated_args

# A turn with more commands than this is split into several pipelines sent side by side, so one
# huge write does not hold every caller behind it.
DEFAULT_MAX_BATCH = 256

# A command as the limiter hands it over: (head, keys, tail), e.g. ("EVALSHA", sha, "1"), (key,),
# (limit, window_ms, cost, mode). Head and tail repeat per tier shape, so their wire encoding is cached.
Command = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def _encode(parts: tuple[str, ...]) -> bytes:
    return b"".join([b"$%d\r\n%s\r\n" % (len(b), b) for b in [p.encode() for p in parts]])


# Head and tail repeat per tier shape: cached. Keys differ per client: encoded each time (a cache
# of them would mostly miss and evict).
_bulk = lru_cache(maxsize=4096)(_encode)


def pack(command: Command) -> bytes:
    """The RESP array of one command (what redis-py's packer writes, minus re-encoding the parts
    every decision repeats)."""
    head, keys, tail = command
    return b"".join((b"*%d\r\n" % (len(head) + len(keys) + len(tail)), _bulk(head), _encode(keys), _bulk(tail)))


# The code of every sync wrapper redis-py's `deprecated_args` decorator makes (redis/utils.py).
_DEPRECATION_SHIM = deprecated_args()(lambda: None).__code__


def checkout(pool: Any) -> Any:
    """A connection from `pool` by its own get_connection (lock, fork check, health check,
    max_connections) without redis-py's `deprecated_args` shim around it, which maps every call's
    arguments to their names to warn about deprecated ones (none are passed here): about a quarter
    of a checkout. Any other wrapper is kept. Looked up on the pool at every call, never cached per
    class: a get_connection replaced on the instance, patched on the class after the first decision
    (instrumentation, a test's outage) or reached through a proxy pool is the one that runs."""
    get = pool.get_connection
    func = getattr(get, "__func__", None)
    if func is not None and getattr(func, "__code__", None) is _DEPRECATION_SHIM:
        return func.__wrapped__(get.__self__)
    return get()


def call_packed(client: Any, head: tuple[str, ...], keys: tuple[str, ...], tail: tuple[str, ...]) -> Any:
    """One command on a sync client, written with `pack` on a pooled connection (the sync
    decision path: redis-py's generic packer re-encodes every part of every call). A client
    without a single pool (cluster) or pinned to one connection takes the ordinary route."""
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(client, "connection", None) is not None:
        return client.execute_command(*head, *keys, *tail)
    conn = checkout(pool)
    try:
        conn.send_packed_command([pack((head, keys, tail))])
        return conn.read_response()
    except ResponseError:
        raise  # an error reply: the connection is in step and goes back to the pool
    except BaseException:
        conn.disconnect()  # a failed or interrupted exchange: never hand a half-read stream on
        raise
    finally:
        pool.release(conn)


class AutoPipeline:
    def __init__(self, client: Any, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch <= 0:
            raise ValueError(f"auto_pipeline max_batch must be a positive integer, got {max_batch!r}")
        self.client = client
        self.max_batch = max_batch
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._deadline = math.inf  # the earliest deadline of the pending callers (loop time)
        # A plain or Sentinel-managed client: its pooled connections are written to directly. A
        # cluster client (no single pool) gets redis-py's pipeline, which routes by slot.
        self._pool = getattr(client, "connection_pool", None)
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        # Plain counters an app can export: pipelines written and the commands they carried.
        self.pipelines = 0
        self.commands = 0

    def execute(self, head: tuple[str, ...], keys: tuple[str, ...], tail: tuple[str, ...],
                deadline: float) -> asyncio.Future[Any]:
        """Queue one command for this turn's pipeline; await the result. The pipeline ends (and
        its callers get TimeoutError) by the earliest `deadline` (loop time) of its commands."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append(((head, keys, tail), fut))
        self._deadline = min(self._deadline, deadline)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        batch = [(args, fut) for args, fut in self._pending if not fut.done()]  # timed out / cancelled
        deadline, self._deadline = self._deadline, math.inf
        self._pending = []
        self._scheduled = False
        for start in range(0, len(batch), self.max_batch):
            task = asyncio.ensure_future(self._send(batch[start:start + self.max_batch], deadline))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]], deadline: float) -> None:
        self.pipelines += 1
        self.commands += len(batch)
        try:
            async with asyncio.timeout_at(deadline):
                if self._pool is not None:
                    await self._send_on_connection(batch)
                    return
                async with self.client.pipeline(transaction=False) as pipe:
                    for (head, keys, tail), _ in batch:
                        pipe.execute_command(*head, *keys, *tail)
                    replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # every caller still waiting gets the pipeline's failure
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), reply in zip(batch, replies, strict=True):
            _settle(fut, reply)

    async def _send_on_connection(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        """One write of every command, then one reply each, in order, on one pooled connection.
        Any failure or cancellation mid-way disconnects it (redis-py's read_response does on a
        cancelled or failed read), so no reply is ever left for the connection's next user."""
        pool = self._pool
        assert pool is not None
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command([pack(command) for command, _ in batch])
            for _, fut in batch:
                try:
                    # No per-read timer: the whole exchange is bounded by the pipeline's timeout.
                    reply: Any = await conn.read_response(timeout=math.inf)
                except ResponseError as exc:  # this command's error reply: the stream stays in step
                    reply = exc
                _settle(fut, reply)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)


def _settle(fut: asyncio.Future[Any], reply: Any) -> None:
    if fut.done():  # the caller timed out or was cancelled: nobody reads this reply
        return
    if isinstance(reply, Exception):
        fut.set_exception(reply)
    else:
        fut.set_result(reply)
