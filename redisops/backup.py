"""`redisops backup` / `restore`: the guide's manual SAVE + docker cp + restart, automated and checked.

Backup (self-managed Redis: the local stack's volume, a Sentinel host's data dir):

1. BGSAVE through the admin ACL user (SAVE would block every limiter call for the whole dump);
2. wait until the save counter moves and `rdb_last_bgsave_status:ok`;
3. copy the RDB (and the AOF directory when AOF is on: with no AOF rewrite running and Redis'
   AOF buffer written to the file, its manifest first, then exactly the files it names, again
   if a rewrite changed it) into
   `<dir>/redis-<UTC time>.partial/`;
4. verify the copy with redis-check-rdb / redis-check-aof and write `manifest.json` (size and
   SHA-256 of every file, Redis version, key count as read back from the RDB); fsync every file
   and directory, then rename it to `<dir>/redis-<UTC time>/`.

Retention (`--keep`) counts only backups whose files match the manifest's sizes.

Restore checks everything before it touches anything: the manifest's checksums and the
check tools must pass, the server must be stopped (or `--force` stops it with SHUTDOWN NOSAVE,
so its own exit does not write over the restored file). The new files are built, checked,
chowned and fsynced under temp names in the data dir; only then are the live ones moved aside into
`<data dir>/pre-restore-<time>/` (never deleted) and the new ones renamed in, with the port
checked before every rename; any failure puts the previous files back. A backup without an AOF
is restored with the server's old AOF moved aside too: otherwise Redis would load the stale AOF
and ignore the RDB.

Cluster mode: per shard, the node in REDIS_URL; the manifest records its slot ranges and a
restore refuses a node serving other slots (docs/redisops.md, "backup and restore").

The password reaches neither argv nor the manifest; the check tools get file paths only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from redisops import connection as rc
from redisops.errors import OperationError, UsageError

MANIFEST = "manifest.json"
FORMAT = 1
PREFIX = "redis-"
PARTIAL = ".partial"  # a backup being written: never listed, counted or pruned
_KEYS_READ = re.compile(r"\[info\] (\d+) keys read")
_EXPIRES = re.compile(r"\[info\] (\d+) expires")

Progress = Callable[[str, float | None], None]


def _wait_until(ready: Callable[[], bool], deadline: float, waiting: str, timed_out: Callable[[], str],
                progress: Progress, interval: float = 0.1) -> None:
    """Poll `ready` until it holds; past `deadline` raise OperationError(timed_out()), which may
    name what the last poll saw. The waits of a backup or restore are for a server state, never
    for a fixed time (issue 17)."""
    while not ready():
        if time.monotonic() > deadline:
            raise OperationError(timed_out())
        progress(waiting, None)
        time.sleep(interval)


def _noop(_msg: str, _fraction: float | None) -> None:
    return None


def tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.path.exists(path):
        raise OperationError(f"{name} is not installed (Debian/Ubuntu: apt-get install redis-tools); "
                             "a backup that cannot be verified is not taken")
    return path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class RdbCheck:
    ok: bool
    keys: int | None
    expires: int | None
    output: str


def check_rdb(path: Path) -> RdbCheck:
    # A corrupt file makes redis-check-rdb echo the raw bytes it choked on: never let them
    # decide whether the check itself can be read (errors="replace").
    proc = subprocess.run([tool("redis-check-rdb"), str(path)], capture_output=True, text=True,
                          errors="replace", timeout=600, check=False)
    out = proc.stdout + proc.stderr
    keys = _KEYS_READ.search(out)
    expires = _EXPIRES.search(out)
    ok = proc.returncode == 0 and "RDB looks OK" in out
    return RdbCheck(ok, int(keys.group(1)) if keys else None, int(expires.group(1)) if expires else None, out)


def check_aof(manifest_path: Path) -> tuple[bool, str]:
    proc = subprocess.run([tool("redis-check-aof"), str(manifest_path)], capture_output=True, text=True, errors="replace",
                          timeout=600, check=False)
    out = proc.stdout + proc.stderr
    lines = out.strip().splitlines()
    return proc.returncode == 0 and bool(lines) and "valid" in lines[-1], out


def _last_lines(text: str, n: int = 4) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])


# --- backup ----------------------------------------------------------------------------------

@dataclass
class BackupResult:
    path: Path
    manifest: dict[str, Any]
    pruned: list[Path] = field(default_factory=list)


def _config_get(client: Any, name: str) -> str | None:
    try:
        value = client.config_get(name).get(name)
    except redis.ResponseError:
        return None
    return str(value) if value is not None else None


def _wait_for_bgsave(client: Any, saves_before: int, lastsave_before: int, timeout: float,
                     progress: Progress) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = client.info("persistence")
        done_by_counter = "rdb_saves" in info and int(info["rdb_saves"]) > saves_before
        done_by_time = "rdb_saves" not in info and int(info["rdb_last_save_time"]) > lastsave_before
        if not int(info.get("rdb_bgsave_in_progress", 0)) and (done_by_counter or done_by_time):
            return info
        total = int(info.get("current_save_keys_total", 0) or 0)
        fraction = int(info.get("current_save_keys_processed", 0) or 0) / total if total else None
        progress("waiting for BGSAVE", fraction)
        if time.monotonic() > deadline:
            raise OperationError(f"BGSAVE did not finish within {timeout:.0f} s (rdb_bgsave_in_progress:"
                                 f"{info.get('rdb_bgsave_in_progress')}); nothing was copied")
        time.sleep(0.05)


def _start_bgsave(client: Any, timeout: float, progress: Progress) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.bgsave()
            return
        except redis.ResponseError as exc:
            # A save or AOF rewrite already running: ours must start after it, or the copy
            # would be of the older snapshot.
            if "in progress" not in str(exc) or time.monotonic() > deadline:
                raise OperationError(f"BGSAVE refused: {exc}") from None
            progress("another save is running; waiting to start ours", None)
            time.sleep(0.1)


def backup(spec: rc.ConnectionSpec, to_dir: Path, *, data_dir: Path | None = None, keep: int | None = None,
           timeout: float = 300.0, progress: Progress = _noop) -> BackupResult:
    if keep is not None and keep < 1:
        raise UsageError(f"--keep {keep}: expected a number of backups >= 1")
    deadline = time.monotonic() + timeout
    # Cluster mode: one shard per run, the node named in REDIS_URL (its primary, or a replica:
    # same data); the manifest records the slots it holds so a restore can refuse another layout.
    client = rc.node_client(spec, spec.hosts[0], "admin") if spec.mode == "cluster" else rc.client(spec, "admin")
    try:
        progress("connecting as the admin user", None)
        try:
            server = client.info("server")
        except redis.AuthenticationError as exc:
            raise UsageError(f"REDIS_ADMIN_PASSWORD / REDIS_ADMIN_USERNAME rejected by the server ({exc})") from None
        except redis.ResponseError as exc:
            if "unknown command" in str(exc).lower():
                raise OperationError("INFO is not available: for ElastiCache use `redisops snapshot` (manual "
                                     "snapshot through the AWS API)") from None
            raise
        shard = _shard_of(client) if spec.mode == "cluster" else None
        primary_address: tuple[str, int] | None = None
        if shard is not None:
            # Where the shard's nodes are now is no fact about the backup.
            primary_address = shard.pop("primary")
            shard.pop("replicas")
            shard["config_file"] = Path(_config_get(client, "cluster-config-file") or "nodes.conf").name
        dir_conf = _config_get(client, "dir")
        src_dir = Path(data_dir) if data_dir is not None else (Path(dir_conf) if dir_conf else None)
        if src_dir is None:
            raise UsageError("--data-dir is required: CONFIG GET dir is not available on this server")
        if not src_dir.is_dir():
            raise UsageError(f"--data-dir {src_dir}: not a directory on this machine (CONFIG GET dir says "
                             f"{dir_conf}); for a container pass the volume's path on the host")
        dbfilename = _config_get(client, "dbfilename") or "dump.rdb"
        appendfilename = _config_get(client, "appendfilename") or "appendonly.aof"
        aofdir = _config_get(client, "appenddirname") or "appendonlydir"
        before = client.info("persistence")
        aof_enabled = bool(int(before.get("aof_enabled", 0)))
        # Names sort by time (retention relies on it), to the microsecond.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        final = Path(to_dir) / f"{PREFIX}{stamp}"
        marker = _write_marker(spec, client, shard, primary_address, final.name, deadline, progress)
        progress("BGSAVE", None)
        _start_bgsave(client, timeout, progress)
        after = _wait_for_bgsave(client, int(before.get("rdb_saves", 0)), int(before["rdb_last_save_time"]),
                                 timeout, progress)
        if after.get("rdb_last_bgsave_status") != "ok":
            raise OperationError(f"BGSAVE failed (rdb_last_bgsave_status:{after.get('rdb_last_bgsave_status')}); "
                                 "see the Redis log; nothing was copied")
        keyspace = client.info("keyspace")

        to_dir = Path(to_dir)
        to_dir.mkdir(parents=True, exist_ok=True)
        work = final.with_name(final.name + PARTIAL)
        work.mkdir(mode=0o700)
        try:
            rdb_src = src_dir / dbfilename
            if not rdb_src.is_file():
                raise OperationError(f"{rdb_src} does not exist after BGSAVE: is --data-dir the directory Redis "
                                     f"writes to (CONFIG GET dir: {dir_conf})?")
            files: list[dict[str, Any]] = []
            progress(f"copying {dbfilename}", 0.0)
            _copy_fsync(rdb_src, work / "dump.rdb")
            files.append(_file_entry(work, work / "dump.rdb"))
            if aof_enabled and (src_dir / aofdir).is_dir():
                files += _copy_aof(client, src_dir / aofdir, work / "appendonlydir", work, deadline, progress)
            progress("verifying with redis-check-rdb", None)
            rdb = check_rdb(work / "dump.rdb")
            if not rdb.ok:
                raise OperationError(f"the copied RDB fails redis-check-rdb: {_last_lines(rdb.output)}")
            verified = {"rdb": _last_lines(rdb.output, 3)}
            if (work / "appendonlydir").is_dir():
                progress("verifying with redis-check-aof", None)
                manifests = list((work / "appendonlydir").glob("*.manifest"))
                if not manifests:
                    raise OperationError("the AOF directory has no manifest file; cannot verify it")
                ok, out = check_aof(manifests[0])
                if not ok:
                    raise OperationError(f"the copied AOF fails redis-check-aof: {_last_lines(out)}")
                verified["aof"] = _last_lines(out, 1)
            manifest = {
                "format": FORMAT,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "redis_version": server.get("redis_version"),
                "source": spec.display_url,
                "data_dir": str(src_dir),
                "dbfilename": dbfilename,
                "appenddirname": aofdir,
                "aof_included": (work / "appendonlydir").is_dir(),
                "appendfilename": appendfilename,
                "aof_enabled": aof_enabled,
                "keys": rdb.keys,
                "expires": rdb.expires,
                "marker": marker,
                "keyspace": {db: dict(v) for db, v in keyspace.items()},
                "rdb_last_save_time": after.get("rdb_last_save_time"),
                "files": files,
                "verified": verified,
            }
            if shard is not None:
                manifest["cluster"] = shard
            _write_json(work / MANIFEST, manifest)
            # Every file was fsynced as it was copied; the directories make the names durable, so a
            # crash cannot leave a durable manifest next to a short or missing dump.rdb.
            if (work / "appendonlydir").is_dir():
                _fsync_dir(work / "appendonlydir")
            _fsync_dir(work)
            os.replace(work, final)
            _fsync_dir(to_dir)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    finally:
        client.close()
    pruned = prune(to_dir, keep) if keep else []
    progress("done", 1.0)
    return BackupResult(final, manifest, pruned)


MARKER_KEY = "redisops:backup-marker"


def marker_key(slots: list[list[int]] | None) -> str:
    """The marker's key: in a cluster hash-tagged to the first tag whose slot the shard owns."""
    if slots is None:
        return MARKER_KEY
    from redis.crc import key_slot

    for n in range(16384 * 64):
        key = f"{MARKER_KEY}:{{{n}}}"
        if any(lo <= key_slot(key.encode()) <= hi for lo, hi in slots):
            return key
    raise OperationError(f"no marker key found for slots {_ranges(slots)}")  # pragma: no cover: 16384 slots


