"""A function that runs too long (BUSY) is stopped with FUNCTION KILL by the admin, on a real
redis-server with the rendered ACL (docs/runbooks/troubleshooting.md, "BUSY").

Redis keeps the two kill commands apart (redis/redis src/script.c, scriptKill): SCRIPT KILL on a
running *function* answers the BUSY error ("You can only call FUNCTION KILL or SHUTDOWN NOSAVE",
`shared.slowscripterr`), FUNCTION KILL on an EVAL script answers the reverse; a script that already
wrote is UNKILLABLE by both. The limiter runs as a function (FCALL of the `ratelimit` library), so
the runbook's command is FUNCTION KILL, run as admin: the application user may not run it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from tests.integration._redisops_servers import rendered_server, requires_redis

pytestmark = [pytest.mark.slow, requires_redis]

# Read-only, so it stays killable (a function that wrote is UNKILLABLE: script.c SCRIPT_WRITE_DIRTY).
SPIN = "#!lua name=spin_probe\nredis.register_function{function_name='spin_probe', " \
       "callback=function() while true do end end, flags={'no-writes'}}"
BUSY_THRESHOLD_MS = 50  # busy-reply-threshold (lua-time-limit): when other clients start getting BUSY


def _wait_busy(client: redis.Redis, deadline_s: float = 10.0) -> str:
    """Until Redis answers BUSY (the function passed busy-reply-threshold): an event, not a sleep."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            client.ping()
        except redis.ResponseError as exc:
            if str(exc).startswith("BUSY"):
                return str(exc)
            raise
    raise AssertionError("the spinning function never made Redis answer BUSY")


def test_function_kill_stops_a_busy_function_script_kill_does_not_and_the_app_may_not(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv") as srv:
        admin, runner, app = srv.admin(), srv.admin(), srv.app()
        try:
            admin.config_set("busy-reply-threshold", BUSY_THRESHOLD_MS)
            admin.function_load(SPIN, replace=True)
            app.ping()  # authenticated before the server turns busy
            outcome: dict[str, BaseException] = {}

            def spin() -> None:
                try:
                    runner.fcall("spin_probe", 0)
                except BaseException as exc:  # handed to the test thread
                    outcome["error"] = exc

            thread = threading.Thread(target=spin, daemon=True)
            thread.start()
            busy = _wait_busy(admin)
            assert "FUNCTION KILL" in busy  # Redis names the command itself
            # SCRIPT KILL cannot stop a function (script.c: "Kill a function with 'SCRIPT KILL' is not allow").
            with pytest.raises(redis.ResponseError, match=r"^BUSY.*FUNCTION KILL"):
                admin.execute_command("SCRIPT", "KILL")
            # The application credential may not kill anything: the ACL check comes first.
            with pytest.raises(redis.exceptions.NoPermissionError):
                app.execute_command("FUNCTION", "KILL")
            assert thread.is_alive()
            assert admin.execute_command("FUNCTION", "KILL") in (b"OK", "OK", True)
            thread.join(timeout=10)
            assert not thread.is_alive()
            assert "killed" in str(outcome["error"]).lower()
            assert admin.ping() is True and app.ping() is True
            admin.function_delete("spin_probe")
        finally:
            for c in (admin, runner, app):
                c.close()
