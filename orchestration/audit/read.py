"""Reading the audit: runs, steps, events, read-only SQL, and chain verification."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration.audit.log import connect, event_hash
from orchestration.audit.recompute import mismatches
from orchestration.audit.schema import GENESIS_HASH
from orchestration.errors import AuditError, InvalidInputError


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(sql, params)]


class AuditReader:
    """Read-only access to an audit database (WAL lets it read while the writer writes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise AuditError(
                f"no audit database at {self.path}; start the server once or pass --db / CONCERTMASTER_DB"
            )
        self._conn = connect(self.path, readonly=True)

    def close(self) -> None:
        self._conn.close()

    def warm(self) -> None:
        """Read the schema now: a connection's first statement parses every table and view (~0.4 ms), which
        a long-lived reader pays at start rather than in its first caller's answer."""
        self._conn.execute("select 1 from runs limit 0").fetchall()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = _rows(self._conn, "select * from runs where id = ?", (run_id,))
        return rows[0] if rows else None

    def runs(
        self,
        *,
        limit: int = 20,
        status: str | None = None,
        pattern: str | None = None,
        principal: str | None = None,
    ) -> list[dict[str, Any]]:
        """Recent runs (`run_summary` rows), newest first; `principal` keeps only the runs it started."""
        where: list[str] = []
        params: list[Any] = []
        if principal is not None:
            where.append("id in (select id from runs where principal = ?)")
            params.append(principal)
        if status:
            where.append("status = ?")
            params.append(status)
        if pattern:
            where.append("pattern = ?")
            params.append(pattern)
        sql = "select * from run_summary" + (" where " + " and ".join(where) if where else "")
        sql += " order by started_at desc, id desc limit ?"
        return _rows(self._conn, sql, (*params, limit))

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        return _rows(self._conn, "select * from steps where run_id = ? order by started_at, rowid", (run_id,))

    def events(
        self, run_id: str | None = None, *, after_seq: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        if run_id is None:
            sql, params = "select * from events where seq > ? order by seq limit ?", (after_seq, limit)
        else:
            sql = "select * from events where run_id = ? and seq > ? order by seq limit ?"
            params = (run_id, after_seq, limit)  # type: ignore[assignment]
        rows = _rows(self._conn, sql, params)
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def all_steps(self, run_id: str) -> list[dict[str, Any]]:
        """Every step of a run, oldest first, uncapped (for replay)."""
        return _rows(self._conn, "select * from steps where run_id = ? order by started_at, rowid", (run_id,))

    def all_events(self, run_id: str) -> list[dict[str, Any]]:
        """Every event of a run in chain order, payloads as stored (JSON text), uncapped (for replay)."""
        return _rows(self._conn, "select * from events where run_id = ? order by seq", (run_id,))

    def pending(
        self, *, kind: str | None = None, run_id: str | None = None, principal: str | None = None
    ) -> list[dict[str, Any]]:
        """Open requests, oldest first; `principal` keeps only those of runs it started."""
        sql, params = "select * from pending_requests where status = 'pending'", []
        if principal is not None:
            sql += " and run_id in (select id from runs where principal = ?)"
            params.append(principal)
        if kind:
            sql += " and kind = ?"
            params.append(kind)
        if run_id:
            sql += " and run_id = ?"
            params.append(run_id)
        return _rows(self._conn, sql + " order by created_at", tuple(params))

    def query(self, sql: str, params: tuple[Any, ...] = (), *, limit: int = 500) -> list[dict[str, Any]]:
        """Run one read-only SQL statement (the connection is opened read-only: writes are refused)."""
        if not sql.strip():
            raise InvalidInputError(
                "sql is empty; give one SELECT statement, e.g. 'select * from run_summary'"
            )
        try:
            cursor = self._conn.execute(sql, params)
            return [dict(row) for row in cursor.fetchmany(limit)]
        except sqlite3.Error as exc:
            raise InvalidInputError(
                f"the query failed: {exc}. Only read-only SQL over the documented tables and views works "
                "(runs, steps, events, pending_requests, run_summary, model_calls, agent_usage, daily_cost)"
            ) from None


@dataclass
class ChainReport:
    """What `audit verify` found."""

    ok: bool
    events: int
    head_seq: int
    head_hash: str
    problems: list[str] = field(default_factory=list)


def verify_chain(path: str | Path, *, max_problems: int = 20, head: str | None = None) -> ChainReport:
    """Recompute every event's hash; report edited, deleted, inserted or reordered events. Then recompute
    `runs`, `steps` and `pending_requests` from the events and report every row that differs.

    `head` is a head kept elsewhere (`SEQ:HASH`, as `audit head` prints it): the event SEQ must still have
    that hash, which catches a rewrite of the whole file."""
    reader = AuditReader(path)
    problems: list[str] = []
    prev, expected_seq, count = GENESIS_HASH, 1, 0
    try:
        conn = reader._conn
        cursor = conn.execute(
            "select seq, run_id, step_id, kind, payload, created_at, prev_hash, hash from events order by seq"
        )
        for row in cursor:
            count += 1
            seq = row["seq"]
            if seq != expected_seq:
                problems.append(
                    f"event {seq}: expected event {expected_seq} here (events deleted or renumbered)"
                )
            if row["prev_hash"] != prev:
                problems.append(f"event {seq}: does not follow the event before it (deleted or reordered)")
            digest = event_hash(
                row["prev_hash"],
                seq,
                row["run_id"],
                row["step_id"],
                row["kind"],
                row["payload"],
                row["created_at"],
            )
            if digest != row["hash"]:
                problems.append(f"event {seq}: content does not match its hash (edited)")
            prev, expected_seq = row["hash"], seq + 1
            if len(problems) >= max_problems:
                problems.append("... stopping after too many problems")
                break
        last = conn.execute("select seq, hash from audit_head where id = 1").fetchone()
        if len(problems) < max_problems and ((last["seq"], last["hash"]) if last else (0, GENESIS_HASH)) != (
            expected_seq - 1,
            prev,
        ):
            problems.append(
                f"the chain head says event {last['seq'] if last else 0} is last but the log ends at event"
                f" {expected_seq - 1} (events removed from the end, or the head was edited)"
            )
        if head is not None:
            problems += _check_kept_head(conn, head)
        for problem in mismatches(conn):
            if len(problems) >= max_problems:
                problems.append("... stopping after too many problems")
                break
            problems.append(problem)
    finally:
        reader.close()
    head_seq, head_hash = (last["seq"], last["hash"]) if last else (0, GENESIS_HASH)
    return ChainReport(
        ok=not problems, events=count, head_seq=head_seq, head_hash=head_hash, problems=problems
    )


def _check_kept_head(conn: sqlite3.Connection, head: str) -> list[str]:
    seq_text, _, digest = head.partition(":")
    if not seq_text.isdigit() or len(digest) != 64:
        raise InvalidInputError(
            f"--head must be SEQ:HASH as `concertmaster audit head` prints it (got {head!r})"
        )
    row = conn.execute("select hash from events where seq = ?", (int(seq_text),)).fetchone()
    if row is None:
        return [
            f"the kept head names event {seq_text}, which is not in the log any more (truncated or rewritten)"
        ]
    if row["hash"] != digest:
        return [f"event {seq_text} no longer has the kept head's hash: the log was rewritten from there on"]
    return []
