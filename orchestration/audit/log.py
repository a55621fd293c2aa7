"""The single audit writer.

Writes of an event loop are committed on that loop: every write posted during one turn of the loop is
committed in one transaction by a callback the loop runs next (group commit, no thread hand-off, one wake-up
per batch). A write that would have to wait (another connection holds SQLite's write lock, or the writer
thread is busy with earlier writes) goes to the writer thread instead, which waits for it without blocking
the loop; writes of one loop are committed in the order they were posted either way. Blocking callers (the
CLI) and WAL checkpoints (an fsync; on a connection of their own, so commits go on meanwhile) use the thread
too. Each event is chained to the previous one by hash, inside the transaction, after taking the write lock
(`BEGIN IMMEDIATE`), so another process writing the same file (the CLI approving an action) extends the same
chain.

Failure is loud: a write that cannot be committed raises `AuditError` in the caller; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from orchestration.audit.redact import redact_params
from orchestration.audit.schema import migrate, now
from orchestration.errors import AuditError, AuditUnavailable, WriteConflict
from policies.redaction import Redactor

BATCH_LIMIT = 512  # writes per transaction: bounds latency of the first write in a burst
POST_DELAY_S = 0.002
"""How long a write posted without waiting may wait, on a loop that stays busy, to share a commit."""
CHECKPOINT_CHANGES = 10_000
"""Rows changed between two WAL checkpoints, which the writer thread runs on a connection of its own (they
fsync): the loop never waits on one, and commits go on while it copies the WAL (see `_checkpoint`). SQLite's
own automatic checkpoint is off on the writer's connection."""


# named tuples: immutable like frozen dataclasses, at less than half the cost to make (several per step)
class Event(NamedTuple):
    """One append-only audit event."""

    kind: str
    run_id: str | None
    payload: dict[str, Any]
    step_id: str | None = None


class Write(NamedTuple):
    """Statements that update summary rows, and the events that record why, committed together."""

    statements: Sequence[tuple[str, Sequence[Any]]] = ()
    events: Sequence[Event] = ()
    guard: tuple[str, Sequence[Any]] | None = None
    """A compare-and-set statement run first, inside the write lock: if it changes no row, nothing of this
    write is applied and the caller gets `WriteConflict` (so exactly one of several racing writes wins)."""
    key: str | None = None
    """A deterministic id of this write (a run on another engine sends it): a write whose key is already in
    the audit is skipped whole, so a retried delivery never duplicates an event or a summary update."""
    summary: tuple[str, str, Sequence[Any]] | None = None
    """`(key, sql, params)`: a statement that sets absolute values (a run's usage totals). Of the writes of one
    commit with the same key only the last one's is run, after the others' statements: a burst of model calls
    rewrites the run's row once, not once per call."""


Outcome = list[int] | BaseException


@dataclass(eq=False, slots=True)
class _Job:
    write: Write
    future: Future[list[int]] | None = None
    """Set for blocking callers (the CLI)."""
    loop: asyncio.AbstractEventLoop | None = None
    """The event loop of an async caller: its job is settled there."""
    waiter: asyncio.Future[list[int]] | None = None
    """Set for async callers that await the write."""
    then: Callable[[Outcome], None] | None = None
    """Set for async callers that go on at once (`enqueue`): called with the outcome on their loop."""
    settled: bool = False
    """The write was committed, or failed (set on the caller's loop)."""

    def settle(self, outcome: Outcome) -> None:
        """Hand an async caller the outcome (on its loop)."""
        self.settled = True
        waiter = self.waiter
        # a caller cancelled while waiting has already given up on the answer; its write still committed
        if waiter is not None and not waiter.done():
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        if self.then is not None:
            try:
                self.then(outcome)
            except Exception:  # a caller's callback must never break the writer
                logging.getLogger("concertmaster.audit").exception("an audit write's callback failed")


class Queued(Protocol):
    """A write handed to `AuditLog.enqueue`."""

    @property
    def settled(self) -> bool:
        """True once it is committed, or has failed."""


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


