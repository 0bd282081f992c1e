"""The backup copies the AOF only once Redis has written what it acknowledged.

With appendfsync everysec Redis replies to a write and may keep it in its AOF buffer for up to
2 s while a background fsync runs (flushAppendOnlyFile, src/aof.c). A copy taken then misses the
backup's own marker key; the restore loads that AOF and finds no marker. The live race is rare
(a slow fsync), so the waiting is proven here on the INFO fields it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from redisops import backup as bk
from redisops.errors import OperationError

POSTPONED = {"aof_buffer_length": 412, "aof_pending_bio_fsync": 1}


class Info:
    """A client whose INFO persistence answers `replies` in turn, then the last one forever."""

    def __init__(self, *replies: dict[str, int]) -> None:
        self.replies, self.asked = list(replies), 0

    def info(self, section: str) -> dict[str, int]:
        assert section == "persistence"
        self.asked += 1
        return self.replies[min(self.asked, len(self.replies)) - 1]


@pytest.mark.parametrize("written", [
    {"aof_buffer_length": 0, "aof_pending_bio_fsync": 1},  # the postponed write happened
    {"aof_buffer_length": 57, "aof_pending_bio_fsync": 0},  # no fsync running: this flush writes
])
def test_waits_while_the_write_is_postponed(written: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bk.time, "sleep", lambda _s: None)
    said: list[str] = []
    client = Info(POSTPONED, POSTPONED, written)
    bk._wait_aof_written(client, deadline=float("inf"), progress=lambda msg, _f: said.append(msg))
    assert client.asked == 3
    assert said == ["waiting for Redis to write its AOF buffer"] * 2


def test_a_write_postponed_past_the_deadline_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bk.time, "sleep", lambda _s: None)
    with pytest.raises(OperationError, match="postponing its AOF write"):
        bk._wait_aof_written(Info(POSTPONED), deadline=0.0, progress=lambda *_a: None)


def test_the_aof_copy_starts_only_after_the_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "appendonlydir"
    src.mkdir()
    (src / "appendonly.aof.1.base.rdb").write_bytes(b"base")
    (src / "appendonly.aof.1.incr.aof").write_bytes(b"incr")
    (src / "appendonly.aof.manifest").write_text("file appendonly.aof.1.base.rdb seq 1 type b\n"
                                                 "file appendonly.aof.1.incr.aof seq 1 type i\n")
    order: list[str] = []
    monkeypatch.setattr(bk, "_wait_no_rewrite", lambda *_a: order.append("no rewrite"))
    monkeypatch.setattr(bk, "_wait_aof_written", lambda *_a: order.append("written"))
    real_copy = bk._copy_fsync

    def copy(s: Path, d: Path) -> None:
        order.append(f"copy {s.name}")
        real_copy(s, d)

    monkeypatch.setattr(bk, "_copy_fsync", copy)
    client: Any = Info({"aof_rewrite_in_progress": 0})
    (tmp_path / "work").mkdir()
    files = bk._copy_aof(client, src, tmp_path / "work" / "appendonlydir", tmp_path / "work", float("inf"),
                         lambda *_a: None)
    assert order == ["no rewrite", "written", "copy appendonly.aof.1.base.rdb", "copy appendonly.aof.1.incr.aof"]
    assert [f["path"] for f in files] == ["appendonlydir/appendonly.aof.1.base.rdb",
                                          "appendonlydir/appendonly.aof.1.incr.aof",
                                          "appendonlydir/appendonly.aof.manifest"]