def _write_marker(spec: rc.ConnectionSpec, client: Any, shard: dict[str, Any] | None,
                  primary: tuple[str, int] | None, backup_id: str, deadline: float,
                  progress: Progress) -> dict[str, str]:
    """A key without TTL holding the backup's id, written before BGSAVE so the dump holds it.

    Every limiter key has a TTL, so a restore that loaded nothing would pass a key-count check
    that forgives expired keys; the marker must be there after a restore, with this backup's id.
    It stays in the live dataset (one key per shard, overwritten by the next backup)."""
    key = marker_key(shard["slots"] if shard is not None else None)
    progress(f"writing the marker key {key}", None)
    if shard is None or shard["role"] == "primary" or primary is None:
        client.set(key, backup_id)
        return {"key": key, "value": backup_id}
    # A replica is read-only: the shard's primary takes the write, the replica gets it by replication.
    writer = rc.node_client(spec, primary, "admin")
    try:
        writer.set(key, backup_id)
    finally:
        writer.close()
    _wait_until(lambda: client.get(key) == backup_id.encode(), deadline,
                f"waiting for the marker key {key} to reach this replica",
                lambda: f"the marker key {key} written on the primary did not reach this replica before the "
                        "timeout; nothing was kept", progress, interval=0.05)
    return {"key": key, "value": backup_id}


