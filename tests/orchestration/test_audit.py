"""The audit: hash chain verification, migrations, the single writer under concurrency, loud failure."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from orchestration.audit.log import AuditLog, Event, Write
from orchestration.audit.read import verify_chain
from orchestration.audit.schema import MIGRATIONS, migrate, schema_version
from orchestration.errors import AuditError
from orchestration.patterns.delegate import delegate
from orchestration.runtime import Runtime
from tests.conftest import team

pytestmark = pytest.mark.anyio


async def write_events(db: Path, n: int) -> None:
    with AuditLog(db) as log:
        for i in range(n):
            await log.event("note", None, {"i": i, "text": f"event {i}"})


def edit(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()


async def test_an_untouched_chain_verifies(db: Path) -> None:
    await write_events(db, 5)
    report = verify_chain(db)
    assert report.ok and report.events == 5 and report.head_seq == 5


async def test_an_edited_event_is_caught(db: Path) -> None:
    await write_events(db, 5)
    edit(db, 'update events set payload = \'{"i":2,"text":"forged"}\' where seq = 3')
    report = verify_chain(db)
    assert not report.ok
    assert any("event 3" in p and "edited" in p for p in report.problems)


async def test_a_deleted_event_is_caught(db: Path) -> None:
    await write_events(db, 5)
    edit(db, "delete from events where seq = 2")
    report = verify_chain(db)
    assert not report.ok and any("event 3" in p for p in report.problems)


async def test_a_deleted_last_event_is_caught_by_the_head(db: Path) -> None:
    await write_events(db, 5)
    edit(db, "delete from events where seq = 5")
    report = verify_chain(db)
    assert not report.ok and any("head" in p for p in report.problems)


async def test_reordered_events_are_caught(db: Path) -> None:
    await write_events(db, 5)
    conn = sqlite3.connect(db)
    with conn:  # swap the contents of events 2 and 4, keeping each row's own hash
        a = conn.execute("select payload, hash, prev_hash from events where seq = 2").fetchone()
        b = conn.execute("select payload, hash, prev_hash from events where seq = 4").fetchone()
        conn.execute("update events set payload = ?, hash = ?, prev_hash = ? where seq = 2", b)
        conn.execute("update events set payload = ?, hash = ?, prev_hash = ? where seq = 4", a)
    conn.close()
    report = verify_chain(db)
    assert not report.ok and len(report.problems) >= 2


async def test_migrations_apply_once_and_are_recorded(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    assert len(migrate(conn)) == len(MIGRATIONS)
    assert migrate(conn) == []
    assert schema_version(conn) == len(MIGRATIONS)
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type in ('table', 'view')")}
    assert {
        "runs",
        "steps",
        "events",
        "pending_requests",
        "run_summary",
        "model_calls",
        "agent_usage",
    } <= tables
    conn.close()


async def test_concurrent_runs_lose_no_rows(db: Path) -> None:
    config = team(a={"model": "scripted"}, b={"model": "scripted"})
    async with Runtime(config, AuditLog(db)) as rt:
        ids = [
            await rt.start_run("delegate", f"task {i}", delegate("ab"[i % 2], f"task {i}")) for i in range(60)
        ]
        for run_id in ids:
            assert (await rt.wait(run_id, 30))["status"] == "succeeded"
    conn = sqlite3.connect(db)
    assert conn.execute("select count(*) from runs where status = 'succeeded'").fetchone()[0] == 60
    assert conn.execute("select count(*) from steps where status = 'succeeded'").fetchone()[0] == 60
    assert conn.execute("select count(*) from events").fetchone()[0] == 60 * 5
    conn.close()
    assert verify_chain(db).ok


async def test_two_writers_on_one_file_extend_one_chain(db: Path) -> None:
    """The CLI (another process) and the server write the same file: the chain stays whole."""
    with AuditLog(db) as first, AuditLog(db) as second:
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(first.event, "note", None, {"w": 1, "i": i})
                tg.start_soon(second.event, "note", None, {"w": 2, "i": i})
    report = verify_chain(db)
    assert report.ok and report.events == 100


async def test_a_failed_write_fails_loudly_and_the_rest_of_the_batch_lands(db: Path) -> None:
    with AuditLog(db) as log:
        good = log.submit(Write(events=[Event("note", None, {"ok": 1})]))
        bad = log.submit(
            Write(
                [
                    (
                        "insert into steps (id, run_id, key, agent, status, started_at)"
                        " values ('s', 'no-such-run', 'k', 'a', 'running', 'now')",
                        (),
                    )
                ],
                [Event("note", None, {"ok": 0})],
            )
        )
        assert good.result(timeout=5) == [1]
        with pytest.raises(AuditError, match="audit write failed"):
            bad.result(timeout=5)
        assert await log.event("note", None, {"ok": 2}) == 2
    assert verify_chain(db).ok


async def test_writing_after_close_is_refused(db: Path) -> None:
    log = AuditLog(db).open()
    log.close()
    with pytest.raises(AuditError, match="closed"):
        await log.event("note", None, {})


def test_the_chain_hash_is_the_hash_of_the_canonical_json_of_its_fields() -> None:
    """`event_hash` writes the material out by hand (faster); it must stay the documented canonical JSON."""
    import hashlib
    import random
    import string

    from orchestration.audit.log import canonical, event_hash

    rng = random.Random(3)
    alphabet = string.printable + 'é\u2028\u2029\x00\x1f\x7f"\\🙂'

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))

    for _ in range(5_000):
        fields = (text(), rng.randint(0, 10**12), rng.choice([None, text()]), rng.choice([None, text()]))
        fields += (text(), text(), text())
        expected = hashlib.sha256(canonical(list(fields)).encode()).hexdigest()
        assert event_hash(*fields) == expected
