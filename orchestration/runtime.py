"""Runs: start one in the background, wait for it a bounded time, cancel it, read it back.

The `Runtime` owns the team config, the audit log, the provider factory, the pending requests, and a task
group in which runs execute. Its state of record is the audit database: `get_run` reads the row there.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from orchestration.approvals import Approvals
from orchestration.audit.log import AuditLog, Event, Write
from orchestration.audit.read import AuditReader
from orchestration.audit.schema import now
from orchestration.config import TeamConfig
from orchestration.context import Listener, Outcome, ProviderFactory, Replay, RunBody, RunContext
from orchestration.errors import (
    ConcertmasterError,
    GuardrailTripped,
    InvalidInputError,
    RunNotFoundError,
)
from orchestration.governance import PolicyBook
from orchestration.guard import Budget
from orchestration.models.sampling import Sampler
from orchestration.pending import PendingRequests
from orchestration.providers import DefaultProviders
from orchestration.step import StepFailed, new_id
from orchestration.toolbox import Toolbox
from policies.limits import Limits

log = logging.getLogger("concertmaster")

__all__ = ["RunBody", "Runtime"]

OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""Who runs a run: this host and process (another server on the same database leaves it alone)."""


def owner_alive(owner: str | None) -> bool:
    """Is the process that owns a run still running (on this host)?"""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's run: we can't tell, and it can't be resumed here either
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TERMINAL = frozenset({"succeeded", "failed", "stopped", "cancelled", "interrupted"})
PARKED = ("awaiting_input", "awaiting_approval", "awaiting_host")


@dataclass
class _Active:
    ctx: RunContext
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    wake: anyio.Event = field(default_factory=anyio.Event)