def _check_role(spec: rc.ConnectionSpec) -> rc.Role:
    """The user the after-restore checks (DBSIZE, the cluster_state wait, the marker's GET) run as:
    admin when its password is given, else the application user, so `restore --verify-only` works
    with app credentials only. The app ACL (redis_conf/acl.py APP_RULES: +@all -@dangerous) allows
    all of them: CLUSTER INFO and CLUSTER NODES carry only the STALE flag, no ADMIN/DANGEROUS
    (redis/redis src/commands/cluster-info.json, cluster-nodes.json at 7.0.15, 7.2.6, 7.4.1)."""
    return "admin" if spec.admin_password else "app"


def read_marker(spec: rc.ConnectionSpec, manifest: dict[str, Any]) -> str | None:
    """The marker's value on the server now (None: no such key)."""
    key = manifest["marker"]["key"]
    role = _check_role(spec)
    client = rc.node_client(spec, spec.hosts[0], role) if spec.mode == "cluster" else rc.client(spec, role)
    try:
        value = client.get(key)
    finally:
        client.close()
    return None if value is None else (value.decode() if isinstance(value, bytes) else str(value))


def check_restored(spec: rc.ConnectionSpec, manifest: dict[str, Any], actual: int) -> str:
    """The restored server holds this backup's marker key, then the key-count check."""
    marker = manifest.get("marker")
    if marker is not None:
        found = read_marker(spec, manifest)
        if found != marker["value"]:
            raise OperationError(
                f"the server does not hold this backup's marker key {marker['key']} = {marker['value']!r} "
                f"(found {found!r}, {actual} keys): Redis did not load the restored files (it started empty, "
                "or from other files or another backup)")
    verdict = check_key_count(manifest, actual)
    return verdict if marker is not None else verdict + " (backup without marker key: data not proven loaded)"


def _wait_no_rewrite(client: Any, deadline: float, progress: Progress) -> None:
    """An AOF rewrite replaces the base and increment files under the copy: wait until none runs."""
    def no_rewrite() -> bool:
        info = client.info("persistence")
        return not int(info.get("aof_rewrite_in_progress", 0)) and not int(info.get("aof_rewrite_scheduled", 0))

    _wait_until(no_rewrite, deadline, "waiting for the AOF rewrite to finish",
                lambda: "an AOF rewrite is still running (aof_rewrite_in_progress:1) at the timeout; nothing was "
                        "kept, rerun later or raise --timeout", progress)


def aof_written(info: Mapping[str, Any]) -> bool:
    """Whether every write acknowledged before this INFO is in the AOF file (not only in Redis'
    AOF buffer). With appendfsync everysec Redis replies to a write but postpones writing its AOF
    buffer by up to 2 s while a background fsync is still running (flushAppendOnlyFile in
    src/aof.c: `sync_in_progress = aofFsyncInProgress()`, "postpone the flush"). An empty buffer
    proves it; so does no pending fsync job (aof_pending_bio_fsync, the same bio counter
    aofFsyncInProgress reads), since the flush before this reply then writes the buffer: a
    loaded primary rarely shows an empty buffer, but its fsync jobs are short."""
    return int(info.get("aof_buffer_length", 0)) == 0 or int(info.get("aof_pending_bio_fsync", 0)) == 0