_string = (
    json.encoder.encode_basestring
)  # a JSON string literal, as the encoder writes it (ensure_ascii=False)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical(payload: Any) -> str:
    """The exact JSON text stored and hashed for a payload."""
    return _CANONICAL.encode(payload)


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
    try:  # the same text as canonical([...]), written out: the payload is most of it, escaped once
        if type(seq) is not int:
            raise TypeError(seq)
        material = (
            f"[{_string(prev_hash)},{seq},{'null' if run_id is None else _string(run_id)},"
            f"{'null' if step_id is None else _string(step_id)},{_string(kind)},{_string(payload)},"
            f"{_string(created_at)}]"
        )
    except TypeError:  # not the usual types (a string subclass is fine either way): the encoder decides
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
    """The audit database of one process: a writer (on the caller's event loop, or a thread) plus a way to read."""

    def __init__(
        self,
        path: str | Path,
        redactor: Redactor | None = None,
        *,
        busy_timeout_s: float = 10.0,
        post_delay_s: float = POST_DELAY_S,
    ) -> None:
        self.path = Path(path).expanduser()
        self.redactor = redactor or Redactor()
        self.busy_timeout_s = busy_timeout_s
        """How long one write waits for another connection's write lock before failing."""
        self.post_delay_s = post_delay_s
        """How long a posted write may wait on a loop that stays busy, to share a commit (`POST_DELAY_S`)."""
        self._queue: queue.SimpleQueue[_Job | str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()
        """Held during a transaction on the connection (by a loop's commit or by the thread)."""
        self._waits = True
        """Whether the connection's busy timeout is on (the thread) or off (a commit on a loop never waits)."""
        self._posted: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        """Per event loop: writes posted since its last commit, committed together by its next callback."""
        self._gathering: dict[asyncio.AbstractEventLoop, float] = {}
        """Loops with a commit of their posted writes scheduled, and since when they gather (loop time)."""
        self._urgent: set[asyncio.AbstractEventLoop] = set()
        """Loops where someone awaits a posted write: commit on the next turn."""
        self._handed: dict[asyncio.AbstractEventLoop, int] = {}
        """Per event loop: writes handed to the thread and not yet settled (later ones must follow them)."""
        self._changes_at_checkpoint = 0
        self._checkpoint_queued = False
        self._checkpointer: sqlite3.Connection | None = None
        """The thread's connection for WAL checkpoints (opened at the first one)."""
        self.commits = 0
        """Transactions committed so far (for tests and benchmarks: what a run costs, counted, not timed)."""

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> AuditLog:
        """Create or migrate the database and start the writer thread. Idempotent."""
        if self._thread is not None:
            return self
        self._conn = self._connect_and_migrate()
        self._conn.execute("pragma wal_autocheckpoint=0")  # the thread checkpoints (see CHECKPOINT_CHANGES)
        self._changes_at_checkpoint = self._conn.total_changes
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
        try:  # writes posted on this loop and not committed yet go first
            self._flush(asyncio.get_running_loop())
        except RuntimeError:
            pass  # not on an event loop
        self._closed = True
        self._queue.put("checkpoint")
        self._queue.put(None)
        self._thread.join()
        if self._conn is not None:
            self._conn.close()
        if self._checkpointer is not None:
            self._checkpointer.close()

    def __enter__(self) -> AuditLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._thread is None or self._closed:
            raise AuditError("the audit log is closed; nothing can be recorded")

    def submit(self, write: Write) -> Future[list[int]]:
        """Queue a write for the thread; the future resolves to the new events' sequence numbers."""
        self._check_open()
        job = _Job(write, future=Future())
        self._queue.put(job)
        assert job.future is not None
        return job.future

    def post(self, write: Write, *, soon: bool = False) -> asyncio.Future[list[int]]:
        """Queue `write` for a commit on this event loop and return at once; the future resolves to the new
        events' sequence numbers once it is committed (or to `AuditError`).

        It is committed when the loop next has nothing else to run, or with the next write someone awaits
        (`soon`: on the loop's next turn), or after `post_delay_s` of a busy loop. Writes of one loop are
        committed in the order they are posted, so once a write posted later is committed, this one is too: a
        caller may post what nothing acts on and await only what must be durable before it goes on."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[int]] = loop.create_future()
        self._queue_on(loop, _Job(write, loop=loop, waiter=waiter), soon)
        return waiter

    def enqueue(self, write: Write, then: Callable[[Outcome], None] | None = None) -> Queued:
        """`post` for a caller that does not wait on a future: `then` is called with the outcome (the new
        events' sequence numbers, or the `AuditError`) on this loop once the write is settled."""
        loop = asyncio.get_running_loop()
        job = _Job(write, loop=loop, then=then)
        self._queue_on(loop, job, False)
        return job

    def _queue_on(self, loop: asyncio.AbstractEventLoop, job: _Job, soon: bool) -> None:
        self._check_open()
        posted = self._posted.get(loop)
        if posted is None:
            posted = self._posted[loop] = []
        posted.append(job)
        if soon:
            self._urgent.add(loop)
        if loop not in self._gathering:
            self._gathering[loop] = loop.time()
            loop.call_soon(self._when_idle, loop)

    def _when_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit the posted writes once the loop has nothing else to run this turn (it is about to wait for
        I/O or a timer: the commit costs no one any time), at once when someone awaits one, and after
        `post_delay_s` of a loop that stays busy. A loop that does not show its queue commits at once."""
        ready = getattr(loop, "_ready", None)  # asyncio's callbacks of the next turn
        if (
            ready
            and loop not in self._urgent
            and loop.time() - self._gathering.get(loop, 0.0) < self.post_delay_s
            and len(self._posted.get(loop, ())) < BATCH_LIMIT
        ):
            loop.call_soon(self._when_idle, loop)  # busy: keep gathering
            return
        self._flush(loop)

    async def write(self, write: Write) -> list[int]:
        """Commit `write` and return its events' sequence numbers; raises `AuditError` on failure."""
        return await self.post(write, soon=True)

    async def durable(self) -> None:
        """Return once every write posted on this event loop so far is committed, or has failed (its poster
        hears of that through its future)."""
        loop = asyncio.get_running_loop()
        if self._posted.get(loop) or self._handed.get(loop):
            with contextlib.suppress(AuditError):
                await self.post(Write(), soon=True)  # committed after them: writes of a loop commit in order

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

    # -- committing on the loop ----------------------------------------------------------------------
    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit the writes posted on `loop` (a callback of that loop), or hand them to the thread when the
        commit would wait: for the write lock of another connection, or behind writes the thread still has."""
        self._gathering.pop(loop, None)
        self._urgent.discard(loop)
        jobs = self._posted.pop(loop, None)
        if not jobs:
            return
        if self._conn is None or self._closed:
            for job in jobs:
                job.settle(AuditError("the audit log is closed; nothing was recorded"))
            return
        if self._handed.get(loop) or not self._lock.acquire(blocking=False):
            self._hand(loop, jobs)
            return
        try:
            if self._waits:
                self._conn.execute("pragma busy_timeout=0")
                self._waits = False
            results: list[tuple[_Job, Outcome]] = []
            for start in range(0, len(jobs), BATCH_LIMIT):
                batch = jobs[start : start + BATCH_LIMIT]
                try:
                    results += self._commit(self._conn, batch)
                except sqlite3.Error as exc:
                    assert _unwritable(exc)
                    self._hand(loop, jobs[start:])  # locked elsewhere, or no room: the thread waits or fails
                    break
            self._maybe_checkpoint()
        finally:
            self._lock.release()
        for job, outcome in results:
            job.settle(outcome)

    def _hand(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        self._handed[loop] = self._handed.get(loop, 0) + len(jobs)
        for job in jobs:
            self._queue.put(job)

    def _settled(self, loop: asyncio.AbstractEventLoop, items: list[tuple[_Job, Outcome]]) -> None:
        """Outcomes of writes the thread committed for `loop`, handed over in one wake-up of that loop."""
        self._handed[loop] -= len(items)
        if not self._handed[loop]:
            del self._handed[loop]
        for job, outcome in items:
            job.settle(outcome)

    def _maybe_checkpoint(self) -> None:
        """Queue a checkpoint once enough rows changed (called holding the connection's lock)."""
        assert self._conn is not None
        changes = self._conn.total_changes
        if not self._checkpoint_queued and changes - self._changes_at_checkpoint > CHECKPOINT_CHANGES:
            self._checkpoint_queued = True
            self._changes_at_checkpoint = changes
            self._queue.put("checkpoint")

    # -- the writer thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        assert self._conn is not None
        conn = self._conn
        while True:
            job = self._queue.get()
            if job is None:
                return
            if isinstance(job, str):  # "checkpoint"
                self._checkpoint()
                continue
            assert isinstance(job, _Job)
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
                if isinstance(more, str):  # "checkpoint"
                    self._queue.put(more)  # after this batch
                    break
                assert isinstance(more, _Job)
                batch.append(more)
            with self._lock:
                if not self._waits:
                    conn.execute(f"pragma busy_timeout={int(self.busy_timeout_s * 1000)}")
                    self._waits = True
                results = self._commit_or_fail(conn, batch)
                self._maybe_checkpoint()
            self._settle(results)
            if stop:
                return
            job = more = None  # the last batch's writes (and their payloads) are not kept while we wait
            batch.clear()

    def _checkpoint(self) -> None:
        """Move the WAL into the database file (PASSIVE: never waits for readers or writers), in two passes on
        the thread's own connection. The first copies the bulk while the loop goes on committing; the second,
        holding the writer's lock, copies what was committed meanwhile (little), so that the checkpoint is
        complete and the next commit starts the WAL over instead of growing it (a checkpoint that writers
        always overtake never completes: the WAL and its index would grow without end)."""
        self._checkpoint_queued = False
        try:
            if self._checkpointer is None:
                self._checkpointer = connect(self.path, busy_timeout_s=0)
                self._checkpointer.execute("pragma wal_autocheckpoint=0")
            self._checkpointer.execute("pragma wal_checkpoint(PASSIVE)")
            with self._lock:
                self._checkpointer.execute("pragma wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # the next one will try again; nothing is lost
            logging.getLogger("concertmaster.audit").warning("WAL checkpoint failed: %s", exc)

    def _settle(self, results: list[tuple[_Job, Outcome]]) -> None:
        """Hand each job its outcome: one wake-up per event loop for the whole batch, not one per write."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Outcome]]] = {}
        for job, outcome in results:
            if job.future is not None and not job.future.cancelled():
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)
            if job.loop is not None:
                by_loop.setdefault(job.loop, []).append((job, outcome))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settled, loop, items)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more

    def _commit_or_fail(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[_Job, Outcome]]:
        """`_commit`, where a database that cannot be written fails the whole batch with `AuditUnavailable`
        at once: retrying each write alone would hold every caller for one busy timeout per write."""
        try:
            return self._commit(conn, batch)
        except sqlite3.Error as exc:
            return [(job, _failure(exc)) for job in batch]

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[_Job, Outcome]]:
        """Commit the batch in one transaction; if any write fails, redo each write in its own so that only
        the bad one fails (failures are bugs, so the fast path has no savepoints). Raises the `sqlite3.Error`
        of a database that cannot be written now (locked, full), with nothing committed."""
        try:
            return self._transaction(conn, batch)
        except sqlite3.Error as exc:
            if _unwritable(exc):
                raise
            return self._commit_each(conn, batch, exc)
        except Exception as exc:  # a bug in a write must fail its callers, never kill the writer
            return self._commit_each(conn, batch, exc)

    def _commit_each(
        self, conn: sqlite3.Connection, batch: list[_Job], exc: Exception
    ) -> list[tuple[_Job, Outcome]]:
        if len(batch) == 1:
            return [(batch[0], _failure(exc))]
        results: list[tuple[_Job, Outcome]] = []
        broken: dict[str, AuditError] = {}
        """Runs with a write that failed here: their later writes of this batch fail too, so that what is
        recorded of a run is always a prefix of what it wrote, never a record with a hole in it."""
        for job in batch:
            runs = {e.run_id for e in job.write.events if e.run_id is not None}
            earlier = next((broken[r] for r in runs if r in broken), None)
            if earlier is not None:
                results.append(
                    (job, AuditError(f"not written: an earlier record of the run failed ({earlier})"))
                )
                continue
            try:
                results += self._transaction(conn, [job])
            except Exception as one:
                failure = _failure(one)
                results.append((job, failure))
                broken.update(dict.fromkeys(runs, failure))
        return results

    def _transaction(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[tuple[_Job, Outcome]]:
        try:
            conn.execute("begin immediate")
            head_seq, head_hash = conn.execute("select seq, hash from audit_head where id = 1").fetchone()
            results: list[tuple[_Job, Outcome]] = []
            events: list[tuple[Event, str, str | None]] = []
            keys: set[str] = set()
            summaries: dict[str, tuple[str, Sequence[Any]]] = {}
            for job in jobs:
                outcome = self._apply(conn, job.write, head_seq + len(events), events, keys)
                results.append((job, [] if outcome is None else outcome))
                summary = job.write.summary
                if summary is not None and isinstance(outcome, list):  # applied now (not before, not refused)
                    summaries.pop(summary[0], None)  # the last one wins, and runs after the ones before it
                    summaries[summary[0]] = (summary[1], summary[2])
            for sql, params in summaries.values():
                conn.execute(sql, redact_params(self.redactor, sql, params))
            rows, head_seq, head_hash = self._chain(events, head_seq, head_hash)
            conn.executemany(
                "insert into events (seq, run_id, step_id, kind, payload, created_at, prev_hash, hash, event_key)"
                " values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("update audit_head set seq = ?, hash = ? where id = 1", (head_seq, head_hash))
            conn.execute("commit")
            self.commits += 1
            return results
        except BaseException:
            if conn.in_transaction:
                conn.execute("rollback")
            raise

    def _apply(
        self,
        conn: sqlite3.Connection,
        write: Write,
        seq: int,
        events: list[tuple[Event, str, str | None]],
        keys: set[str],
    ) -> Outcome | None:
        """Run the write's statements and add its events (with their JSON text and key) to `events`, which
        are chained and inserted together after the batch's statements (nothing in a statement reads events);
        `seq` is the last sequence number before them. None: delivered before, nothing done."""
        redact = self.redactor
        if write.key is not None:
            if (
                write.key in keys
                or conn.execute("select 1 from events where event_key = ?", (f"{write.key}.0",)).fetchone()
            ):
                return None  # delivered before: already committed whole
            keys.add(write.key)
        if write.guard is not None:
            sql, params = write.guard
            if conn.execute(sql, redact_params(redact, sql, params)).rowcount == 0:
                # the guard changed nothing, so neither has this write: the rest of the batch goes on
                return WriteConflict("the row changed before this write (another writer won)")
        for sql, params in write.statements:
            conn.execute(sql, redact_params(redact, sql, params))  # free text and JSON values, not our ids
        for i, ev in enumerate(write.events):
            events.append((ev, canonical(ev.payload), f"{write.key}.{i}" if write.key is not None else None))
        return list(range(seq + 1, seq + 1 + len(write.events)))

    def _chain(
        self, events: list[tuple[Event, str, str | None]], seq: int, prev: str
    ) -> tuple[list[tuple[Any, ...]], int, str]:
        """The events' rows, redacted and chained after `(seq, prev)`, and the new head. One search over the
        whole commit's JSON tells whether any of it could hold a secret (JSON text holds no raw newline and no
        start of a secret spans one); only then is each event looked at, and only a possible holder walked."""
        redact = self.redactor
        suspect = bool(events) and redact.might_hold_secret("\n".join(text for _, text, _ in events))
        created = now()  # one time for the events of one commit
        rows = []
        for ev, payload, key in events:
            seq += 1
            if suspect and redact.might_hold_secret(payload):  # else redacting every value changes nothing
                payload = canonical(redact.value(ev.payload))
            digest = event_hash(prev, seq, ev.run_id, ev.step_id, ev.kind, payload, created)
            rows.append((seq, ev.run_id, ev.step_id, ev.kind, payload, created, prev, digest, key))
            prev = digest
        return rows, seq, prev