class Runtime:
    """The orchestration core as one object: use `async with Runtime(config, audit) as rt:`."""

    def __init__(
        self, config: TeamConfig, audit: AuditLog, *, providers: ProviderFactory | None = None
    ) -> None:
        self.config = config
        self.audit = audit
        self.providers: ProviderFactory = providers or DefaultProviders()
        self.pending = PendingRequests(audit, on_change=self._wake)
        self.toolbox = Toolbox(config.mcp_servers)
        self.policies = PolicyBook(config)
        self.limits = self.policies.limits()
        self.on_budget = self.policies.team_policy().on_budget
        self._active: dict[str, _Active] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._tg: TaskGroup | None = None
        self._reader: AuditReader | None = None
        self._stopping = False
        self._parked: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> Runtime:
        self.audit.open()
        self._reader = AuditReader(self.audit.path)
        resumable = await self._mark_interrupted("the server stopped while the run was in progress")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self.toolbox.bind(self._tg)
        self._tg.start_soon(self._poll_external_answers)
        for row in resumable:
            await self._resume(row)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping = True
        # runs waiting for a human keep waiting in the audit; the next server adopts them
        self._parked = {r.run_id for r in self.pending.open_for() if r.kind in ("approval", "host_step")}
        self.pending.keep_on_shutdown = True
        self.toolbox.close()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
        if self._reader is not None:
            self._reader.close()
        self.audit.close()

    async def _poll_external_answers(self, interval: float = 0.25) -> None:
        """Pick up answers written by another process (the CLI approving an action) for our open requests."""
        while True:
            await anyio.sleep(interval)
            if not self.pending.open_for() or self._reader is None:
                continue
            for row in self._reader.query(
                "select id, response, channel, decided_by from pending_requests where status = 'answered'"
            ):
                if self.pending.get(row["id"]) is None:
                    continue
                response = json.loads(row["response"]) if row["response"] else None
                await self.pending.resolve(
                    row["id"], response, channel=row["channel"] or "cli", decided_by=row["decided_by"]
                )

    async def _mark_interrupted(self, reason: str) -> list[dict[str, Any]]:
        """Runs left in progress by a process that is gone can't continue: say so in the audit.

        Another live server on the same database (two clients each start one) keeps its runs: a run's
        `owner` names the host and process that runs it.
        """
        assert self._reader is not None
        stale = self._reader.query(
            "select id, owner, status, options, input from runs where status in"
            " ('running', 'queued', 'awaiting_input', 'awaiting_approval', 'awaiting_host')"
        )
        resumable = []
        for row in stale:
            if owner_alive(row["owner"]):
                continue
            if row["status"] in ("awaiting_approval", "awaiting_host") and "recipe" in json.loads(
                row["options"] or "{}"
            ):
                resumable.append(row)
                continue
            await self.audit.write(
                Write(
                    [
                        (
                            "update runs set status = 'interrupted', stop_reason = 'server_restart', error = ?,"
                            " ended_at = ? where id = ?",
                            (reason, now(), row["id"]),
                        ),
                        (
                            "update steps set status = 'interrupted', ended_at = ? where run_id = ? and status = 'running'",
                            (now(), row["id"]),
                        ),
                        (
                            "update pending_requests set status = 'cancelled', resolved_at = ? where run_id = ?"
                            " and status in ('pending', 'answered')",
                            (now(), row["id"]),
                        ),
                    ],
                    [Event("run_interrupted", row["id"], {"reason": reason})],
                )
            )
        return resumable

    # -- runs --------------------------------------------------------------------------------------
    async def start_run(
        self,
        pattern: str,
        input: str,
        body: RunBody,
        *,
        options: dict[str, Any] | None = None,
        sampler: Sampler | None = None,
        limits: Limits | None = None,
        control: str = "centralized",
        recipe: dict[str, Any] | None = None,
    ) -> str:
        """Record a new run and start `body` in the background; returns the run id at once."""
        if self._tg is None:
            raise ConcertmasterError("the runtime is not started; use `async with Runtime(...)`")
        run_id = new_id("run")
        limits = limits or self.limits
        ctx = RunContext(
            run_id=run_id,
            config=self.config,
            audit=self.audit,
            budget=Budget(limits, on_budget=self.on_budget),
            providers=self.providers,
            sampler=sampler,
            control=control,
            listeners=self._listeners.setdefault(run_id, []),
            pending=self.pending,
            toolbox=self.toolbox,
            gate=self.policies.gate,
            recipe=recipe,
        )
        opts = {**(options or {}), "limits": limits.model_dump(exclude_defaults=True)}
        if recipe is not None:  # how to rebuild the run if it must resume after a restart
            opts["recipe"] = recipe
        await self.audit.write(
            Write(
                [
                    (
                        "insert into runs (id, pattern, control, status, input, options, started_at, owner)"
                        " values (?, ?, ?, 'running', ?, ?, ?, ?)",
                        (run_id, pattern, control, input, json.dumps(opts, default=str), now(), OWNER),
                    )
                ],
                [
                    Event(
                        "run_started",
                        run_id,
                        {"pattern": pattern, "control": control, "input": input, "options": opts},
                    )
                ],
            )
        )
        active = _Active(ctx)
        self._active[run_id] = active
        self._tg.start_soon(self._execute, active, body)
        return run_id

    async def _execute(self, active: _Active, body: RunBody) -> None:
        ctx = active.ctx
        outcome: Outcome
        try:
            with active.scope:
                try:
                    with anyio.fail_after(ctx.budget.limits.run_timeout_s):
                        outcome = await body(ctx)
                except GuardrailTripped as exc:
                    outcome = Outcome(ctx.partial, "stopped", exc.limit, exc.message)
                except TimeoutError:
                    limit = ctx.budget.limits.run_timeout_s
                    outcome = Outcome(
                        ctx.partial,
                        "stopped",
                        "run_timeout_s",
                        f"the run took longer than run_timeout_s={limit:g} s",
                    )
                except StepFailed as exc:
                    outcome = Outcome(ctx.partial, "failed", "step_failed", exc.message)
                except ConcertmasterError as exc:
                    outcome = Outcome(ctx.partial, "failed", exc.code, exc.message)
                except Exception as exc:  # a bug must fail the run, not the server
                    log.exception("run %s crashed", ctx.run_id)
                    outcome = Outcome(
                        ctx.partial,
                        "failed",
                        "internal_error",
                        f"internal error ({type(exc).__name__}): {exc}",
                    )
            if active.scope.cancelled_caught or (self._stopping and active.scope.cancel_called):
                raise anyio.get_cancelled_exc_class()()
            await self._finish(
                ctx, outcome.status, outcome.reason, outcome.output, outcome.error, outcome.data
            )
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                if self._stopping and ctx.run_id in self._parked and ctx.recipe:
                    pass  # left awaiting_approval, with its question open, for the next server to resume
                elif self._stopping:
                    await self._finish(
                        ctx,
                        "interrupted",
                        "server_shutdown",
                        ctx.partial,
                        "the server stopped while the run was in progress",
                    )
                else:
                    await self._finish(ctx, "cancelled", "cancelled", ctx.partial, "cancelled by the user")
            if self._stopping:
                raise
        finally:
            active.done.set()
            active.wake.set()
            self._active.pop(ctx.run_id, None)

    async def _resume(self, row: dict[str, Any]) -> None:
        """Continue a run that was waiting for a human when its server stopped: finished steps are replayed from
        the audit, the unfinished step replays its recorded replies and tool results, and the open approval is
        adopted (a decision given meanwhile through the CLI is applied)."""
        from orchestration.models.base import ModelResponse, ToolCall
        from orchestration.patterns.registry import build

        assert self._tg is not None and self._reader is not None
        run_id, opts = row["id"], json.loads(row["options"] or "{}")
        recipe = opts["recipe"]
        body = build(recipe["pattern"], recipe["members"], row["input"], recipe.get("options") or {})
        steps = self._reader.query("select * from steps where run_id = ?", (run_id,))
        recorded = {s["key"]: s for s in steps if s["status"] == "succeeded"}
        unfinished: dict[str, Replay] = {}
        for step in steps:
            if step["status"] == "succeeded":
                continue
            replay = Replay(step["id"])
            for ev in self._reader.events(run_id):
                if ev["step_id"] != step["id"]:
                    continue
                payload = ev["payload"]
                if ev["kind"] == "model_called" and "reply" in payload:
                    reply = payload["reply"]
                    calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in reply["calls"])
                    replay.replies.append(
                        ModelResponse(
                            reply["text"],
                            payload["model"],
                            payload["provider"],
                            tool_calls=calls,
                            stop_reason=reply.get("stop_reason"),
                        )
                    )
                elif ev["kind"] == "tool_called" and payload.get("call_id"):
                    replay.tool_results[payload["call_id"]] = (payload["result"], bool(payload["is_error"]))
            unfinished[step["key"]] = replay
        limits = self.limits.merged(**opts.get("limits", {}))
        ctx = RunContext(
            run_id=run_id,
            config=self.config,
            audit=self.audit,
            budget=Budget(limits, on_budget=self.on_budget),
            providers=self.providers,
            control=row.get("control") or "centralized",
            listeners=self._listeners.setdefault(run_id, []),
            pending=self.pending,
            toolbox=self.toolbox,
            gate=self.policies.gate,
            recorded=recorded,
            unfinished=unfinished,
            resumed=True,
            recipe=recipe,
        )
        await ctx.record(
            "run_resumed",
            {"owner": OWNER, "replayed_steps": len(recorded), "unfinished_steps": len(unfinished)},
            statements=[("update runs set owner = ? where id = ?", (OWNER, run_id))],
        )
        active = _Active(ctx)
        self._active[run_id] = active
        self._tg.start_soon(self._execute, active, body)

    async def _finish(
        self,
        ctx: RunContext,
        status: str,
        reason: str,
        output: str,
        error: str | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        payload = {
            "status": status,
            "reason": reason,
            "output": output,
            "error": error,
            **({"data": data} if data else {}),
        }
        await ctx.record(
            "run_finished",
            payload,
            statements=[
                (
                    "update runs set status = ?, stop_reason = ?, output = ?, error = ?, ended_at = ?"
                    " where id = ?",
                    (status, reason, output, error, now(), ctx.run_id),
                ),
                # a step cut short by cancellation or shutdown must not stay 'running' forever
                (
                    "update steps set status = ?, ended_at = ? where run_id = ? and status = 'running'",
                    ("cancelled" if status == "cancelled" else "interrupted", now(), ctx.run_id),
                ),
            ],
        )
        self._listeners.pop(ctx.run_id, None)

    def _wake(self, run_id: str) -> None:
        active = self._active.get(run_id)
        if active is not None:
            active.wake.set()

    async def wait(
        self,
        run_id: str,
        seconds: float,
        *,
        wake_on_pending: tuple[str, ...] = (),
        known: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Wait up to `seconds` for the run to end, or for a pending request of a kind in `wake_on_pending`
        other than the `known` ones; then return its row."""
        run = self.get_run(run_id)
        active = self._active.get(run_id)
        if active is not None:
            with anyio.move_on_after(max(seconds, 0)):
                while not active.done.is_set():
                    if wake_on_pending and any(
                        r.kind in wake_on_pending and r.id not in known for r in self.pending.open_for(run_id)
                    ):
                        break
                    if active.wake.is_set():
                        active.wake = anyio.Event()
                    await active.wake.wait()
            run = self.get_run(run_id)
        return run

    async def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a running run and return its row (already-ended runs are returned unchanged)."""
        run = self.get_run(run_id)
        active = self._active.get(run_id)
        if active is None:
            return run
        active.scope.cancel()
        with anyio.move_on_after(10):
            await active.done.wait()
        return self.get_run(run_id)

    def is_active(self, run_id: str) -> bool:
        return run_id in self._active

    def subscribe(self, run_id: str, listener: Listener) -> Callable[[], None]:
        """Call `listener` for each new event of the run; returns the function that unsubscribes."""
        listeners = self._listeners.get(run_id)
        if listeners is None or run_id not in self._active:
            return lambda: None
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    # -- reading -----------------------------------------------------------------------------------
    @property
    def reader(self) -> AuditReader:
        if self._reader is None:
            raise ConcertmasterError("the runtime is not started")
        return self._reader

    @property
    def approvals(self) -> Approvals:
        """Deciding on this runtime's pending approvals."""
        return Approvals(self.pending, self.audit, self.reader)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's row, or `RunNotFoundError`."""
        if not isinstance(run_id, str) or not run_id.strip():
            raise InvalidInputError("run_id is empty; pass the run_id a run-starting tool returned")
        run = self.reader.run(run_id.strip())
        if run is None:
            raise RunNotFoundError(run_id)
        return run