def _wait_aof_written(client: Any, deadline: float, progress: Progress) -> None:
    """Until the writes made so far (the marker key, all before the backup) are in the AOF file:
    a copy taken earlier can miss them, and a restore then loads an AOF without the marker."""
    _wait_until(lambda: aof_written(client.info("persistence")), deadline,
                "waiting for Redis to write its AOF buffer",
                lambda: "Redis kept postponing its AOF write (an fsync still running) until the timeout; nothing "
                        "was kept, rerun later or raise --timeout", progress, interval=0.05)


def _aof_manifest(aof_dir: Path) -> tuple[str, str, list[str]]:
    """(manifest file name, its text, the base and increment files it names)."""
    manifests = sorted(aof_dir.glob("*.manifest"))
    if not manifests:
        raise OperationError(f"{aof_dir} has no AOF manifest file; cannot copy a consistent AOF")
    text = manifests[0].read_bytes().decode()
    names = []
    for line in text.splitlines():
        parts = shlex.split(line)
        fields = dict(zip(parts[::2], parts[1::2], strict=False))
        # History files (type h) are the leftovers of a finished rewrite that Redis deletes.
        if "file" in fields and fields.get("type") in ("b", "i"):
            names.append(fields["file"])
    if not names:
        raise OperationError(f"{manifests[0]} names no base or increment file")
    return manifests[0].name, text, names


def _copy_aof(client: Any, src: Path, dst: Path, work: Path, deadline: float,
              progress: Progress) -> list[dict[str, Any]]:
    """The AOF manifest first, then exactly the files it names; retried once if a rewrite changed it."""
    for attempt in (1, 2):
        _wait_no_rewrite(client, deadline, progress)
        _wait_aof_written(client, deadline, progress)
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(mode=0o700)
        name, text, parts = _aof_manifest(src)
        files: list[dict[str, Any]] = []
        try:
            for i, part in enumerate(parts):
                progress(f"copying {src.name}/{part}", (i + 1) / (len(parts) + 1))
                _copy_fsync(src / part, dst / part)
                files.append(_file_entry(work, dst / part))
        except FileNotFoundError:
            changed = True  # a rewrite finished and deleted a part between reading the manifest and copying it
        else:
            info = client.info("persistence")
            changed = (_aof_manifest(src)[1] != text or bool(int(info.get("aof_rewrite_in_progress", 0))))
        if not changed:
            (dst / name).write_bytes(text.encode())
            _fsync_file(dst / name)
            files.append(_file_entry(work, dst / name))
            return sorted(files, key=lambda f: f["path"])
        if attempt == 1:
            progress("an AOF rewrite changed the AOF during the copy; copying again", None)
    raise OperationError(f"the AOF in {src} changed twice during the copy (AOF rewrites); nothing was kept, rerun")


def _file_entry(root: Path, path: Path) -> dict[str, Any]:
    os.chmod(path, 0o600)
    return {"path": str(path.relative_to(root)), "size": path.stat().st_size, "sha256": sha256_of(path)}


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_fsync(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    _fsync_file(dst)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    _fsync_file(tmp)
    os.replace(tmp, path)


# --- list / retention ------------------------------------------------------------------------

def load_manifest(path: Path) -> dict[str, Any]:
    mf = Path(path) / MANIFEST
    try:
        data = json.loads(mf.read_text())
    except FileNotFoundError:
        raise UsageError(f"--from {path}: no {MANIFEST}; expected a directory written by `redisops backup`") from None
    except json.JSONDecodeError as exc:
        raise OperationError(f"{mf} is not valid JSON ({exc}): the backup is damaged") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), list):
        raise OperationError(f"{mf}: not a redisops backup manifest (format {FORMAT})")
    return data


def _size_problems(path: Path, manifest: dict[str, Any]) -> list[str]:
    """The cheap part of verify_backup: every file the manifest lists exists with its size."""
    problems = []
    for f in manifest["files"]:
        p = path / str(f.get("path"))
        try:
            size = p.stat().st_size
        except OSError:
            problems.append(f"{f.get('path')}: missing")
            continue
        if size != f.get("size"):
            problems.append(f"{f.get('path')}: size {size}, manifest says {f.get('size')}")
    return problems


