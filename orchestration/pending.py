"""One way to wait for the outside world.

A run that needs an answer it cannot compute (the client's model on a 2026-07-28 connection, a human's
approval, ...) records a pending request in the audit, parks (`awaiting_input` / `awaiting_approval`), and
waits. Whichever channel answers first (a tool call, elicitation, the CLI) resolves it, exactly once; a second
answer is refused. Expiry and cancellation are recorded the same way for every kind.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from orchestration.audit.log import AuditLog, Event, Write
from orchestration.audit.schema import now, timestamp
from orchestration.errors import InvalidInputError, WriteConflict
from orchestration.ids import new_id

PARKED_BY_KIND = {"approval": "awaiting_approval", "host_step": "awaiting_host"}
"""The run status while a request of this kind is the oldest open one (others: `awaiting_input`)."""


@dataclass
class PendingRequest:
    """A question a run is waiting on."""

    id: str
    run_id: str
    kind: str
    """`sampling`, `approval`, ..."""
    payload: dict[str, Any]
    """What is asked, in the kind's own shape (for sampling: the MCP request params)."""
    step_id: str | None
    expires_at: str | None
    response: Any = None
    channel: str | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


class PendingRequests:
    """The open questions of this process's runs."""

    def __init__(self, audit: AuditLog, on_change: Callable[[str], None] | None = None) -> None:
        self.audit = audit
        self._on_change = on_change
        self._open: dict[str, PendingRequest] = {}
        self.keep_on_shutdown = False
        """Set while the server stops: open requests stay open in the audit, to be adopted after a restart."""
        self._let_go: set[str] = set()
        """Runs another process took over: their open requests are left as they are, for the new owner."""
        self._changed = anyio.Event()

    def open_for(self, run_id: str | None = None, kind: str | None = None) -> list[PendingRequest]:
        """Unanswered requests, oldest first, optionally of one run and kind."""
        return [
            r
            for r in self._open.values()
            if (run_id is None or r.run_id == run_id) and (kind is None or r.kind == kind)
        ]

    def let_go(self, run_id: str) -> None:
        """Another process owns `run_id` now: its open questions stay open in the audit for that process."""
        self._let_go.add(run_id)

    def forget(self, run_id: str) -> None:
        """`run_id` stopped running in this process (ended, or let go): keep nothing of it."""
        self._let_go.discard(run_id)

    def get(self, request_id: str) -> PendingRequest | None:
        return self._open.get(request_id)

    async def wait_changed(self) -> None:
        """Return when a request is opened or resolved."""
        await self._changed.wait()

    def _signal(self, run_id: str) -> None:
        if self._on_change is not None:
            self._on_change(run_id)
        self._changed.set()
        self._changed = anyio.Event()

    async def ask(
        self,
        run_id: str,
        kind: str,
        payload: dict[str, Any],
        *,
        step_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - recorded as the request's expiry
        park_as: str = "awaiting_input",
        adopt: dict[str, Any] | None = None,
    ) -> tuple[Any, str]:
        """Open a request, park the run as `park_as`, wait for the answer: `(response, channel)`.

        `adopt` is a recorded request row of this run asked before a server restart: it is waited on again (an
        answer given meanwhile through the CLI is picked up) instead of asking twice.
        Raises `TimeoutError` after `timeout` seconds (the request is recorded as expired).
        """
        if adopt is not None and adopt.get("status") == "resolved":
            # decided before the restart: the decision stands, nobody is asked again
            response = json.loads(adopt["response"]) if adopt.get("response") else None
            return response, adopt.get("channel") or "unknown"
        park = (
            "update runs set status = ? where id = ? and status in ('running', ?)",
            (park_as, run_id, park_as),
        )
        if adopt is not None:
            expires = adopt["expires_at"]
            if expires:
                timeout = max((datetime.fromisoformat(expires) - datetime.now(UTC)).total_seconds(), 0.001)
            request = PendingRequest(adopt["id"], run_id, kind, payload, step_id, expires)
            await self.audit.write(
                Write(
                    [park],
                    [Event("input_readopted", run_id, {"request_id": request.id, "kind": kind}, step_id)],
                )
            )
        else:
            expires = timestamp(datetime.now(UTC) + timedelta(seconds=timeout)) if timeout else None
            request = PendingRequest(new_id("req"), run_id, kind, payload, step_id, expires)
            insert = (
                "insert into pending_requests (id, run_id, step_id, kind, status, payload, created_at, expires_at)"
                " values (?, ?, ?, ?, 'pending', ?, ?, ?)",
                (request.id, run_id, step_id, kind, json.dumps(payload, default=str), now(), expires),
            )
            events = [
                Event(
                    "input_requested",
                    run_id,
                    {"request_id": request.id, "kind": kind, "expires_at": expires},
                    step_id,
                )
            ]
            if kind == "approval":
                # what the human is shown is bound to the chain: decisions are checked against this event,
                # never against the (editable) pending_requests row
                events.append(
                    Event(
                        "approval_requested",
                        run_id,
                        {"action_id": request.id, **payload, "expires_at": expires},
                        step_id,
                    )
                )
            await self.audit.write(Write([insert, park], events))
        self._open[request.id] = request
        try:
            return await self._answer_of(request, adopt, timeout)
        finally:
            # nobody waits on it any more (answered, expired, cancelled, or its close failed): an open request
            # left here would be kept, and listed as open, for the life of the process
            if self._open.pop(request.id, None) is not None:
                self._signal(run_id)

    async def _answer_of(
        self,
        request: PendingRequest,
        adopt: dict[str, Any] | None,
        timeout: float | None,  # noqa: ASYNC109 - recorded as the request's expiry
    ) -> tuple[Any, str]:
        """Wait for the answer to `request` (already open): see `ask`."""
        run_id = request.run_id
        answered = adopt.get("chained_response") if adopt is not None else None
        if adopt is not None and adopt.get("status") == "answered" and answered is not None:
            # answered (through the CLI) while no server was running: apply it now, nobody needs to be asked
            await self.resolve(
                request.id,
                answered,
                channel=adopt.get("channel") or "cli",
                decided_by=adopt.get("decided_by"),
                expect=("answered",),
            )
        else:
            self._signal(run_id)
        try:
            with anyio.fail_after(timeout) if timeout else anyio.CancelScope():
                await request.done.wait()
        except (TimeoutError, anyio.get_cancelled_exc_class()) as exc:
            if (self.keep_on_shutdown or run_id in self._let_go) and not isinstance(exc, TimeoutError):
                # the server is stopping: the question stays open in the audit for the next server to adopt
                self._open.pop(request.id, None)
                raise
            status = "expired" if isinstance(exc, TimeoutError) else "cancelled"
            with anyio.CancelScope(shield=True):
                try:
                    await self._close(request, status, None, None, None, expect=("pending", "answered"))
                except WriteConflict:
                    if not isinstance(exc, TimeoutError):
                        raise exc from None
                    # decided an instant before it expired: the decision stands
                    with anyio.move_on_after(30):
                        await request.done.wait()
                    if request.done.is_set():
                        return request.response, request.channel or "unknown"
            raise
        return request.response, request.channel or "unknown"

    async def resolve(
        self,
        request_id: str,
        response: Any,
        *,
        channel: str,
        decided_by: str | None = None,
        events: Sequence[Event] = (),
        expect: tuple[str, ...] = ("pending",),
    ) -> PendingRequest:
        """Answer a request, exactly once: a compare-and-set on its row (status in `expect`) in the same
        transaction as its events (`events` first, e.g. `approval_decided`, then `input_received`).

        A second answer, one for an unknown id, or one that loses a race with another process (the CLI) is
        refused: `InvalidInputError` / `WriteConflict`, and nothing of it is recorded.
        """
        request = self._open.get(request_id)
        if request is None:
            raise InvalidInputError(
                f"no open request {request_id!r}: it was already answered, expired, or never existed"
            )
        await self._close(request, "resolved", response, channel, decided_by, events=events, expect=expect)
        request.response, request.channel = response, channel
        request.done.set()
        return request

    async def _close(
        self,
        request: PendingRequest,
        status: str,
        response: Any,
        channel: str | None,
        decided_by: str | None,
        *,
        events: Sequence[Event] = (),
        expect: tuple[str, ...] = ("pending", "answered"),
    ) -> None:
        if request.id not in self._open:
            return
        kind = {"resolved": "input_received", "expired": "input_expired"}.get(status, "input_cancelled")
        marks = ", ".join("?" * len(expect))
        guard = (
            "update pending_requests set status = ?, response = ?, channel = ?, decided_by = ?,"
            f" resolved_at = ? where id = ? and status in ({marks})",
            (
                status,
                json.dumps(response, default=str) if response is not None else None,
                channel,
                decided_by,
                now(),
                request.id,
                *expect,
            ),
        )
        # the run is unparked only when nothing else is awaited
        remaining = [r for r in self.open_for(request.run_id) if r.id != request.id]
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "update runs set status = ? where id = ? and status in"
                " ('awaiting_input', 'awaiting_approval', 'awaiting_host')",
                (
                    PARKED_BY_KIND.get(remaining[0].kind, "awaiting_input") if remaining else "running",
                    request.run_id,
                ),
            )
        ]
        closed = Event(
            kind,
            request.run_id,
            {"request_id": request.id, "kind": request.kind, "channel": channel, "status": status},
            request.step_id,
        )
        await self.audit.write(Write(statements, [*events, closed], guard=guard))
        if self._open.pop(request.id, None) is not None:
            self._signal(request.run_id)
