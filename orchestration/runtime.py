"""Runs: start one in the background, wait for it a bounded time, cancel it, read it back.

The `Runtime` owns the team config, the audit log, the provider factory, the pending requests, and a task
group in which runs execute. Its state of record is the audit database: `get_run` reads the row there.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from orchestration.agent_tools import tools_for
from orchestration.approvals import Approvals, answers_from_elsewhere
from orchestration.audit.log import AuditLog, Event, Write
from orchestration.audit.read import AuditReader
from orchestration.audit.recompute import Usage
from orchestration.audit.retry import until_written
from orchestration.audit.schema import now
from orchestration.config import TeamConfig
from orchestration.context import Listener, Outcome, ProviderFactory, RunBody, RunContext, RunEngine
from orchestration.errors import (
    AuditError,
    ConcertmasterError,
    GuardrailTripped,
    InvalidInputError,
    RunNotFoundError,
)
from orchestration.governance import PolicyBook
from orchestration.guard import Budget
from orchestration.ids import new_id
from orchestration.journal import Journal, load_journal
from orchestration.lease import Clock, Leases, new_owner
from orchestration.models.base import ModelProvider
from orchestration.models.sampling import Sampler
from orchestration.outcomes import AgentTool, StepFailed
from orchestration.pending import PendingRequests
from orchestration.providers import DefaultProviders
from orchestration.spec import RunSpec, check_members
from orchestration.step import run_step
from orchestration.telemetry import traced_run
from orchestration.toolbox import Toolbox
from policies.limits import Limits

log = logging.getLogger("concertmaster")

__all__ = ["RunBody", "RunSpec", "Runtime"]

TERMINAL = frozenset({"succeeded", "failed", "stopped", "cancelled", "interrupted"})


@dataclass
class _Active:
    ctx: RunContext
    resumable: bool = True
    """False for a run from a bare body: interrupted, not left to resume, when the server stops."""
    lost: bool = False
    """Another server took the run over (our lease lapsed): stop without writing."""
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    wake: anyio.Event = field(default_factory=anyio.Event)


class Runtime:
    """The orchestration core as one object: use `async with Runtime(config, audit) as rt:`.

    This is the embedded engine: runs execute in this process's task group, every effect is recorded in the
    audit before the run acts on it, and a run this process stops running (shutdown, crash, kill -9) is taken
    over by the next live server on the same database, which replays its journal and goes on.
    """

    def __init__(
        self,
        config: TeamConfig,
        audit: AuditLog,
        *,
        providers: ProviderFactory | None = None,
        clock: Clock = time.time,
        adopt: bool = True,
    ) -> None:
        self.config = config
        self.audit = audit
        self.providers: ProviderFactory = providers or DefaultProviders()
        self.pending = PendingRequests(audit, on_change=self._wake)
        self.toolbox = Toolbox(config.mcp_servers)
        self.policies = PolicyBook(config)
        self.limits = self.policies.limits()
        self.on_budget = self.policies.team_policy().on_budget
        self.owner = new_owner()
        """This process as the owner of the runs it runs (host:pid:nonce)."""
        self.leases = Leases(audit.path, owner=self.owner, clock=clock, lease_s=config.runs.lease_s)
        self._active: dict[str, _Active] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._tg: TaskGroup | None = None
        self._reader: AuditReader | None = None
        self._stopping = False
        self._adopt = adopt
        """Take over runs whose server is gone (a server does; `concertmaster resume` runs only its run)."""

    # -- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> Runtime:
        self.audit.open()
        self._reader = AuditReader(self.audit.path)
        self._reader.warm()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self.toolbox.bind(self._tg)
        self._tg.start_soon(self._poll_external_answers)
        if self._adopt:
            await self.adopt_orphans()
        self._tg.start_soon(self._keep_leases)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping = True
        # questions stay open in the audit, and runs stay in their status: the next server takes them over
        self.pending.keep_on_shutdown = True
        self.toolbox.close()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
        self._release_leases()
        self.leases.close()
        if self._reader is not None:
            self._reader.close()
        self.audit.close()

    def _release_leases(self) -> None:
        """Runs we leave unfinished on shutdown can be taken over at once (no need to wait out the lease)."""
        with contextlib.suppress(Exception):
            self.leases.release()

    async def _poll_external_answers(self, interval: float = 0.25) -> None:
        """Pick up answers written by another process (the CLI approving an action) for our open requests."""
        while True:
            await anyio.sleep(interval)
            if not self.pending.open_for() or self._reader is None:
                continue
            try:  # a database that can't be read or written now is tried again next round
                open_ids = {r.id for r in self.pending.open_for()}
                for row in await answers_from_elsewhere(self._reader, self.audit, open_ids):
                    if self.pending.get(row["id"]) is None:
                        continue
                    await self.pending.resolve(
                        row["id"],
                        row["response"],
                        channel=row["channel"],
                        decided_by=row["decided_by"],
                        expect=("answered",),
                    )
            except ConcertmasterError as exc:
                log.warning("could not pick up decisions made elsewhere: %s", exc.message)

    async def _keep_leases(self) -> None:
        """Renew our leases every third of the lease, give up runs another server took over while we stalled,
        and take over runs whose server died meanwhile."""
        while True:
            await anyio.sleep(self.leases.lease_s / 3)
            await self.renew_leases()
            if self._adopt:
                await self.adopt_orphans()

    async def renew_leases(self) -> None:
        """Extend our claim on the runs we run; a run we lost (our lease lapsed and another server took it) is
        stopped here without writing anything more: its new owner runs it."""
        lost = await anyio.to_thread.run_sync(self.leases.renew, list(self._active))
        for run_id in lost:
            active = self._active.get(run_id)
            if active is not None:
                log.warning("run %s was taken over by another server; stopping it here", run_id)
                active.lost = True
                active.ctx.engine.fenced = True
                self.pending.let_go(run_id)
                active.scope.cancel()

    async def adopt_orphans(self) -> list[str]:
        """Take over every run whose server is gone or whose lease lapsed: resume it (`[runs] resume = "auto"`,
        within `max_auto_resumes`), or mark it interrupted for a manual resume. Returns the ids resumed."""
        assert self._reader is not None
        resumed = []
        runs = self.config.runs
        for row in await anyio.to_thread.run_sync(self.leases.claimable):
            run_id, seen = str(row["id"]), row["owner"]
            if run_id in self._active:
                continue
            # a server that stopped cleanly released its lease (0): only a crash counts toward the cap
            crashed = row["lease_expires"] != 0
            auto = runs.resume == "auto" and (not crashed or int(row["resumes"] or 0) < runs.max_auto_resumes)
            claim = functools.partial(self.leases.claim, run_id, seen, count_resume=auto and crashed)
            if not await anyio.to_thread.run_sync(claim):
                continue  # another server was quicker
            run = self.reader.run(run_id)
            if run is None:
                continue
            try:
                spec = self._stored_spec(run)
            except ConcertmasterError as exc:  # never a crash loop: this run fails, the server goes on
                await self._fail_resume(run_id, exc.message)
                continue
            if spec is None:
                await self._interrupt(
                    run_id, "server_restart", "the server stopped while the run was in progress"
                )
            elif not auto:
                why = (
                    f"the run was resumed automatically {runs.max_auto_resumes} times"
                    if runs.resume == "auto"
                    else 'its server stopped and [runs] resume = "manual"'
                )
                await self._interrupt(
                    run_id,
                    "resume_required" if runs.resume == "manual" else "resume_limit",
                    f"{why}; continue it with the resume_run tool or `concertmaster resume {run_id}`",
                )
            else:
                await self._resume(run, spec)
                resumed.append(run_id)
        return resumed

    async def _interrupt(self, run_id: str, reason: str, error: str, *, status: str = "interrupted") -> None:
        """End a run that is not running here (interrupted for a manual resume, or cancelled)."""
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "update runs set status = ?, stop_reason = ?, error = ?, ended_at = ?, lease_expires = null"
                " where id = ?",
                (status, reason, error, now(), run_id),
            ),
            (
                "update steps set status = ?, ended_at = ? where run_id = ? and status = 'running'",
                (status, now(), run_id),
            ),
        ]
        if status == "cancelled":  # nobody needs to answer its questions any more
            statements.append(
                (
                    "update pending_requests set status = 'cancelled', resolved_at = ? where run_id = ?"
                    " and status in ('pending', 'answered')",
                    (now(), run_id),
                )
            )
        kind = "run_interrupted" if status == "interrupted" else "run_finished"
        await self.audit.write(
            Write(statements, [Event(kind, run_id, {"status": status, "reason": reason, "error": error})])
        )

    def _stored_spec(self, run: dict[str, Any]) -> RunSpec | None:
        """The run's description, or None for a run started from a bare body (it cannot be rebuilt)."""
        if run.get("spec"):
            return RunSpec.load(run["spec"])
        legacy = RunSpec.from_legacy(run)
        if legacy is not None and legacy.limits is None:
            stored = json.loads(run.get("options") or "{}").get("limits") or {}
            legacy = legacy.with_limits(self.limits.merged(**stored))
        return legacy

    # -- runs --------------------------------------------------------------------------------------
    async def start(
        self, spec: RunSpec, *, sampler: Sampler | None = None, principal: str | None = None
    ) -> str:
        """Validate and record a run described by `spec`, start it in the background; returns its id at once.

        This is the one way to start a run that survives a restart: tools, the library and sub-teams use it."""
        check_members(self.config, spec)
        spec = spec if spec.limits is not None else spec.with_limits(self.limits)
        body = spec.build()  # validates the pattern's options
        return await self.start_run(
            spec.pattern,
            spec.task,
            body,
            options={"agents": list(spec.members), **spec.options},
            sampler=sampler,
            limits=spec.limits,
            control=spec.control,
            spec=spec,
            principal=principal,
        )

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
        spec: RunSpec | None = None,
        principal: str | None = None,
    ) -> str:
        """Record a new run of `body` and start it in the background; returns the run id at once. `principal` is
        who started it (only they, and approvers, may read or decide it over HTTP).

        A run started with a bare `body` (no `spec`) cannot be rebuilt: it is interrupted, not resumed, when
        its server stops. Prefer `start(spec)`."""
        if self._tg is None:
            raise ConcertmasterError("the runtime is not started; use `async with Runtime(...)`")
        run_id = new_id("run")
        limits = limits or self.limits
        opts = {**(options or {}), "limits": limits.model_dump(exclude_defaults=True)}
        await self.audit.write(
            Write(
                [
                    (
                        "insert into runs (id, pattern, control, status, input, options, started_at, owner, spec,"
                        " lease_expires, principal) values (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                        (
                            run_id,
                            pattern,
                            control,
                            input,
                            json.dumps(opts, default=str),
                            now(),
                            self.owner,
                            spec.dump() if spec is not None else None,
                            self.leases.deadline(),
                            principal,
                        ),
                    )
                ],
                [
                    Event(
                        "run_started",
                        run_id,
                        {
                            "pattern": pattern,
                            "control": control,
                            "input": input,
                            "options": opts,
                            **({"spec": spec.model_dump(mode="json")} if spec is not None else {}),
                            "principal": principal,
                        },
                    )
                ],
            )
        )
        # created after the write, so a start that failed to be recorded leaves no listeners entry behind
        ctx = self._context(run_id, limits, control, sampler=sampler)
        self._launch(ctx, traced_run(body, run_id, pattern, control), resumable=spec is not None)
        return run_id

    def _context(
        self,
        run_id: str,
        limits: Limits,
        control: str,
        *,
        sampler: Sampler | None = None,
        journal: Journal | None = None,
        listened: bool = True,
    ) -> RunContext:
        """The context of run `run_id`; `listened=False` for a context no run owns (a probe): no listeners."""
        budget = Budget(limits, on_budget=self.on_budget)
        if journal is not None:  # the run clock goes on from where it was; downtime is not counted
            budget.started -= journal.elapsed_s
        engine = RunEngine(
            audit=self.audit,
            providers=self.providers,
            sampler=sampler,
            listeners=self._listeners.setdefault(run_id, []) if listened else [],
            journal=journal,
            pending=self.pending,
            toolbox=self.toolbox,
            gate=self.policies.gate,
            run_step=run_step,
            build_team=RunSpec.build,
            agent_tools=self._agent_tools,
        )
        return RunContext(run_id=run_id, config=self.config, budget=budget, engine=engine, control=control)

    def _launch(self, ctx: RunContext, body: RunBody, *, resumable: bool) -> None:
        assert self._tg is not None
        active = _Active(ctx, resumable=resumable)
        self._active[ctx.run_id] = active
        self._tg.start_soon(self._execute, active, body)

    async def _execute(self, active: _Active, body: RunBody) -> None:
        ctx = active.ctx
        outcome: Outcome
        try:
            with active.scope:
                try:
                    with anyio.fail_after(max(ctx.budget.remaining_seconds(), 0)):
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
                if active.lost:
                    pass  # another server owns the run now: it writes what happens next
                elif self._stopping and active.resumable:
                    pass  # left as it is, for the next server to take over and resume
                elif self._stopping:
                    await self._finish(
                        ctx,
                        "interrupted",
                        "server_shutdown",
                        ctx.partial,
                        "the server stopped while the run was in progress (a run started from a bare body "
                        "cannot be resumed)",
                    )
                else:
                    await self._finish(ctx, "cancelled", "cancelled", ctx.partial, "cancelled by the user")
            if self._stopping:
                raise
        finally:
            active.done.set()
            active.wake.set()
            self._active.pop(ctx.run_id, None)
            self._listeners.pop(ctx.run_id, None)  # also when _finish did not run (a run another server took)
            self.pending.forget(ctx.run_id)

    async def resume_run(self, run_id: str) -> dict[str, Any]:
        """Resume an interrupted run here (`[runs] resume = "manual"`, or past `max_auto_resumes`); its
        automatic-resume count starts again. Returns its row."""
        run = self.get_run(run_id)
        if run_id in self._active:
            return run
        if run["status"] != "interrupted":
            raise InvalidInputError(
                f"run {run_id} is {run['status']}; only an interrupted run can be resumed"
                + (
                    " (a live run is resumed by itself when its server stops)"
                    if run["status"] not in TERMINAL
                    else ""
                )
            )
        spec = self._stored_spec(run)
        if spec is None:
            raise InvalidInputError(
                f"run {run_id} was started from a bare run body, not a run description; it cannot be rebuilt"
            )
        claimed = await anyio.to_thread.run_sync(self.leases.reopen, run_id)
        if not claimed:
            raise InvalidInputError(
                f"run {run_id} was resumed by someone else just now; follow it with get_run"
            )
        await self._resume(self.get_run(run_id), spec)
        return self.get_run(run_id)

    async def _resume(self, run: dict[str, Any], spec: RunSpec) -> None:
        """Continue a run from its journal: finished steps return their recorded outputs, the unfinished step
        replays its recorded replies and tool results, an open question is adopted (a decision given meanwhile
        through the CLI applies at once), and the run goes on where it stopped."""
        run_id = run["id"]
        try:
            check_members(self.config, spec)
            body = spec.build()
            steps, events = await anyio.to_thread.run_sync(self._journal_rows, run_id)
            journal = load_journal(steps, events)
        except ConcertmasterError as exc:
            await self._fail_resume(run_id, exc.message)
            return
        assert spec.limits is not None
        limits = spec.limits.merged(**journal.extensions)
        ctx = self._context(run_id, limits, spec.control, journal=journal)
        # the totals its row holds: what replays is not added again, what it calls from here on is
        ctx.engine.usage = Usage(run.get("input_tokens"), run.get("output_tokens"), run.get("cost_usd"))
        await ctx.record(
            "run_resumed",
            {
                "owner": self.owner,
                "steps_recorded": len(journal.steps),
                "finished_steps": sum(1 for s in journal.steps.values() if s.finished),
                "elapsed_s": round(journal.elapsed_s, 3),
                "resumes": journal.resumes + 1,
            },
            statements=[
                # a run parked on a human or the host stays so (its question is adopted) until answered
                (
                    "update runs set status = case when status in ('awaiting_approval', 'awaiting_host')"
                    " then status else 'running' end, stop_reason = null, error = null, ended_at = null"
                    " where id = ?",
                    (run_id,),
                ),
                # a question to the client's model can't outlive its session; it is asked again if needed
                (
                    "update pending_requests set status = 'cancelled', resolved_at = ? where run_id = ?"
                    " and kind = 'sampling' and status = 'pending'",
                    (now(), run_id),
                ),
            ],
        )
        self._launch(ctx, traced_run(body, run_id, spec.pattern, spec.control), resumable=True)

    def _journal_rows(self, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """All steps and all events of a run (uncapped: replay must see everything), one query each."""
        with AuditReader(self.audit.path) as reader:
            return reader.all_steps(run_id), reader.all_events(run_id)

    async def _fail_resume(self, run_id: str, why: str) -> None:
        message = f"the run could not be resumed: {why}"
        await self.audit.write(
            Write(
                [
                    (
                        "update runs set status = 'failed', stop_reason = 'resume_failed', error = ?, ended_at = ?,"
                        " lease_expires = null where id = ?",
                        (message, now(), run_id),
                    )
                ],
                [
                    Event(
                        "run_finished",
                        run_id,
                        {"status": "failed", "reason": "resume_failed", "error": message},
                    )
                ],
            )
        )

    async def _finish(
        self,
        ctx: RunContext,
        status: str,
        reason: str,
        output: str,
        error: str | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        for _ in range(2):  # again, once, if an earlier record of the run failed in the same commit
            # a record posted without waiting never landed: a run that lost part of its record can't succeed
            lost, ctx.engine.posting_error = ctx.engine.posting_error, None
            if lost is not None and status == "succeeded":
                status, reason, error = "failed", "audit_error", f"audit write failed: {lost}"
            if await self._record_end(ctx, status, reason, output, error, data):
                break
        self._listeners.pop(ctx.run_id, None)

    async def _record_end(
        self,
        ctx: RunContext,
        status: str,
        reason: str,
        output: str,
        error: str | None,
        data: dict[str, Any] | None,
    ) -> bool:
        """Write the run's end; False when it was refused because an earlier record of the run failed with it
        (then the run ends as failed, in a second write)."""
        ended = now()
        payload = {
            "status": status,
            "reason": reason,
            "output": output,
            "error": error,
            "ended_at": ended,  # so `audit verify` can check the row against the chain
            **({"data": data} if data else {}),
        }
        record = lambda: ctx.record(  # noqa: E731
            "run_finished",
            payload,
            statements=[
                (
                    "update runs set status = ?, stop_reason = ?, output = ?, error = ?, ended_at = ?,"
                    " lease_expires = null where id = ?",
                    (status, reason, output, error, ended, ctx.run_id),
                ),
                # a step cut short by cancellation or shutdown must not stay 'running' forever
                (
                    "update steps set status = ?, ended_at = ? where run_id = ? and status = 'running'",
                    ("cancelled" if status == "cancelled" else "interrupted", now(), ctx.run_id),
                ),
            ],
        )
        try:  # retried until the database is writable again (bounded while stopping: the next start cleans up)
            await until_written(
                record, what=f"the end of {ctx.run_id}", attempts=3 if self._stopping else None
            )
        except AuditError:
            if ctx.engine.posting_error is not None and status == "succeeded":
                return False
            log.exception("could not record the end of %s", ctx.run_id)
        except Exception:  # a failed write fails the run, never the server's task group
            log.exception("could not record the end of %s", ctx.run_id)
        return True

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
        active = self._active.get(run_id)
        if active is None:  # ended, or run elsewhere: its row as it is (or the unknown run's error)
            return self.get_run(run_id)
        with anyio.move_on_after(max(seconds, 0)):
            while not active.done.is_set():
                if wake_on_pending and any(
                    r.kind in wake_on_pending and r.id not in known for r in self.pending.open_for(run_id)
                ):
                    break
                if active.wake.is_set():
                    active.wake = anyio.Event()
                await active.wake.wait()
        return self.get_run(run_id)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a running run and return its row (already-ended runs are returned unchanged)."""
        run = self.get_run(run_id)
        active = self._active.get(run_id)
        if active is None:
            if run["status"] in TERMINAL:
                return run
            # a live run nobody runs here: cancel it if its server is gone, else say who runs it
            if not await anyio.to_thread.run_sync(self.leases.take_orphan, run_id):
                raise InvalidInputError(
                    f"run {run_id} is run by another live concertmaster process ({run['owner']}); cancel it "
                    "through the client connected to that server"
                )
            await self._interrupt(run_id, "cancelled", "cancelled by the user", status="cancelled")
            return self.get_run(run_id)
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

    async def _agent_tools(self, ctx: RunContext, agent: str) -> list[AgentTool]:
        """An agent's granted downstream tools, gated by its policy."""
        return await tools_for(ctx, agent, self.policies.gate(agent))

    def provider_for(self, agent: str, sampler: Sampler | None = None) -> ModelProvider:
        """The provider agent `agent` would run on now, for a client offering `sampler` (or not)."""
        probe = self._context("probe", self.limits, "centralized", sampler=sampler, listened=False)
        return probe.provider(agent)

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

    def step_count(self, run_id: str) -> int:
        """How many steps the run has recorded."""
        return int(self.reader.query("select count(*) as n from steps where run_id = ?", (run_id,))[0]["n"])

    def run_of_request(self, request_id: str) -> str:
        """The run a pending request (an approval's action id) belongs to."""
        rows = self.reader.query("select run_id from pending_requests where id = ?", (request_id,))
        if not rows:
            raise InvalidInputError(f"no pending request {request_id!r}; see list_pending_approvals")
        return str(rows[0]["run_id"])

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's row, or `RunNotFoundError`."""
        if not isinstance(run_id, str) or not run_id.strip():
            raise InvalidInputError("run_id is empty; pass the run_id a run-starting tool returned")
        run = self.reader.run(run_id.strip())
        if run is None:
            raise RunNotFoundError(run_id)
        return run