def list_backups(directory: Path) -> list[dict[str, Any]]:
    """Backups in `directory`, oldest first; a damaged one (bad manifest, a file missing or of the
    wrong size) carries "error" instead of its details."""
    out: list[dict[str, Any]] = []
    directory = Path(directory)
    if not directory.is_dir():
        return out
    for p in sorted(directory.iterdir()):
        if not (p.is_dir() and p.name.startswith(PREFIX) and not p.name.endswith(PARTIAL)
                and (p / MANIFEST).is_file()):
            continue
        try:
            m = load_manifest(p)
        except (UsageError, OperationError) as exc:
            out.append({"path": str(p), "name": p.name, "error": str(exc)})
            continue
        problems = _size_problems(p, m)
        if problems:
            out.append({"path": str(p), "name": p.name, "error": "damaged: " + "; ".join(problems)})
            continue
        out.append({"path": str(p), "name": p.name, "created": m.get("created"), "keys": m.get("keys"),
                    "size": sum(int(f.get("size", 0)) for f in m["files"]), "redis_version": m.get("redis_version"),
                    "aof": bool(m.get("aof_included")), "source": m.get("source")})
    return out


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` intact backups (names sort by time).

    Only backups whose files all match the manifest's sizes count towards `keep` (a crash can leave
    a short dump.rdb behind a complete manifest); damaged ones are neither counted nor deleted.
    """
    if keep < 1:
        raise UsageError(f"--keep {keep}: expected a number of backups >= 1")
    complete = [Path(b["path"]) for b in list_backups(directory) if "error" not in b]
    doomed = complete[:-keep] if len(complete) > keep else []
    for p in doomed:
        shutil.rmtree(p)
    return doomed


# --- verification and restore ----------------------------------------------------------------

def verify_backup(path: Path, progress: Progress = _noop) -> tuple[dict[str, Any], list[str]]:
    """(manifest, problems): every file's size and SHA-256, then the Redis check tools."""
    path = Path(path)
    manifest = load_manifest(path)
    problems = []
    entries = manifest["files"]
    for i, f in enumerate(entries):
        progress(f"checksum {f['path']}", i / max(1, len(entries)))
        p = path / f["path"]
        if not p.is_file():
            problems.append(f"{f['path']}: missing")
            continue
        if p.stat().st_size != f["size"]:
            problems.append(f"{f['path']}: size {p.stat().st_size}, manifest says {f['size']}")
            continue
        digest = sha256_of(p)
        if digest != f["sha256"]:
            problems.append(f"{f['path']}: SHA-256 {digest[:16]}... does not match the manifest {f['sha256'][:16]}...")
    listed = {f["path"] for f in entries}
    for extra in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST):
        if str(extra.relative_to(path)) not in listed:
            problems.append(f"{extra.relative_to(path)}: not in the manifest")
    if not problems:
        progress("redis-check-rdb", None)
        rdb = check_rdb(path / "dump.rdb")
        if not rdb.ok:
            problems.append(f"dump.rdb fails redis-check-rdb: {_last_lines(rdb.output)}")
        elif manifest.get("keys") is not None and rdb.keys != manifest["keys"]:
            problems.append(f"dump.rdb holds {rdb.keys} keys, manifest says {manifest['keys']}")
        if (path / "appendonlydir").is_dir():
            progress("redis-check-aof", None)
            manifests = list((path / "appendonlydir").glob("*.manifest"))
            ok, out = check_aof(manifests[0]) if manifests else (False, "no AOF manifest")
            if not ok:
                problems.append(f"appendonlydir fails redis-check-aof: {_last_lines(out)}")
    return manifest, problems


def _shard_of(client: Any) -> dict[str, Any]:
    """The shard a cluster node holds data of: its own slots (a primary) or its primary's."""
    from redisops.cluster import coverage

    cov = coverage(client)
    me = next(n for n in cov.nodes if "myself" in n.flags)
    owner = me if me.role == "primary" else next((n for n in cov.nodes if n.node_id == me.primary_id), me)
    return {"node_id": me.node_id, "role": me.role, "slots": [list(r) for r in owner.slots],
            "config_file": "nodes.conf", "shards": [[list(r) for r in p.slots] for p in cov.primaries],
            "replicas": [n.address for n in cov.nodes if n.primary_id == me.node_id and not n.failed],
            "primary": owner.address}


def _slots_in_nodes_conf(path: Path) -> list[list[int]]:
    """The slots `myself` serves in a stopped node's cluster config file (CLUSTER NODES format)."""
    from redisops.cluster import parse_cluster_nodes

    if not path.is_file():
        raise OperationError(f"{path} does not exist: not the data dir of a cluster node (or its cluster config "
                             "file is elsewhere); nothing was changed")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("vars ")]
    nodes = parse_cluster_nodes("\n".join(lines))
    me = next((n for n in nodes if "myself" in n.flags), None)
    if me is None:
        raise OperationError(f"{path} names no `myself` node; nothing was changed")
    if me.role != "primary":
        raise OperationError(_REPLICA_REFUSED.format(where=f"{path} (myself,slave of {me.primary_id})"))
    return [list(r) for r in me.slots]


# A replica's data is replaced by a full sync from its primary as soon as it starts: a restore into
# it is lost, and with its shard's primary running nothing would be restored at all.
_REPLICA_REFUSED = ("{where} is not `myself,master`: restore a cluster shard into the primary serving its slots "
                    "(a replica discards its data on the next full sync from its primary); nothing was changed")


def _ranges(slots: list[list[int]]) -> str:
    return ",".join(f"{lo}-{hi}" for lo, hi in slots) or "none"


def _check_layout(manifest: dict[str, Any], current: list[list[int]], where: str) -> None:
    backed_up = [list(r) for r in manifest["cluster"]["slots"]]
    if sorted(backed_up) != sorted(current):
        raise OperationError(f"slot layout mismatch, nothing was changed: the backup holds slots {_ranges(backed_up)}, "
                             f"{where} serves {_ranges(current)}. A node deletes or takes over keys of slots it does "
                             "not own: restore each shard's backup into the node serving its slots (or reshard first)")


def _is_listening(address: tuple[str, int], timeout: float) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class RestoreResult:
    data_dir: Path
    moved_aside: Path | None
    restored: list[str]
    verified_keys: int | None = None
    expected_keys: int | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)


def restore(spec: rc.ConnectionSpec, from_dir: Path, *, data_dir: Path | None = None, force: bool = False,
            wait: float = 0.0, progress: Progress = _noop) -> RestoreResult:
    from_dir = Path(from_dir)
    manifest, problems = verify_backup(from_dir, progress)
    if problems:
        raise OperationError("backup verification failed, nothing was changed:\n  " + "\n  ".join(problems))
    address = spec.hosts[0] if spec.mode in ("single", "cluster") else None
    if address is None:
        raise UsageError("restore works on one self-managed server: set REDIS_URL to that server (redis:// or "
                         "rediss://), restore the primary and let replicas resync")
    if spec.mode == "cluster" and "cluster" not in manifest:
        raise UsageError(f"{from_dir} is the backup of a server outside a cluster: a cluster node refuses keys of "
                         "slots it does not own; restore it into a single server")
    if spec.mode == "single" and "cluster" in manifest:
        raise UsageError(f"{from_dir} is the backup of one cluster shard (slots "
                         f"{_ranges(manifest['cluster']['slots'])}): restore it into the cluster node serving "
                         "those slots (REDIS_CLUSTER=true, REDIS_URL of that node)")
    running = _is_listening(address, spec.timeout_s)
    dir_conf = None
    replicas: list[tuple[str, int]] = []
    if running and spec.mode == "cluster":
        # Before anything is stopped: the node must be a primary serving exactly the backup's slots.
        admin = rc.node_client(spec, address, "admin")
        try:
            shard = _shard_of(admin)
            if shard["role"] != "primary":
                raise OperationError(_REPLICA_REFUSED.format(where=f"the node at {address[0]}:{address[1]}"))
            _check_layout(manifest, shard["slots"], f"the node at {address[0]}:{address[1]}")
            replicas = shard["replicas"]
        finally:
            admin.close()
    if running:
        if not force:
            raise OperationError(
                f"Redis at {address[0]}:{address[1]} is running: restoring under a running server is undone by its "
                "next save. Stop it first (docker compose stop redis / systemctl stop redis-server) and rerun, "
                "or pass --force to stop it with SHUTDOWN NOSAVE (admin user)")
        if replicas:
            # A replica promoted while the primary is down claims the slots with a higher
            # configEpoch; the restored node would come back as its replica and full-sync the
            # restored data away (cluster spec, configEpoch rules; redis/redis#8614).
            _hold_failover(spec, replicas, progress)
        # In cluster mode exactly the node in REDIS_URL (a cluster client would pick any node).
        admin = rc.node_client(spec, address, "admin") if spec.mode == "cluster" else rc.client(spec, "admin")
        try:
            dir_conf = _config_get(admin, "dir")
            progress("SHUTDOWN NOSAVE", None)
            try:
                admin.execute_command("SHUTDOWN", "NOSAVE")
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # the server closing the connection is the success reply of SHUTDOWN
            except redis.ResponseError as exc:
                raise OperationError(f"SHUTDOWN NOSAVE refused ({exc}); stop Redis yourself and rerun") from None
        finally:
            admin.close()
        _wait_until(lambda: not _is_listening(address, 0.2), time.monotonic() + 30,
                    "waiting for Redis to stop listening",
                    lambda: "Redis still listens 30 s after SHUTDOWN NOSAVE; nothing was changed", progress,
                    interval=0.05)
    target = Path(data_dir) if data_dir is not None else (Path(dir_conf) if dir_conf else None)
    if target is None:
        raise UsageError("--data-dir is required: the directory the stopped Redis loads from "
                         "(for a container, the volume's path on this host)")
    if not target.is_dir():
        raise UsageError(f"--data-dir {target}: not a directory")
    if spec.mode == "cluster":
        # The stopped node comes back with the slots of its own nodes.conf.
        _check_layout(manifest, _slots_in_nodes_conf(target / manifest["cluster"].get("config_file", "nodes.conf")),
                      f"{target}/nodes.conf")
    dbfilename = manifest.get("dbfilename") or "dump.rdb"
    aofdir = manifest.get("appenddirname") or "appendonlydir"
    result = RestoreResult(target, None, [], expected_keys=manifest.get("keys"))
    # Everything is built, checked, owned and fsynced under temp names in the data dir first; the
    # live files are only touched by renames, and put back if anything fails.
    staged = {dbfilename: target / f".{dbfilename}.restore", aofdir: target / f".{aofdir}.restore"}
    uid, gid = _owner(target, [dbfilename, aofdir])
    try:
        for path in staged.values():
            _remove(path)  # left over by an interrupted restore
        progress(f"staging {dbfilename}", 0.3)
        _copy_fsync(from_dir / "dump.rdb", staged[dbfilename])
        os.chmod(staged[dbfilename], 0o600)
        result.restored.append(dbfilename)
        if (from_dir / "appendonlydir").is_dir():
            shutil.copytree(from_dir / "appendonlydir", staged[aofdir])
            result.restored.append(aofdir + "/")
        else:
            # Redis 7 with appendonly yes and no AOF on disk starts EMPTY and ignores dump.rdb. An
            # AOF whose base is the restored RDB is loaded with AOF on and ignored with it off.
            # Without an AOF in the backup the server's AOF is moved aside too: Redis prefers it.
            synthesize_aof(from_dir / "dump.rdb", staged[aofdir], manifest.get("appendfilename") or "appendonly.aof")
            result.restored.append(aofdir + "/ (built from the RDB)")
        _seal_tree(staged[aofdir])
        for name, path in staged.items():
            warning = _chown_tree(path, uid, gid, target / name)
            if warning:
                result.warnings.append(warning)
        _fsync_dir(target)
        progress("replacing the data files", 0.7)
        result.moved_aside = _swap(target, staged, address)
    finally:
        for path in staged.values():
            _remove(path)
    if wait <= 0:
        if replicas:
            result.warnings.append(
                "automatic failover is off on the replicas " + ", ".join(f"{h}:{p}" for h, p in replicas)
                + ": once the primary is back, run `CONFIG SET cluster-replica-no-failover no` on each (admin)")
        warnings = "".join(f"\nwarning: {w}" for w in result.warnings)
        result.message = ("files restored; start Redis now (docker compose start redis / systemctl start "
                          "redis-server) and check the key count with `redisops restore --from "
                          f"{from_dir} --verify-only`") + warnings
        return result
    deadline = time.monotonic() + wait
    result.verified_keys = wait_and_count(spec, wait, progress)
    if spec.mode == "cluster":
        if replicas:
            _release_failover(spec, replicas, deadline, result.warnings, progress)
        _check_still_primary(spec, manifest)
        _wait_cluster_ok(spec, deadline, progress)
    verdict = check_restored(spec, manifest, result.verified_keys)
    warnings = "".join(f"\nwarning: {w}" for w in result.warnings)
    result.message = f"Redis is back: {verdict}" + warnings
    return result


