"""redisops backup/restore against a real redis-server: 10k keys with TTLs survive a destroyed data
dir; a corrupted backup is refused before anything is overwritten; a running server is not
restored under unless --force (nor when a supervisor restarts it); a failure mid-restore puts the
previous files back; retention keeps the newest N intact backups; an AOF rewrite during the copy
is copied again."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ratelimit import LIBRARY_RELEASE, RateLimiter, decision_client_kwargs, make_key
from ratelimit.functions import read_version
from redisops import backup as bk
from redisops import connection as rc
from redisops.errors import OperationError
from tests.integration._redisops_servers import Server, rendered_server, requires_redis
from tests.integration.test_redisops_smoke import run_cli
from tests.support.procs import wait_until

pytestmark = [pytest.mark.slow, requires_redis]
N_KEYS = 10_000


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    with rendered_server(tmp_path / "srv") as s:
        yield s


def write_keys(srv: Server, n: int = N_KEYS) -> dict[str, tuple[str, int, int, int]]:
    """n keys with TTLs from 10 min to 1 day: key -> (value, ttl_s, ms before and after writing).

    The server's clock is this machine's clock: each key's absolute expiry is its ttl after a
    moment within that bracket, however long a loaded machine takes to write them."""
    rnd = random.Random(4711)
    app = redis.Redis(port=srv.port, password=srv.passwords["app"])
    expected = {}
    pipe = app.pipeline(transaction=False)
    for i in range(n):
        key, value, ttl = f"rl:{{general:user-{i}}}:g", f"v{rnd.getrandbits(48)}", rnd.randint(600, 86_400)
        pipe.set(key, value, ex=ttl)
        expected[key] = (value, ttl)
    before = math.floor(time.time() * 1000)
    pipe.execute()
    after = math.ceil(time.time() * 1000)
    app.close()
    return {k: (v, ttl, before, after) for k, (v, ttl) in expected.items()}


def assert_all_back(srv: Server, expected: dict[str, tuple[str, int, int, int]]) -> None:
    """Every key with its value and its absolute expiry (PEXPIRETIME): a restore must not move it."""
    admin = srv.admin()
    assert admin.dbsize() == len(expected) + 1  # and the backup's marker key (no TTL)
    keys = list(expected)
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        pipe = admin.pipeline(transaction=False)
        for k in chunk:
            pipe.get(k)
            pipe.pexpiretime(k)
        replies = pipe.execute()
        for i, k in enumerate(chunk):
            value, ttl, before, after = expected[k]
            assert replies[2 * i] == value.encode(), k
            assert before + ttl * 1000 <= replies[2 * i + 1] <= after + ttl * 1000, (k, replies[2 * i + 1], before, after)
    admin.close()


def assert_library_back(srv: Server) -> None:
    """The `ratelimit` library answers, for the application credential, without a new FUNCTION LOAD."""
    app = srv.app(**decision_client_kwargs(5.0))
    try:
        assert read_version(app) == LIBRARY_RELEASE
        limiter = RateLimiter(app, "fixed_window", timeout=5.0, load_library=False)
        assert limiter.hit("restored", 2, 60).remaining == 1 and limiter.library_loads == 0
        app.delete(make_key("rl", "restored", "fixed_window"))
    finally:
        app.close()


def destroy_data(data_dir: Path) -> None:
    (data_dir / "dump.rdb").unlink(missing_ok=True)
    shutil.rmtree(data_dir / "appendonlydir", ignore_errors=True)


def wait_aof_written(srv: Server) -> None:
    """Until the server has written its AOF buffer to the file (redisops.backup.aof_written: with
    appendfsync everysec a reply does not mean the file holds the command yet), so that a digest
    taken now equals one taken later with nobody else touching the files."""
    admin = srv.admin()
    try:
        wait_until(lambda: bk.aof_written(admin.info("persistence")), 10, "the AOF buffer written")
    finally:
        admin.close()


def digest_tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and not p.name.endswith(".log")}


def test_backup_destroy_restore_every_key_and_ttl(srv: Server, tmp_path: Path) -> None:
    expected = write_keys(srv)
    backups = tmp_path / "backups"
    proc = run_cli(["backup", "--to", str(backups), "--json", str(tmp_path / "b.json")], srv.env(), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    manifest = result["manifest"]
    assert manifest["keys"] == N_KEYS + 1 and manifest["expires"] == N_KEYS  # + the marker key, no TTL
    assert manifest["marker"] == {"key": bk.MARKER_KEY, "value": Path(result["path"]).name}
    assert manifest["redis_version"].startswith("7.")
    paths = {f["path"] for f in manifest["files"]}
    assert "dump.rdb" in paths and any(p.startswith("appendonlydir/") and p.endswith(".manifest") for p in paths)
    backup_dir = Path(result["path"])
    for f in manifest["files"]:
        assert hashlib.sha256((backup_dir / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert (backup_dir / "dump.rdb").stat().st_mode & 0o077 == 0
    for pw in srv.passwords.values():
        assert pw not in (backup_dir / "manifest.json").read_text() and pw not in proc.stdout

    srv.proc.stop()
    destroy_data(srv.data_dir)
    proc = run_cli(["restore", "--from", str(backup_dir), "--data-dir", str(srv.data_dir)], srv.env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "restored dump.rdb, appendonlydir/" in proc.stdout
    srv.proc.start(write_config=False)
    assert_all_back(srv, expected)
    assert_library_back(srv)  # the data files were destroyed: the library came back with the restore
    proc = run_cli(["restore", "--from", str(backup_dir), "--verify-only"], srv.env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{N_KEYS + 1} keys, as in the backup" in proc.stdout


def test_restore_refuses_a_running_server_unless_forced(srv: Server, tmp_path: Path) -> None:
    expected = write_keys(srv, 500)
    spec = rc.resolve(environ=srv.env())
    result = bk.backup(spec, tmp_path / "backups")
    app = redis.Redis(port=srv.port, password=srv.passwords["app"])
    app.set("written-after-backup", "1")
    app.close()
    wait_aof_written(srv)
    before = digest_tree(srv.data_dir)
    proc = run_cli(["restore", "--from", str(result.path), "--data-dir", str(srv.data_dir)], srv.env())
    assert proc.returncode == 1
    assert "is running" in proc.stderr and "--force" in proc.stderr
    assert digest_tree(srv.data_dir) == before
    assert srv.proc.running()

    restored = bk.restore(spec, result.path, force=True)
    assert restored.data_dir == srv.data_dir and restored.moved_aside is not None
    assert (restored.moved_aside / "dump.rdb").exists()  # the old data is kept, not deleted
    srv.proc.proc.wait(10)  # type: ignore[union-attr]
    srv.proc.start(write_config=False)
    assert_all_back(srv, expected)  # and the key written after the backup is gone


def test_corrupted_backup_is_detected_before_anything_is_overwritten(srv: Server, tmp_path: Path) -> None:
    write_keys(srv, 1000)
    result = bk.backup(rc.resolve(environ=srv.env()), tmp_path / "backups")
    srv.proc.stop()
    rdb = result.path / "dump.rdb"
    data = bytearray(rdb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rdb.write_bytes(bytes(data))
    before = digest_tree(srv.data_dir)
    proc = run_cli(["restore", "--from", str(result.path), "--data-dir", str(srv.data_dir)], srv.env())
    assert proc.returncode == 1
    assert "dump.rdb: SHA-256" in proc.stderr and "nothing was changed" in proc.stderr
    assert digest_tree(srv.data_dir) == before


def test_corruption_with_a_matching_manifest_is_caught_by_redis_check_rdb(srv: Server, tmp_path: Path) -> None:
    write_keys(srv, 1000)
    result = bk.backup(rc.resolve(environ=srv.env()), tmp_path / "backups")
    rdb = result.path / "dump.rdb"
    data = bytearray(rdb.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rdb.write_bytes(bytes(data))
    manifest = json.loads((result.path / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["path"] == "dump.rdb":
            f["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (result.path / "manifest.json").write_text(json.dumps(manifest))
    _, problems = bk.verify_backup(result.path)
    assert len(problems) == 1 and "redis-check-rdb" in problems[0]
    with pytest.raises(OperationError, match="redis-check-rdb"):
        bk.restore(rc.resolve(environ=srv.env()), result.path, data_dir=srv.data_dir, force=True)
    assert srv.proc.running()  # verification failed first: the server was not even stopped


def test_keep_and_list(srv: Server, tmp_path: Path) -> None:
    write_keys(srv, 100)
    spec = rc.resolve(environ=srv.env())
    made = [bk.backup(spec, tmp_path / "b", keep=2).path for _ in range(3)]
    listed = bk.list_backups(tmp_path / "b")
    assert [Path(b["path"]) for b in listed] == made[1:]
    assert all(b["keys"] == 101 for b in listed)
    proc = run_cli(["backup", "--to", str(tmp_path / "b"), "--list", "--keep", "1", "--json", str(tmp_path / "l.json")],
                   {})
    assert proc.returncode == 0, proc.stderr
    assert [Path(b["path"]) for b in json.loads((tmp_path / "l.json").read_text())] == made[2:]


def test_backup_without_admin_credentials_is_a_usage_error(srv: Server, tmp_path: Path) -> None:
    env = srv.env()
    del env["REDIS_ADMIN_PASSWORD"]
    proc = run_cli(["backup", "--to", str(tmp_path / "b")], env)
    assert proc.returncode == 2
    assert "REDIS_ADMIN_PASSWORD" in proc.stderr
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_check_tools_never_get_a_password(srv: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_keys(srv, 50)
    seen: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(args, *a, **kw):  # type: ignore[no-untyped-def]
        seen.append([str(x) for x in args])
        return real_run(args, *a, **kw)

    monkeypatch.setattr(bk.subprocess, "run", recording_run)
    bk.backup(rc.resolve(environ=srv.env()), tmp_path / "b")
    assert {Path(a[0]).name for a in seen} == {"redis-check-rdb", "redis-check-aof"}
    for argv in seen:
        for pw in srv.passwords.values():
            assert all(pw not in arg for arg in argv)


def test_rdb_only_backup_restores_into_a_server_with_aof_on(tmp_path: Path) -> None:
    """Redis 7 with appendonly yes ignores dump.rdb when no AOF exists and starts empty: restore
    builds an AOF whose base is the RDB, and moves the server's stale AOF aside."""
    with rendered_server(tmp_path / "rdb-only", overrides={"appendonly": "no"}) as src:
        expected = write_keys(src, 2000)
        result = bk.backup(rc.resolve(environ=src.env()), tmp_path / "b")
    assert result.manifest["aof_included"] is False
    with rendered_server(tmp_path / "aof-on", load_functions=False) as dst:
        admin = dst.admin()
        admin.set("stale", "1")
        admin.close()
        dst.proc.stop()
        restored = bk.restore(rc.resolve(environ=dst.env()), result.path, data_dir=dst.data_dir)
        assert "appendonlydir/ (built from the RDB)" in restored.restored
        assert (restored.moved_aside / "appendonlydir").is_dir()  # type: ignore[operator]
        dst.proc.start(write_config=False)
        assert_all_back(dst, expected)
        assert_library_back(dst)  # never loaded on dst: it came in the source's RDB


