"""Who runs a run: a lease in the database that the owning process renews.

A process that runs a run writes its identity (`host:pid:nonce`) in `runs.owner` and a deadline in
`runs.lease_expires`, and renews the deadline while it lives. A run whose lease lapsed is free to be taken over
by a live server (resumed). Taking a run over is one compare-and-set on the row, so two servers never both run
the same run. The nonce makes a restarted process that got the crashed one's PID (PID 1 in a container) a
different owner; a dead local owner frees its runs at once instead of after the lease.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from orchestration.audit.log import connect

Clock = Callable[[], float]
"""Seconds since the epoch (time.time); injected by tests."""

HOST = socket.gethostname()

DEFAULT_LEASE_S = 15.0
"""How long a run stays owned without a renewal; renewed every third of it."""

LIVE = ("queued", "running", "awaiting_input", "awaiting_approval", "awaiting_host")
"""Statuses of a run that someone should be running."""


_LIVE: set[str] = set()
"""Owners alive in this process (a process may hold several runtimes: tests, the library)."""


def new_owner() -> str:
    """A new owner identity: host, pid and a nonce no other owner shares. Live until `retire_owner`."""
    owner = f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"
    _LIVE.add(owner)
    return owner


def retire_owner(owner: str) -> None:
    """`owner` no longer runs anything (its runtime stopped)."""
    _LIVE.discard(owner)


def owner_gone(owner: str | None, me: str) -> bool:
    """Is `owner` certainly not running any more (so its lease need not be waited out)?

    True for no owner, an owner on this host whose process is gone, and an owner with this process's PID but
    another nonce (a crashed process whose PID was reused by us). An owner on another host, or a live local
    process, is only gone when its lease lapses.
    """
    if not owner:
        return True
    parts = owner.split(":")
    host, pid = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
    if owner == me or owner in _LIVE:
        return False
    if host != HOST or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True  # our PID but not a live owner of ours: a crashed process whose PID we got
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet still answers kill(pid, 0) (Linux: state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


class Leases:
    """Claims and renews run leases for one process, on a connection of its own (compare-and-set needs the row
    count, which the batched audit writer does not give)."""

    def __init__(
        self, db: str | Path, *, owner: str, clock: Clock = time.time, lease_s: float = DEFAULT_LEASE_S
    ):
        self.db = Path(db)
        self.owner = owner
        self.clock = clock
        self.lease_s = lease_s
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.db)
        return self._conn

    def close(self) -> None:
        retire_owner(self.owner)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def deadline(self) -> float:
        return self.clock() + self.lease_s

    def claimable(self) -> list[dict[str, Any]]:
        """Live runs whose owner is gone or whose lease lapsed, oldest first."""
        conn = self._connection()
        marks = ",".join("?" * len(LIVE))
        rows = conn.execute(
            f"select id, owner, lease_expires, status, resumes from runs where status in ({marks})"
            " and (owner is null or owner != ?) order by started_at",
            (*LIVE, self.owner),
        ).fetchall()
        now = self.clock()
        return [
            dict(r)
            for r in rows
            if owner_gone(r["owner"], self.owner)
            or (r["lease_expires"] is not None and r["lease_expires"] < now)
            or (r["lease_expires"] is None and not _local(r["owner"]))
        ]

    def claim(self, run_id: str, seen_owner: str | None, *, count_resume: bool = True) -> bool:
        """Take the run over if it still has the owner we saw (compare-and-set); True if we now own it."""
        conn = self._connection()
        with conn:
            cur = conn.execute(
                "update runs set owner = ?, lease_expires = ?, resumes = resumes + ? where id = ?"
                " and owner is ?",
                (self.owner, self.deadline(), 1 if count_resume else 0, run_id, seen_owner),
            )
        return cur.rowcount == 1

    def renew(self, run_ids: Sequence[str]) -> set[str]:
        """Extend our lease on `run_ids`; returns the ids we no longer own (taken over while we stalled)."""
        if not run_ids:
            return set()
        conn = self._connection()
        deadline = self.deadline()
        lost = set()
        with conn:
            for run_id in run_ids:
                cur = conn.execute(
                    "update runs set lease_expires = ? where id = ? and owner = ?",
                    (deadline, run_id, self.owner),
                )
                if cur.rowcount != 1:
                    lost.add(run_id)
        return lost

    def release(self) -> None:
        """Give up every lease we hold (on shutdown): our unfinished runs may be taken over at once."""
        conn = self._connection()
        marks = ",".join("?" * len(LIVE))
        conn.execute(
            f"update runs set lease_expires = 0 where owner = ? and status in ({marks})", (self.owner, *LIVE)
        )

    def take_orphan(self, run_id: str) -> bool:
        """Take a live run whose owner is gone or whose lease lapsed (compare-and-set); True if we now own it."""
        conn = self._connection()
        row = conn.execute("select owner, lease_expires from runs where id = ?", (run_id,)).fetchone()
        if row is None:
            return False
        lapsed = row["lease_expires"] is not None and row["lease_expires"] < self.clock()
        if not (owner_gone(row["owner"], self.owner) or lapsed):
            return False
        return self.claim(run_id, row["owner"], count_resume=False)

    def reopen(self, run_id: str) -> bool:
        """Claim an interrupted run to resume it by hand (compare-and-set on its status); resets its automatic
        resume count."""
        conn = self._connection()
        cur = conn.execute(
            "update runs set owner = ?, lease_expires = ?, resumes = 0, status = 'running' where id = ?"
            " and status = 'interrupted'",
            (self.owner, self.deadline(), run_id),
        )
        return cur.rowcount == 1


def _local(owner: str | None) -> bool:
    return bool(owner) and str(owner).split(":")[0] == HOST
