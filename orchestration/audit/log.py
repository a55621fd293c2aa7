"""The single audit writer.

All writes of a process go through one thread that owns one SQLite connection. Callers hand it a `Write`
(summary-row statements plus the events they justify) and await its result; the thread drains whatever is
queued into one transaction, so a burst of writes costs one commit. Each event is chained to the previous
one by hash, inside the transaction, after taking SQLite's write lock (`BEGIN IMMEDIATE`), so another process
writing the same file (the CLI approving an action) extends the same chain.

Failure is loud: a write that cannot be committed raises `AuditError` in the caller; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.audit.redact import redact_params
from orchestration.audit.schema import migrate, now
from orchestration.errors import AuditError, AuditUnavailable, WriteConflict
from policies.redaction import Redactor

BATCH_LIMIT = 512  # writes per transaction: bounds latency of the first write in a burst


@dataclass(frozen=True)
class Event:
    """One append-only audit event."""

    kind: str
    run_id: str | None
    payload: dict[str, Any]
    step_id: str | None = None


@dataclass(frozen=True)
class Write:
    """Statements that update summary rows, and the events that record why, committed together."""

    statements: Sequence[tuple[str, Sequence[Any]]] = ()
    events: Sequence[Event] = ()
    guard: tuple[str, Sequence[Any]] | None = None
    """A compare-and-set statement run first, inside the write lock: if it changes no row, nothing of this
    write is applied and the caller gets `WriteConflict` (so exactly one of several racing writes wins)."""
    key: str | None = None
    """A deterministic id of this write (a run on another engine sends it): a write whose key is already in
    the audit is skipped whole, so a retried delivery never duplicates an event or a summary update."""


Outcome = list[int] | BaseException


@dataclass
class _Job:
    write: Write
    future: Future[list[int]] | None = None
    """Set for blocking callers (the CLI)."""
    loop: asyncio.AbstractEventLoop | None = None
    waiter: asyncio.Future[list[int]] | None = None
    """Set for async callers: resolved on their own loop."""


def _settle_waiter(waiter: asyncio.Future[list[int]], outcome: Outcome) -> None:
    # A caller cancelled while waiting has already given up on the answer; its write still committed.
    if waiter.done():
        return
    if isinstance(outcome, BaseException):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)


def _settle_many(items: list[tuple[asyncio.Future[list[int]], Outcome]]) -> None:
    for waiter, outcome in items:
        _settle_waiter(waiter, outcome)


def _settle(results: list[tuple[_Job, Outcome]]) -> None:
    """Hand each job its outcome: one wake-up per event loop for the whole batch, not one per write."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[list[int]], Outcome]]] = {}
    for job, outcome in results:
        if job.future is not None and not job.future.cancelled():
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        if job.loop is not None and job.waiter is not None:
            by_loop.setdefault(job.loop, []).append((job.waiter, outcome))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_many, items)
        except RuntimeError:
            pass  # that loop is closed: nobody is waiting any more


# SQLite's primary result codes that mean "the database cannot be written now", not "this write is wrong":
# BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_UNWRITABLE = frozenset({5, 6, 8, 10, 13, 14, 15})


def _unwritable(exc: Exception) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _UNWRITABLE


def _failure(exc: Exception) -> AuditError:
    if not isinstance(exc, sqlite3.Error):  # a bug in the write itself
        return AuditError(f"audit write failed: {type(exc).__name__}: {exc}")
    if _unwritable(exc):
        return AuditUnavailable(
            f"audit write failed: {exc} (nothing was recorded; writing works again once the database can be"
            " written: free disk space, or end the other connection's write transaction)"
        )
    return AuditError(f"audit write failed: {exc}")


def canonical(payload: Any) -> str:
    """The exact JSON text stored and hashed for a payload."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(
    prev_hash: str,
    seq: int,
    run_id: str | None,
    step_id: str | None,
    kind: str,
    payload: str,
    created_at: str,
) -> str:
    """The hash that chains an event to its predecessor; `audit verify` recomputes it."""
    material = canonical([prev_hash, seq, run_id, step_id, kind, payload, created_at])
    return hashlib.sha256(material.encode()).hexdigest()


def connect(path: Path, *, readonly: bool = False, busy_timeout_s: float = 10.0) -> sqlite3.Connection:
    """A connection configured the way concertmaster uses SQLite (WAL, busy timeout, foreign keys)."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=busy_timeout_s
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
        conn.execute("pragma journal_mode=wal")
        conn.execute("pragma synchronous=normal")
    conn.execute(f"pragma busy_timeout={int(busy_timeout_s * 1000)}")
    conn.execute("pragma foreign_keys=on")
    conn.row_factory = sqlite3.Row
    return conn