def _hold_failover(spec: rc.ConnectionSpec, replicas: list[tuple[str, int]], progress: Progress) -> None:
    """CONFIG SET cluster-replica-no-failover yes on every replica of the shard, before the stop."""
    for address in replicas:
        progress(f"cluster-replica-no-failover yes on {address[0]}:{address[1]}", None)
        client = rc.node_client(spec, address, "admin")
        try:
            client.config_set("cluster-replica-no-failover", "yes")
        except redis.RedisError as exc:
            raise OperationError(f"cannot turn automatic failover off on the replica {address[0]}:{address[1]} "
                                 f"({exc}); stop the shard's replicas first, or fix the admin user; nothing "
                                 "was changed") from None
        finally:
            client.close()


def _release_failover(spec: rc.ConnectionSpec, replicas: list[tuple[str, int]], deadline: float,
                      warnings: list[str], progress: Progress) -> None:
    """Failover back on, once each replica no longer flags its primary FAIL: a replica whose primary
    is still flagged FAIL starts an election at once, link up or not (a primary with slots loses the
    flag only cluster-node-timeout x 2 after it was set, clusterNodeCleanupFailureReports/clearNodeFailureIfNeeded)."""
    from redisops.cluster import coverage

    for address in replicas:
        client = rc.node_client(spec, address, "admin")
        try:
            while True:
                nodes = coverage(client).nodes
                me = next(n for n in nodes if "myself" in n.flags)
                primary = next((n for n in nodes if n.node_id == me.primary_id), None)
                if primary is not None and not primary.failed and not primary.suspected:
                    break
                if time.monotonic() > deadline:
                    warnings.append(f"the replica {address[0]}:{address[1]} still flags its primary failed: "
                                    "automatic failover is left off there; once CLUSTER NODES shows the primary "
                                    "without `fail`, run `CONFIG SET cluster-replica-no-failover no` (admin)")
                    break
                progress(f"waiting for {address[0]}:{address[1]} to clear the primary's FAIL flag", None)
                time.sleep(0.1)
            if primary is None or primary.failed or primary.suspected:
                continue
            client.config_set("cluster-replica-no-failover", "no")
        except redis.RedisError as exc:
            warnings.append(f"automatic failover is still off on {address[0]}:{address[1]} ({exc}): run "
                            "`CONFIG SET cluster-replica-no-failover no` there (admin)")
        finally:
            client.close()


