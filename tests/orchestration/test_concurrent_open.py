"""Many processes opening one audit database at once: migrations run once, nobody crashes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import traceback
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog, Event, Write
from orchestration.audit.read import verify_chain
from orchestration.audit.schema import MIGRATIONS, migrate

PROCESSES = 10


def _open_and_write(db: str, gate: Barrier, out: multiprocessing.Queue[str]) -> None:
    try:
        gate.wait(timeout=120)  # every process opens at the same moment
        with AuditLog(db) as log:
            log.write_sync(Write(events=[Event("note", None, {"opened": True})]))
        out.put("ok")
    except BaseException:
        out.put(traceback.format_exc())


def _start_together(db: Path, n: int) -> list[str]:
    ctx = multiprocessing.get_context("fork")
    gate = ctx.Barrier(n)
    out: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_open_and_write, args=(str(db), gate, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


@pytest.mark.parametrize("round_", range(3))
def test_many_processes_starting_on_a_fresh_database_all_succeed(tmp_path: Path, round_: int) -> None:
    db = tmp_path / f"fresh-{round_}.db"
    results = _start_together(db, PROCESSES)
    assert results == ["ok"] * PROCESSES, next((r for r in results if r != "ok"), "")
    conn = sqlite3.connect(db)
    versions = [r[0] for r in conn.execute("select version from schema_migrations order by version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))  # each migration recorded exactly once
    assert conn.execute("select count(*) from audit_head").fetchone()[0] == 1
    conn.close()
    report = verify_chain(db)
    assert report.ok and report.events == PROCESSES


def test_many_processes_upgrading_an_old_database_all_succeed(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("pragma journal_mode=wal")
    first = MIGRATIONS[:1]  # a database made by an old release: only the first migration applied
    import orchestration.audit.schema as schema

    saved = schema.MIGRATIONS[:]
    schema.MIGRATIONS[:] = first
    try:
        migrate(conn)
    finally:
        schema.MIGRATIONS[:] = saved
    conn.close()
    results = _start_together(db, PROCESSES)
    assert results == ["ok"] * PROCESSES, next((r for r in results if r != "ok"), "")
    conn = sqlite3.connect(db)
    versions = [r[0] for r in conn.execute("select version from schema_migrations order by version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    conn.close()


def test_a_failing_migration_leaves_nothing_half_applied(tmp_path: Path) -> None:
    import orchestration.audit.schema as schema

    def _broken(db: object) -> None:
        raise sqlite3.OperationalError("boom")

    db = tmp_path / "audit.db"
    conn = sqlite3.connect(db, isolation_level=None)
    saved = schema.MIGRATIONS[:]
    schema.MIGRATIONS[:] = [*saved, _broken]
    try:
        with pytest.raises(sqlite3.OperationalError, match="boom"):
            migrate(conn)
    finally:
        schema.MIGRATIONS[:] = saved
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    assert "runs" not in tables  # the whole upgrade rolled back with the failing step
    assert len(migrate(conn)) == len(MIGRATIONS)
    conn.close()