class AuditLog:
    """The audit database of one process: a writer thread plus a way to read."""

    def __init__(
        self, path: str | Path, redactor: Redactor | None = None, *, busy_timeout_s: float = 10.0
    ) -> None:
        self.path = Path(path).expanduser()
        self.redactor = redactor or Redactor()
        self.busy_timeout_s = busy_timeout_s
        """How long one write waits for another connection's write lock before failing."""
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> AuditLog:
        """Create or migrate the database and start the writer thread. Idempotent."""
        if self._thread is not None:
            return self
        self._conn = self._connect_and_migrate()
        self._thread = threading.Thread(target=self._loop, name="concertmaster-audit", daemon=True)
        self._thread.start()
        return self

    def _connect_and_migrate(self) -> sqlite3.Connection:
        """Open and migrate, retrying while another process holds the file: SQLite answers some lock conflicts
        at open (switching a fresh file to WAL, rebuilding the WAL index) with BUSY at once, without waiting
        on the busy timeout. Bounded by the busy timeout; anything else fails at once."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.01
        while True:
            conn = None
            try:
                conn = connect(self.path, busy_timeout_s=self.busy_timeout_s)
                migrate(conn)
                return conn
            except (sqlite3.Error, OSError) as exc:  # not a database, a directory, no permission, no room
                if conn is not None:
                    conn.close()
                if not (_unwritable(exc) and time.monotonic() < deadline):
                    raise AuditError(f"cannot open the audit database {self.path}: {exc}") from None
            time.sleep(delay)  # another process is creating or migrating the file: give it a moment
            delay = min(delay * 2, 0.5)

    def close(self) -> None:
        """Finish every queued write, then stop the thread."""
        if self._thread is None or self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> AuditLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._thread is None or self._closed:
            raise AuditError("the audit log is closed; nothing can be recorded")

    def submit(self, write: Write) -> Future[list[int]]:
        """Queue a write; the future resolves to the new events' sequence numbers."""
        self._check_open()
        job = _Job(write, future=Future())
        self._queue.put(job)
        assert job.future is not None
        return job.future

    async def write(self, write: Write) -> list[int]:
        """Commit `write` and return its events' sequence numbers; raises `AuditError` on failure."""
        self._check_open()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[int]] = loop.create_future()
        self._queue.put(_Job(write, loop=loop, waiter=waiter))
        return await waiter

    async def event(
        self,
        kind: str,
        run_id: str | None,
        payload: dict[str, Any],
        *,
        step_id: str | None = None,
        statements: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> int:
        """Append one event (with the summary updates it justifies) and return its sequence number."""
        seqs = await self.write(Write(statements, [Event(kind, run_id, payload, step_id)]))
        return seqs[0]

    def write_sync(self, write: Write) -> list[int]:
        """Blocking `write`, for the CLI."""
        return self.submit(write).result()

    # -- the writer thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        assert self._conn is not None
        conn = self._conn
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < BATCH_LIMIT:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._commit(conn, batch)
            if stop:
                return
            job = more = None  # the last batch's writes (and their payloads) are not kept while we wait
            batch.clear()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """Commit the batch in one transaction; if any write fails, redo each write in its own so that only
        the bad one fails (failures are bugs, so the fast path has no savepoints).

        A database that cannot be written at all (locked by another connection, disk full) fails the whole
        batch at once with `AuditUnavailable`: retrying each write alone would hold every caller for one busy
        timeout per write."""
        try:
            _settle(self._transaction(conn, batch))
        except sqlite3.Error as exc:
            if not _unwritable(exc):
                self._commit_each(conn, batch, exc)
                return
            _settle([(job, _failure(exc)) for job in batch])
        except Exception as exc:  # a bug in a write must fail its callers, never kill the writer thread
            self._commit_each(conn, batch, exc)

    def _commit_each(self, conn: sqlite3.Connection, batch: list[_Job], exc: Exception) -> None:
        if len(batch) == 1:
            _settle([(batch[0], _failure(exc))])
            return
        results: list[tuple[_Job, Outcome]] = []
        for job in batch:
            try:
                results += self._transaction(conn, [job])
            except Exception as one:
                results.append((job, _failure(one)))
        _settle(results)

    def _transaction(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[tuple[_Job, Outcome]]:
        try:
            conn.execute("begin immediate")
            head_seq, head_hash = conn.execute("select seq, hash from audit_head where id = 1").fetchone()
            results: list[tuple[_Job, Outcome]] = []
            for job in jobs:
                outcome, head_seq, head_hash = self._apply(conn, job.write, head_seq, head_hash)
                results.append((job, outcome))
            conn.execute("update audit_head set seq = ?, hash = ? where id = 1", (head_seq, head_hash))
            conn.execute("commit")
            return results
        except BaseException:
            if conn.in_transaction:
                conn.execute("rollback")
            raise

    def _apply(self, conn: sqlite3.Connection, write: Write, seq: int, prev: str) -> tuple[Outcome, int, str]:
        redact = self.redactor
        if (
            write.key is not None
            and conn.execute("select 1 from events where event_key = ?", (f"{write.key}.0",)).fetchone()
        ):
            return [], seq, prev  # delivered before: already committed whole
        if write.guard is not None:
            sql, params = write.guard
            if conn.execute(sql, redact_params(redact, sql, params)).rowcount == 0:
                # the guard changed nothing, so neither has this write: the rest of the batch goes on
                return WriteConflict("the row changed before this write (another writer won)"), seq, prev
        for sql, params in write.statements:
            conn.execute(sql, redact_params(redact, sql, params))  # free text and JSON values, not our ids
        seqs = []
        for i, ev in enumerate(write.events):
            seq += 1
            created = now()
            payload = canonical(redact.value(ev.payload))
            digest = event_hash(prev, seq, ev.run_id, ev.step_id, ev.kind, payload, created)
            conn.execute(
                "insert into events (seq, run_id, step_id, kind, payload, created_at, prev_hash, hash, event_key)"
                " values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    ev.run_id,
                    ev.step_id,
                    ev.kind,
                    payload,
                    created,
                    prev,
                    digest,
                    f"{write.key}.{i}" if write.key is not None else None,
                ),
            )
            prev = digest
            seqs.append(seq)
        return seqs, seq, prev