@pytest.mark.parametrize("appendonly", ["yes", "no"], ids=["aof", "rdb"])
def test_the_library_survives_a_restart(tmp_path: Path, appendonly: str) -> None:
    """Functions persist in the AOF and the RDB (rdbSaveFunctions): a restarted server answers
    FCALL without anyone loading the library again."""
    with rendered_server(tmp_path / appendonly, overrides={"appendonly": appendonly}) as srv:
        if appendonly == "no":
            admin = srv.admin()
            admin.save()  # what a `save` point or the shutdown save does
            admin.close()
        srv.proc.restart()
        assert_library_back(srv)


def test_verify_only_works_offline_and_fails_on_a_bad_backup(srv: Server, tmp_path: Path) -> None:
    write_keys(srv, 200)
    result = bk.backup(rc.resolve(environ=srv.env()), tmp_path / "b")
    srv.proc.stop()
    ok = run_cli(["restore", "--from", str(result.path), "--verify-only"], srv.env(REDIS_TIMEOUT="300"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "201 keys" in ok.stdout and "not reachable, key count not compared" in ok.stdout
    (result.path / "appendonlydir" / "stray.aof").write_text("x")
    bad = run_cli(["restore", "--from", str(result.path), "--verify-only"], srv.env(REDIS_TIMEOUT="300"))
    assert bad.returncode == 1 and "stray.aof: not in the manifest" in bad.stderr


def _count(srv: Server) -> int:
    admin = srv.admin()
    try:
        return int(admin.dbsize())
    finally:
        admin.close()


def _rdb_only(backup_dir: Path) -> None:
    """Turn a backup into one without an AOF (as taken from a server with appendonly no)."""
    shutil.rmtree(backup_dir / "appendonlydir")
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if not f["path"].startswith("appendonlydir/")]
    manifest["aof_included"] = False
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))