def _wait_cluster_ok(spec: rc.ConnectionSpec, deadline: float, progress: Progress) -> None:
    """A restarted primary answers keyed commands (the marker's GET) with CLUSTERDOWN until its own
    cluster_state is ok: at least CLUSTER_WRITABLE_DELAY (2 s) after it starts, and a rejoin delay of
    cluster-node-timeout (clamped to 0.5-5 s) after it last counted fewer than a quorum of reachable
    primaries (among_minority_time), as while it rejoins
    (clusterUpdateState, src/cluster.c up to 7.2, src/cluster_legacy.c from 7.4). DBSIZE answers earlier."""
    from redisops.cluster import coverage

    address = spec.hosts[0]
    client = rc.node_client(spec, address, _check_role(spec))
    state = ""

    def cluster_ok() -> bool:
        nonlocal state
        state = coverage(client).state
        return state == "ok"

    try:
        _wait_until(cluster_ok, deadline, f"waiting for {address[0]}:{address[1]} to report cluster_state ok",
                    lambda: f"the restored node {address[0]}:{address[1]} still reports cluster_state {state} at "
                            "the --wait deadline; the files are in place: once CLUSTER INFO shows cluster_state:ok, "
                            "run `redisops restore --verify-only`", progress)
    finally:
        client.close()


def _check_still_primary(spec: rc.ConnectionSpec, manifest: dict[str, Any]) -> None:
    """After the restart the node must still be the primary of the backup's slots (CLUSTER NODES,
    as the after-restore checks' user: a stopped node is restored without the admin password)."""
    address = spec.hosts[0]
    client = rc.node_client(spec, address, _check_role(spec))
    try:
        shard = _shard_of(client)
    finally:
        client.close()
    if shard["role"] != "primary":
        raise OperationError(f"the restored node {address[0]}:{address[1]} came back as a replica: another node "
                             "took its slots while it was down and it resyncs from it, the restored data is lost")
    _check_layout(manifest, shard["slots"], f"the restored node {address[0]}:{address[1]}")


