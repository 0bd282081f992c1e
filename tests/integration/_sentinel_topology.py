"""Start the rendered Sentinel topology (1 primary + 2 replicas + 3 Sentinels) on loopback.

The files come from redis_conf.sentinel exactly as the EC2 hosts and the dev containers get
them; only the addresses are loopback ports and the directories are temporary. One test-only
override, for speed: `repl-diskless-sync-delay 0` on the command line (Redis' default waits 5 s
for more replicas to share a diskless full sync; nothing here depends on that batching).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis
from redis.sentinel import Sentinel

from ratelimit.functions import LIBRARY_RELEASE, load_library, read_version
from redis_conf.acl import CREDENTIALS, render_acl_file
from redis_conf.render import TlsFiles
from redis_conf.schema import load_base
from redis_conf.sentinel import MASTER_NAME, Endpoint, SentinelTuning, topology_files
from tests.support.certs import make_tls_files
from tests.support.redisproc import RedisProcess, free_port, stop_all

HOST = "127.0.0.1"
# min-replicas-to-write / min-replicas-max-lag are the product's (1 and 10 s, SentinelTuning's
# defaults) unless a test measures the lag itself. Redis 7.0 (src/replication.c, 7.0.15) counts a
# replica good while server.unixtime - its last REPLCONF ACK <= the lag, in whole seconds
# (refreshGoodSlavesCount), recounts once a second (end of replicationCron) and when a replica goes
# online, not on an ACK; replicas ACK once a second (replicationCron). With 2 s, one replica (all
# a failover leaves) silent for ~2 s - a loaded 2-core machine starving it - refused every write
# (NOREPLICAS) until the next recount after its ACK (a full-suite run: 14 of 54 smoke decisions
# fell back right after a failover, test_redisops_sentinel.py). No ACK-less window follows a
# switch of masters: PSYNC and the end of a full sync set the ACK time as they put the replica
# online, and recount.
# For tests that fail over: fast enough for a bounded test, the values FIELD-NOTES measured
# (~2.3 s to heal).
FAST = SentinelTuning(quorum=2, down_after_ms=1000, failover_timeout_ms=5000, parallel_syncs=1)
# For tests that must keep their primary: with down-after 1 s, a Redis starved of CPU for a second
# on a busy machine is judged down and replaced under the test's feet.
STEADY = SentinelTuning(quorum=2, down_after_ms=60_000, failover_timeout_ms=180_000, parallel_syncs=1)
# For the tests that measure min-replicas-max-lag itself (NOREPLICAS after the replicas fall
# silent; the write loss a failover may cause, bounded by lag + 2 s): a short lag keeps them quick
# and their bounds tight. They tolerate a late ack (two replicas, or fallbacks they expect).
TIGHT_LAG = replace(STEADY, min_replicas_max_lag=2)
# Generous: these waits return as soon as the state is reached. A failover under FAST takes
# ~2.5 s, plus 10 s (2 x failover-timeout) for each election that fails to pick a leader
# (sentinelStartFailoverIfNeeded, src/sentinel.c at 7.0.15); 90 s turns only a hang into a failure.
SETTLE_S = 90.0
# Client timeouts only bound a hang: a loopback server answers in milliseconds, a starved one later.
CLIENT_TIMEOUT_S = 10.0
NODE_ARGS = ["--repl-diskless-sync-delay", "0"]


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


@dataclass
class Topology:
    nodes: list[RedisProcess]
    sentinels: list[RedisProcess]
    passwords: dict[str, str]
    tls: Any  # tests.support.certs.TlsFiles | None
    tuning: SentinelTuning
    # One client per Sentinel and credential: the settle waits poll every 50 ms, and a new TLS
    # connection each time would load the very Sentinels whose late replies they wait out.
    _sentinel_clients: dict[tuple[int, str, str], redis.Redis] = field(default_factory=dict, repr=False)

    def ssl_kwargs(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        return {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)}

    def node_client(self, i: int, user: str = "admin", **kw: Any) -> redis.Redis:
        pw = self.passwords["app" if user == "default" else user]
        return redis.Redis(HOST, self.nodes[i].port, username=user, password=pw,
                           **{"socket_timeout": CLIENT_TIMEOUT_S, **self.ssl_kwargs(), **kw})

    def sentinel_client(self, i: int, user: str = "default") -> redis.Redis:
        pw = self.passwords["app" if user == "default" else user]
        key = (i, user, pw)
        if key not in self._sentinel_clients:
            self._sentinel_clients[key] = redis.Redis(HOST, self.sentinels[i].port, username=user, password=pw,
                                                      socket_timeout=CLIENT_TIMEOUT_S, **self.ssl_kwargs())
        return self._sentinel_clients[key]

    def close_clients(self) -> None:
        for c in self._sentinel_clients.values():
            c.close()
        self._sentinel_clients.clear()

    def sentinel(self, **connection_kwargs: Any) -> Sentinel:
        """What an application builds: discovery authenticated with its own password."""
        return Sentinel([(HOST, s.port) for s in self.sentinels],
                        sentinel_kwargs={"password": self.passwords["app"], "socket_timeout": CLIENT_TIMEOUT_S,
                                         **self.ssl_kwargs()},
                        password=self.passwords["app"], **self.ssl_kwargs(),
                        **{"socket_timeout": CLIENT_TIMEOUT_S, **connection_kwargs})

    def load_functions(self) -> None:
        """What each host's boot does (infra/components/sentinel_hosts.py): the admin loads the
        `ratelimit` library on the primary; replication carries it to the replicas."""
        admin = self.node_client(0)
        try:
            load_library(admin)
        finally:
            admin.close()
        for i in (1, 2):
            replica = self.node_client(i)
            try:
                wait_until(lambda r=replica: read_version(r) == LIBRARY_RELEASE, SETTLE_S,  # type: ignore[misc]
                           f"the library replicated to node {i}")
            finally:
                replica.close()

    def tune(self, tuning: SentinelTuning) -> None:
        """Set every Sentinel's down-after and failover-timeout at run time: FAST just before a
        test's own failover, STEADY once it is done (every Sentinel agrees and the replicas follow
        the new master: STEADY's failover-timeout also delays re-pointing a replica), so that no
        other moment of the test can see a spurious failover of a Redis starved of CPU for a second."""
        self._sentinel_set("down-after-milliseconds", tuning.down_after_ms,
                           "failover-timeout", tuning.failover_timeout_ms)
        self.tuning = tuning

    def hold_failovers(self) -> None:
        """Down-after back to STEADY's on every Sentinel, failover-timeout unchanged (FAST's also
        paces re-pointing replicas): no Sentinel can start another failover, since it needs
        ODOWN, which needs SDOWN, which the next timer tick clears (sentinelHandleRedisInstance,
        src/sentinel.c at 7.0.15). `tuning` keeps what tune() set: SentinelTuning refuses a
        failover-timeout below down-after, which Sentinel itself accepts."""
        self._sentinel_set("down-after-milliseconds", STEADY.down_after_ms)

    def _sentinel_set(self, *option_values: str | int) -> None:
        for i in range(len(self.sentinels)):
            self.sentinel_client(i, "admin").execute_command("SENTINEL", "SET", MASTER_NAME, *map(str, option_values))

    def master_port(self, i: int = 0) -> int:
        _host, port = self.sentinel_client(i).sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def node_by_port(self, port: int) -> RedisProcess:
        return next(n for n in self.nodes if n.port == port)

    def wait_replicated(self, master: RedisProcess, replicas: int, timeout: float = SETTLE_S) -> None:
        """`replicas` replicas online at `master`, and as many counted good for min-replicas-to-write
        (INFO's min_slaves_good_slaves, what decides NOREPLICAS): going online counts a replica at
        once, but one already silent for longer than the lag is online and not counted."""
        c = self.node_client(self.nodes.index(master))
        seen: dict[str, Any] = {}

        def linked() -> bool:
            info = c.info("replication")
            seen.update(info)
            online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                      and v.get("state") == "online"]
            good = int(info.get("min_slaves_good_slaves", len(online)))  # absent with min-replicas off
            return info["role"] == "master" and len(online) >= replicas and good >= replicas

        try:
            wait_until(linked, timeout, f"{replicas} replicas online and counted good at :{master.port}")
        except AssertionError as exc:
            # Which half failed (a replica never re-pointed, or online but not counted good) is
            # the diagnosis: the last INFO replication goes into the failure (a CI run saw this
            # time out after a failover on a loaded machine, cause not yet known).
            shown = {k: v for k, v in seen.items() if k.startswith(("role", "connected_slaves", "slave", "min_slaves"))}
            raise AssertionError(f"{exc}; last INFO replication: {shown}") from None

    def wait_initial_aof_written(self, replicas: list[RedisProcess], timeout: float = SETTLE_S) -> None:
        """Each replica linked and done with the AOF rewrite its full sync starts (appendonly yes):
        until then Redis 7.0 refuses SIGTERM ("Writing initial AOF, can't exit.", prepareForShutdown
        in src/server.c, 7.0.15) and drops it (abortShutdown), so a stop() right after start would
        wait out its 10 s and SIGKILL the replica. The rewrite starts in the same step that puts
        the link up (readSyncBulkPayload), so link up and no rewrite running or scheduled is done."""
        for r in replicas:
            c = self.node_client(self.nodes.index(r))

            def written(c: redis.Redis = c) -> bool:
                info = c.info()
                return bool(info["master_link_status"] == "up" and not info["aof_rewrite_in_progress"]
                            and not info["aof_rewrite_scheduled"])

            try:
                wait_until(written, timeout, f"the initial AOF of the replica at :{r.port}")
            finally:
                c.close()

    def agreed_master(self) -> int | None:
        """The port every Sentinel's master entry (what clients' discovery reads) names, if they
        all name the same healthy master with no failover in progress: GET-MASTER-ADDR-BY-NAME
        alone names the promoted replica while the leader's failover is still running."""
        ports = set()
        for i in range(len(self.sentinels)):
            m = self.sentinel_client(i, "admin").sentinel_master(MASTER_NAME)
            if not m["is_master"] or m["is_sdown"] or m["is_odown"] or "failover" in str(m.get("flags", "")):
                return None
            ports.add(int(m["port"]))
        return ports.pop() if len(ports) == 1 else None

    def wait_sentinels_agree(self, port: int | None = None, *, excluding: int | None = None,
                             timeout: float = SETTLE_S) -> int:
        """Wait for agreed_master() to be `port` (or any port but `excluding`); return it."""
        def agreed() -> int | None:
            p = self.agreed_master()
            return p if p is not None and p != excluding and port in (None, p) else None

        wanted = f":{port}" if port is not None else f"one master other than :{excluding}"
        return int(wait_until(agreed, timeout, f"all Sentinels naming {wanted} as a healthy master, "
                                               "no failover in progress"))

    def settle_failover(self, killed_port: int, timeout: float = SETTLE_S) -> int:
        """After the master on `killed_port` was killed under FAST: the master the Sentinels agree
        on once no further failover can start. Returns its port.

        One failover may be followed by a second, of the master it just promoted (1 of 72 kills
        in a loop on a loaded 2-core machine; behind full-suite runs c2 and 40). In
        src/sentinel.c at 7.0.15 (the same at 7.4.1), a switch resets the master
        (sentinelResetMaster): down-after counts from the switch (act_ping_time), nothing delays
        a new failover ("We can failover again ASAP", failover_start_time = 0), and the peers are
        kept (SENTINEL_RESET_NO_SENTINELS) with their "master down" replies about the old master,
        which expire only 5 s after the last one (sentinel_ask_period x 5,
        sentinelAskMasterStateToOtherSentinels). So a new master that has not answered its first
        PING within down-after (1 s: a TLS connect and AUTH on a starved machine) is at once ODOWN
        for that Sentinel, and the peers vote for it (a vote needs the address of a master the
        voter knows and no vote in that epoch yet, not the voter's own view of it). So the wait
        takes whichever master the Sentinels agree on, holds further failovers (hold_failovers),
        and checks that none had started; if one had, it waits for that one to end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.wait_sentinels_agree(excluding=killed_port, timeout=max(deadline - time.monotonic(), 1.0))
            self.hold_failovers()
            if self.agreed_master() == port:
                return port
        states = [self.sentinel_client(i, "admin").sentinel_master(MASTER_NAME) for i in range(len(self.sentinels))]
        raise AssertionError(f"no settled master within {timeout}s: every agreement was followed by a failover; "
                             f"SENTINEL MASTER per Sentinel: {states}")

    def failure_evidence(self) -> str:
        """The members' log tails (+switch-master, +sdown, votes, +tilt...): a failed test's report
        carries them (tests/conftest.py), since the temporary directories holding the logs do not
        outlive a CI machine."""
        return "\n".join(f"--- {p.workdir.name} :{p.port}\n{p.log_tail(60)}" for p in self.sentinels + self.nodes)

    def wait_sentinels_know_each_other(self, timeout: float = SETTLE_S) -> None:
        def known() -> bool:
            return all(len(self.sentinel_client(i, "admin").sentinel_sentinels(MASTER_NAME)) == 2
                       for i in range(len(self.sentinels)))

        wait_until(known, timeout, "every Sentinel seeing its 2 peers")


def _passwords() -> dict[str, str]:
    return {c: secrets.token_urlsafe(24) for c in CREDENTIALS}


@contextmanager
def sentinel_topology(base: Path, *, tls: bool, tuning: SentinelTuning = FAST,
                      start_sentinels: bool = True, host: str = HOST, load_functions: bool = True) -> Iterator[Topology]:
    """`host` is how the members name each other: an IP, or a DNS name (hostname mode)."""
    passwords = _passwords()
    certs = make_tls_files(base / "certs") if tls else None
    tls_files = (TlsFiles(str(certs.cert), str(certs.key), str(certs.ca_cert)) if certs else None)
    node_ports = [free_port() for _ in range(3)]
    sentinel_ports = [free_port() for _ in range(3)]  # distinct: each is held until the session ends
    dirs = [base / f"node{i}" for i in range(3)]
    sdirs = [base / f"sentinel{i}" for i in range(3)]
    for d in dirs:
        d.mkdir(parents=True)
        (d / "users.acl").write_text(render_acl_file(passwords))
        (d / "users.acl").chmod(0o600)
    files = topology_files(
        load_base(), [Endpoint(host, p) for p in node_ports], [Endpoint(host, p) for p in sentinel_ports],
        passwords=passwords, tuning=tuning, tls=tls_files,
        binds=[HOST] * 3, sentinel_binds=[HOST] * 3,
        data_dirs=[str(d) for d in dirs], sentinel_dirs=[str(d) for d in sdirs],
        aclfile=[str(d / "users.acl") for d in dirs])
    nodes = [RedisProcess(workdir=dirs[i], config_text=f.redis_conf, port=node_ports[i], extra_args=NODE_ARGS)
             for i, f in enumerate(files)]
    sentinels = [RedisProcess(workdir=sdirs[i], config_text=f.sentinel_conf, port=sentinel_ports[i], sentinel=True)
                 for i, f in enumerate(files)]
    topo = Topology(nodes, sentinels, passwords, certs, tuning)
    started: list[RedisProcess] = []
    try:
        for n in nodes:
            started.append(n.start())
        topo.wait_replicated(nodes[0], 2)
        topo.wait_initial_aof_written(nodes[1:])
        if load_functions:
            topo.load_functions()
        if start_sentinels:
            for s in sentinels:
                started.append(s.start())
            topo.wait_sentinels_know_each_other()
        yield topo
    except Exception:
        # A test body's failure (a fixture's passes through tests/conftest.py instead); evidence
        # that cannot be read must not replace the failure.
        try:
            print(topo.failure_evidence())
        except Exception as exc:
            print(f"no topology evidence: {exc!r}")
        raise
    finally:
        try:
            topo.close_clients()
        finally:
            # Sentinels first (nothing may fail over while the nodes go), then every node at once:
            # a primary stopped alone waits up to shutdown-timeout (10 s) for its replicas.
            stop_all(sentinels)
            stop_all(nodes)