def test_a_failure_after_staging_puts_the_previous_files_back(srv: Server, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The live files are moved aside and the new ones renamed in only after staging; a failure in
    the middle of that (here: the AOF directory's rename) moves everything back."""
    write_keys(srv, 300)
    result = bk.backup(rc.resolve(environ=srv.env()), tmp_path / "b")
    admin = srv.admin()
    admin.set("written-after-backup", "1")
    admin.close()
    srv.proc.stop()
    before = digest_tree(srv.data_dir)
    real_replace = bk.os.replace

    def failing_replace(src, dst):  # type: ignore[no-untyped-def]
        if Path(src).name == ".appendonlydir.restore":
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(bk.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        bk.restore(rc.resolve(environ=srv.env()), result.path, data_dir=srv.data_dir)
    monkeypatch.undo()
    assert digest_tree(srv.data_dir) == before  # no staging leftovers, no pre-restore dir either
    assert not list(srv.data_dir.glob("pre-restore-*"))
    srv.proc.start(write_config=False)
    assert _count(srv) == 302


def test_an_aof_that_fails_its_check_changes_nothing(srv: Server, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_keys(srv, 100)
    result = bk.backup(rc.resolve(environ=srv.env()), tmp_path / "b")
    _rdb_only(result.path)
    srv.proc.stop()
    before = digest_tree(srv.data_dir)
    monkeypatch.setattr(bk, "check_aof", lambda _p: (False, "AOF is not valid"))
    with pytest.raises(OperationError, match="AOF built from the RDB fails redis-check-aof"):
        bk.restore(rc.resolve(environ=srv.env()), result.path, data_dir=srv.data_dir)
    assert digest_tree(srv.data_dir) == before


def test_a_supervisor_restart_after_shutdown_aborts_the_restore(srv: Server, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """--force: Redis comes back (restart policy) after SHUTDOWN NOSAVE, before the renames. The
    restore must not put files under a running server: it aborts and leaves the live files."""
    write_keys(srv, 200)
    spec = rc.resolve(environ=srv.env())
    result = bk.backup(spec, tmp_path / "b")
    admin = srv.admin()
    admin.set("written-after-backup", "1")
    admin.close()
    real_seal = bk._seal_tree

    def seal_then_supervisor_restarts(directory: Path) -> None:
        real_seal(directory)
        srv.proc.proc.wait(10)  # type: ignore[union-attr]
        srv.proc.start(write_config=False)

    monkeypatch.setattr(bk, "_seal_tree", seal_then_supervisor_restarts)
    with pytest.raises(OperationError, match="listening again"):
        bk.restore(spec, result.path, force=True)
    assert srv.proc.running()
    assert (srv.data_dir / "dump.rdb").is_file() and (srv.data_dir / "appendonlydir").is_dir()
    assert not list(srv.data_dir.glob("pre-restore-*")) and not list(srv.data_dir.glob(".*.restore"))
    assert _count(srv) == 202  # the running server kept its data (+ marker), including the later write
    srv.proc.restart()
    assert _count(srv) == 202  # and so did its files


def test_restore_into_a_fresh_volume_takes_the_data_dirs_owner(srv: Server, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_keys(srv, 50)
    spec = rc.resolve(environ=srv.env())
    result = bk.backup(spec, tmp_path / "b")
    srv.proc.stop()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    os.chown(fresh, 65534, 65534)  # the redis user of a new volume, not the operator
    restored = bk.restore(spec, result.path, data_dir=fresh)
    assert restored.warnings == [] and restored.moved_aside is None
    for p in [fresh / "dump.rdb", fresh / "appendonlydir", *(fresh / "appendonlydir").iterdir()]:
        assert (p.stat().st_uid, p.stat().st_gid) == (65534, 65534), p

    def no_chown(*_a: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, 65534, 65534)
    monkeypatch.setattr(bk.os, "chown", no_chown)
    restored = bk.restore(spec, result.path, data_dir=other)
    assert len(restored.warnings) == 2 and all("65534:65534" in w for w in restored.warnings)
    assert "warning:" in restored.message and f"chown -R 65534:65534 {other / 'dump.rdb'}" in restored.message


def test_backup_and_restore_fsync_every_file_and_directory(srv: Server, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    write_keys(srv, 50)
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(bk.os, "fsync", recording_fsync)
    spec = rc.resolve(environ=srv.env())
    result = bk.backup(spec, tmp_path / "b")
    work = str(result.path) + ".partial"
    for f in result.manifest["files"]:
        assert f"{work}/{f['path']}" in synced, f["path"]
    for d in (f"{work}/appendonlydir", work, str(tmp_path / "b")):
        assert d in synced, d
    synced.clear()
    srv.proc.stop()
    bk.restore(spec, result.path, data_dir=srv.data_dir)
    data = str(srv.data_dir)
    assert f"{data}/.dump.rdb.restore" in synced and f"{data}/.appendonlydir.restore" in synced
    assert any(p.startswith(f"{data}/.appendonlydir.restore/") and p.endswith(".manifest") for p in synced)
    assert synced[-2:] == [data, next(str(p) for p in srv.data_dir.glob("pre-restore-*"))]


def test_retention_counts_only_intact_backups_and_skips_partial_ones(srv: Server, tmp_path: Path) -> None:
    write_keys(srv, 100)
    spec = rc.resolve(environ=srv.env())
    made = [bk.backup(spec, tmp_path / "b").path for _ in range(3)]
    with open(made[2] / "dump.rdb", "r+b") as fh:  # a crash left a short file behind a durable manifest
        fh.truncate(10)
    partial = shutil.copytree(made[0], tmp_path / "b" / (made[2].name[:-1] + "9Z.partial"))
    listed = {Path(b["path"]): b for b in bk.list_backups(tmp_path / "b")}
    assert partial not in listed
    assert "dump.rdb: size 10" in listed[made[2]]["error"]
    assert bk.prune(tmp_path / "b", 1) == [made[0]]
    assert made[1].is_dir() and made[2].is_dir() and partial.is_dir()  # the newest intact one is kept


def test_an_aof_rewrite_during_the_copy_is_copied_again(srv: Server, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rewrite between the manifest read and the copy replaces the base file: the backup copies
    the new manifest and exactly its files. Writes made after the BGSAVE are in the AOF, so the
    restored server may hold more keys than the RDB's count."""
    expected = write_keys(srv, 500)
    real_copy = bk._copy_fsync
    rewrites: list[str] = []

    def copy_racing_a_rewrite(src: Path, dst: Path) -> None:
        if src.parent.name == "appendonlydir" and not rewrites:
            admin = srv.admin()
            old = (src.parent / "appendonly.aof.manifest").read_text()
            admin.set("written-after-bgsave", "1")
            admin.bgrewriteaof()
            wait_until(lambda: not int(admin.info("persistence")["aof_rewrite_in_progress"])
                       and (src.parent / "appendonly.aof.manifest").read_text() != old, 30, "the AOF rewrite done")
            admin.close()
            rewrites.append(src.name)
        real_copy(src, dst)

    monkeypatch.setattr(bk, "_copy_fsync", copy_racing_a_rewrite)
    spec = rc.resolve(environ=srv.env())
    result = bk.backup(spec, tmp_path / "b")
    assert rewrites
    aof_text = (result.path / "appendonlydir" / "appendonly.aof.manifest").read_text()
    named = {line.split()[1] for line in aof_text.splitlines() if line.split()[5] in ("b", "i")}
    copied = {p.name for p in (result.path / "appendonlydir").iterdir()} - {"appendonly.aof.manifest"}
    assert copied == named and rewrites[0] not in copied
    assert bk.verify_backup(result.path)[1] == []
    assert result.manifest["keys"] == 501
    srv.proc.stop()
    bk.restore(spec, result.path, data_dir=srv.data_dir)
    srv.proc.start(write_config=False)
    assert "1 more than the backup's RDB" in bk.check_key_count(result.manifest, _count(srv))
    assert _count(srv) == len(expected) + 2


def test_key_count_may_exceed_the_rdb_only_when_the_aof_was_restored() -> None:
    manifest = {"keys": 100, "expires": 10, "aof_included": True}
    assert "5 more than the backup's RDB" in bk.check_key_count(manifest, 105)
    assert "expired" in bk.check_key_count(manifest, 95)
    with pytest.raises(OperationError):
        bk.check_key_count(manifest, 80)
    with pytest.raises(OperationError):
        bk.check_key_count({**manifest, "aof_included": False}, 105)


def test_a_server_that_loaded_nothing_fails_the_restore_check(srv: Server, tmp_path: Path) -> None:
    """Every limiter key has a TTL, so an allowance for keys expired since the backup let 0 keys
    pass; the backup's marker key (no TTL, the backup's id) must be on the server."""
    write_keys(srv, 200)
    spec = rc.resolve(environ=srv.env())
    result = bk.backup(spec, tmp_path / "b")
    assert result.manifest["keys"] == 201 and result.manifest["expires"] == 200
    assert "201 keys, as in the backup" in bk.check_restored(spec, result.manifest, _count(srv))
    admin = srv.admin()
    admin.flushall()  # as a server that started empty, the restored files discarded
    admin.close()
    with pytest.raises(OperationError, match="key count after restore is 0"):
        bk.check_key_count(result.manifest, 0)
    with pytest.raises(OperationError, match="does not hold this backup's marker key"):
        bk.check_restored(spec, result.manifest, 0)
    bad = run_cli(["restore", "--from", str(result.path), "--verify-only"], srv.env())
    assert bad.returncode == 1 and "does not hold this backup's marker key" in bad.stderr
    # Data loaded from another backup carries that backup's id.
    write_keys(srv, 10)
    later = bk.backup(spec, tmp_path / "later")
    with pytest.raises(OperationError, match=f"found '{later.path.name}'"):
        bk.check_restored(spec, result.manifest, 11)