def _swap(target: Path, staged: dict[str, Path], address: tuple[str, int]) -> Path | None:
    """Move the live files aside and the staged ones in, by rename; undo it all on any failure.

    The port is checked before every rename: a supervisor (Docker restart policy, systemd
    Restart=) may have started Redis again after SHUTDOWN, and a running server would write its
    dataset over the restored files.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = target / f"pre-restore-{stamp}"
    n = 1
    while aside.exists():
        n += 1
        aside = target / f"pre-restore-{stamp}-{n}"
    set_aside: list[str] = []
    placed: list[str] = []
    try:
        for name in staged:
            if (target / name).exists() or (target / name).is_symlink():
                aside.mkdir(exist_ok=True, mode=0o700)
                _ensure_stopped(address)
                os.replace(target / name, aside / name)
                set_aside.append(name)
        for name, path in staged.items():
            _ensure_stopped(address)
            os.replace(path, target / name)
            placed.append(name)
        _fsync_dir(target)
        if set_aside:
            _fsync_dir(aside)
    except BaseException as exc:
        failed = []
        for name in reversed(placed):
            try:
                os.replace(target / name, staged[name])
            except OSError as err:
                failed.append(f"{target / name}: {err}")
        for name in reversed(set_aside):
            try:
                os.replace(aside / name, target / name)
            except OSError as err:
                failed.append(f"{aside / name}: {err}")
        if failed:
            raise OperationError(f"restore failed ({exc}) and putting the previous files back failed too "
                                 f"({'; '.join(failed)}): they are in {aside}; move them back by hand") from exc
        try:
            if aside.is_dir() and not any(aside.iterdir()):
                aside.rmdir()
            _fsync_dir(target)
        except OSError:
            pass
        raise
    return aside if set_aside else None


def _ensure_stopped(address: tuple[str, int]) -> None:
    if _is_listening(address, 0.5):
        raise OperationError(f"Redis at {address[0]}:{address[1]} is listening again (a supervisor restarted it "
                             "after SHUTDOWN?); nothing was replaced. Stop it through its supervisor (docker "
                             "compose stop redis / systemctl stop redis-server) and rerun")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def synthesize_aof(rdb: Path, directory: Path, appendfilename: str) -> None:
    """A multi-part AOF (Redis >= 7.0) whose only part is `rdb` as its RDB-format base."""
    directory.mkdir(mode=0o700)
    base = f"{appendfilename}.1.base.rdb"
    shutil.copyfile(rdb, directory / base)
    (directory / f"{appendfilename}.manifest").write_text(f"file {base} seq 1 type b\n")
    ok, out = check_aof(directory / f"{appendfilename}.manifest")
    if not ok:
        shutil.rmtree(directory, ignore_errors=True)
        raise OperationError(f"the AOF built from the RDB fails redis-check-aof: {_last_lines(out)}")


def _seal_tree(directory: Path) -> None:
    """0700 / 0600, every file and the directory fsynced."""
    os.chmod(directory, 0o700)
    for p in directory.rglob("*"):
        if p.is_file():
            os.chmod(p, 0o600)
            _fsync_file(p)
    _fsync_dir(directory)


def _owner(target: Path, names: list[str]) -> tuple[int, int]:
    """The owner of the files being replaced or, on a fresh volume, of the data dir: Redis runs as
    its own user and must read the 0600 files."""
    for name in names:
        if (target / name).exists():
            st = (target / name).stat()
            return st.st_uid, st.st_gid
    st = target.stat()
    return st.st_uid, st.st_gid


def _chown_tree(path: Path, uid: int, gid: int, shown: Path) -> str | None:
    """chown `path` (recursively) to uid:gid; a warning naming `shown` when that is not allowed."""
    errors = []
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        st = p.lstat()
        if (st.st_uid, st.st_gid) == (uid, gid):
            continue
        try:
            os.chown(p, uid, gid)
        except OSError as exc:
            errors.append(exc.strerror or str(exc))
    if not errors:
        return None
    return (f"{shown} could not be given the owner {uid}:{gid} of the data it replaces ({errors[0]}): a Redis "
            f"running as that user cannot read it; run `chown -R {uid}:{gid} {shown}` as root before starting "
            "Redis")


def verify_server(spec: rc.ConnectionSpec, manifest: dict[str, Any], wait: float,
                  progress: Progress = _noop) -> str | None:
    """`restore --verify-only` against the server: its key count and this backup's marker key, or
    None when the server does not answer within `wait` (the backup was verified offline). A cluster
    node's marker is read once its cluster_state is ok, as after a restore (_wait_cluster_ok)."""
    deadline = time.monotonic() + wait
    try:
        count = wait_and_count(spec, wait, progress)
    except OperationError:
        return None
    if spec.mode == "cluster":
        _wait_cluster_ok(spec, deadline, progress)
    return check_restored(spec, manifest, count)


def wait_and_count(spec: rc.ConnectionSpec, wait: float, progress: Progress = _noop) -> int:
    deadline = time.monotonic() + wait
    role = _check_role(spec)
    last: Exception | None = None
    while time.monotonic() < deadline:
        progress("waiting for Redis to load the data", None)
        # A cluster node's own key count (a cluster client would sum every shard).
        client = rc.node_client(spec, spec.hosts[0], role) if spec.mode == "cluster" else rc.client(spec, role)
        try:
            return int(client.dbsize())
        except redis.BusyLoadingError as exc:
            last = exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            last = exc
        finally:
            client.close()
        time.sleep(0.1)
    raise OperationError(f"Redis did not answer within {wait:.0f} s after the restore ({last}); the files are in "
                         "place: start it and run `redisops restore --verify-only`")


def check_key_count(manifest: dict[str, Any], actual: int) -> str:
    expected = manifest.get("keys")
    if expected is None:
        return f"{actual} keys (the manifest has no key count)"
    if actual == expected:
        return f"{actual} keys, as in the backup"
    expires = int(manifest.get("expires") or 0)
    # The key count is read from the RDB; an AOF copied after the BGSAVE also holds the writes
    # made since, and Redis loads the AOF.
    if actual > expected and manifest.get("aof_included"):
        return (f"{actual} keys, {actual - expected} more than the backup's RDB: its AOF holds writes made "
                "after the BGSAVE")
    # Keys with a TTL that ran out between backup and restore are gone legitimately.
    if expected - expires <= actual < expected:
        return f"{actual} keys of {expected}: {expected - actual} keys with a TTL expired since the backup"
    raise OperationError(f"key count after restore is {actual}, the backup holds {expected} "
                         f"({expires} with a TTL)")
