"""The server's `Runtime` when runs execute on Temporal (`[engine] kind = "temporal"`).

The server stays the single writer of the audit: it records the run row, starts the workflow (id = run id),
and serves the audit queue on which runs send their writes (batched, keyed, idempotent). Everything a tool
does works as with the embedded engine: `wait` follows the audit, `cancel` cancels the workflow, an approval
(tool, elicitation, CLI) is marked answered in the audit and signalled to the workflow until it records it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
from collections.abc import Sequence
from typing import Any

import anyio
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Worker

from orchestration.audit.log import AuditLog, Event, Write
from orchestration.audit.schema import now
from orchestration.config import TeamConfig
from orchestration.context import ProviderFactory
from orchestration.errors import ConcertmasterError, InvalidInputError, ProviderError, WriteConflict
from orchestration.ids import new_id
from orchestration.models.sampling import Sampler, SamplingProvider
from orchestration.pending import PendingRequest, PendingRequests
from orchestration.providers import NO_MODEL_HELP
from orchestration.runtime import TERMINAL, Runtime
from orchestration.spec import RunSpec, check_members
from orchestration.temporal import codec
from orchestration.temporal.activities import heartbeating
from orchestration.temporal.worker import check_namespace, connect
from orchestration.temporal.workflow import WORKFLOW_NAME

log = logging.getLogger("concertmaster")

NEVER = 1e18
"""Lease deadline of a run on Temporal: Temporal owns it, no embedded server may take it over."""


def audit_queue(task_queue: str, db: str) -> str:
    """The task queue of the server that owns audit file `db` on this host (stable across its restarts)."""
    digest = hashlib.sha256(f"{socket.gethostname()}:{db}".encode()).hexdigest()[:12]
    return f"{task_queue}.audit.{digest}"


class RemotePending(PendingRequests):
    """The open questions of runs on Temporal, as the server sees them: rows of the audit, answered by marking
    them `answered` (so a second answer is refused) and signalling the run's workflow."""

    def __init__(self, runtime: TemporalRuntime) -> None:
        super().__init__(runtime.audit, on_change=runtime._wake)
        self.runtime = runtime

    def _rows(self, where: str, params: tuple[Any, ...], statuses: str = "'pending'") -> list[dict[str, Any]]:
        if self.runtime._reader is None:
            return []
        return self.runtime.reader.query(
            "select p.* from pending_requests p join runs r on r.id = p.run_id where r.engine = 'temporal'"
            f" and p.status in ({statuses}) {where} order by p.created_at, p.rowid",
            params,
        )

    def changed_remotely(self, run_id: str) -> None:
        """A run's question was opened or closed by its workflow: wake those waiting on `wait_changed`."""
        self._signal(run_id)

    def answered(self) -> list[dict[str, Any]]:
        """Questions answered in the audit that their run has not recorded yet (the answer is re-sent)."""
        return self._rows("", (), "'answered'")

    def open_for(self, run_id: str | None = None, kind: str | None = None) -> list[PendingRequest]:
        asked_here = super().open_for(run_id, kind)  # questions this server asks itself (sampling)
        return [*asked_here, *self._remote(run_id, kind)]

    def _remote(self, run_id: str | None, kind: str | None) -> list[PendingRequest]:
        where, params = "", []
        if run_id is not None:
            where, params = "and p.run_id = ?", [run_id]
        if kind is not None:
            where, params = f"{where} and p.kind = ?", [*params, kind]
        return [_request(r) for r in self._rows(where, tuple(params)) if r["id"] not in self._open]

    def get(self, request_id: str) -> PendingRequest | None:
        if request_id in self._open:
            return self._open[request_id]
        rows = self._rows("and p.id = ?", (request_id,))
        return _request(rows[0]) if rows else None

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
        """Answer a question: one asked by this server (sampling) here; a run's, by marking it answered in the
        audit (a compare-and-set: a second answer loses) with `events`, then signalling its workflow."""
        if request_id in self._open:
            return await super().resolve(
                request_id, response, channel=channel, decided_by=decided_by, events=events, expect=expect
            )
        request = self.get(request_id)
        if request is None:
            raise InvalidInputError(
                f"no open request {request_id!r}: it was already answered, expired, or never existed"
            )
        marks = ", ".join("?" * len(expect))
        guard = (
            "update pending_requests set status = 'answered', response = ?, channel = ?, decided_by = ?,"
            f" resolved_at = ? where id = ? and status in ({marks})",
            (json.dumps(response, default=str), channel, decided_by, now(), request_id, *expect),
        )
        await self.audit.write(Write([], list(events), guard=guard))
        await self.runtime.signal_answer(request.run_id, request_id, response, channel, decided_by)
        return request


def _request(row: dict[str, Any]) -> PendingRequest:
    request = PendingRequest(
        row["id"], row["run_id"], row["kind"], json.loads(row["payload"]), row["step_id"], row["expires_at"]
    )
    if row["status"] == "answered" and row["response"]:
        request.response, request.channel = json.loads(row["response"]), row["channel"]
    return request


class TemporalRuntime(Runtime):
    """`Runtime` whose runs are Temporal workflows; this process owns the audit and serves its queue."""

    def __init__(
        self, config: TeamConfig, audit: AuditLog, *, providers: ProviderFactory | None = None
    ) -> None:
        super().__init__(config, audit, providers=providers, adopt=False)
        self.engine = config.engine
        self.pending = RemotePending(self)
        self.queue = audit_queue(self.engine.task_queue, str(audit.path.resolve()))
        self.client: Client | None = None
        self._changed: dict[str, anyio.Event] = {}
        self._samplers: dict[str, Sampler] = {}
        """The client's model for the runs this server started, while it lives (sampling agents)."""
        self._worker: Worker | None = None

    async def __aenter__(self) -> TemporalRuntime:
        self.client = await connect(self.engine)
        await check_namespace(self.client, self.engine)
        await super().__aenter__()
        self._worker = Worker(
            self.client,
            task_queue=self.queue,
            activities=[self.audit_write, self.sampling_call],
            max_concurrent_activities=50,
        )
        assert self._tg is not None
        self._tg.start_soon(self._serve_audit)
        self._tg.start_soon(self._resend_answers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._worker is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self._worker.shutdown()
        await super().__aexit__(*exc)

    async def _serve_audit(self) -> None:
        assert self._worker is not None
        await self._worker.run()

    # -- the audit owner -----------------------------------------------------------------------------
    @activity.defn(name="audit_write")
    async def audit_write(self, data: dict[str, Any]) -> int:
        """Commit a run's batch of writes (skipping any delivered before), tell listeners and waiters."""
        run_id = str(data.get("run_id"))
        try:
            writes = [codec.write_from_dict(w, run_id) for w in data.get("writes") or ()]
        except ConcertmasterError as exc:
            raise ApplicationError(exc.message, non_retryable=True) from None
        if not self.reader.run(run_id):
            raise ApplicationError(f"run {run_id} is not in this audit", non_retryable=True)
        for outcome in await asyncio.gather(*(self.audit.write(w) for w in writes), return_exceptions=True):
            if isinstance(
                outcome, WriteConflict
            ):  # e.g. a question closed meanwhile: retrying changes nothing
                log.warning("run %s: a write lost a race and was not applied (%s)", run_id, outcome.message)
            elif isinstance(outcome, BaseException):
                raise outcome
        for write in writes:
            for event in write.events:
                if event.kind == "run_finished":
                    self._samplers.pop(run_id, None)
                for listener in list(self._listeners.get(run_id, ())):
                    try:
                        listener(run_id, event.kind, event.payload)
                    except Exception:  # progress is best-effort
                        log.exception("listener failed on %s", event.kind)
        if any(e.kind.startswith("input_") for w in writes for e in w.events):
            assert isinstance(self.pending, RemotePending)
            self.pending.changed_remotely(run_id)  # a question opened or closed (host steps settle on it)
        self._wake(run_id)
        return len(writes)

    @activity.defn(name="sampling_call")
    async def sampling_call(self, data: dict[str, Any]) -> dict[str, Any]:
        """A model call of a `sampling` agent: the client's model, through the session that started the run."""
        run_id = str(data["request"].get("run_id"))
        sampler = self._samplers.get(run_id)
        if sampler is None:
            raise ApplicationError(
                f"the client that started run {run_id} is not connected to this server any more, so its model "
                "(sampling) cannot be asked; set ANTHROPIC_API_KEY on the workers and use anthropic agents",
                type="ModelUnavailableError",
                non_retryable=True,
            )
        try:
            response = await heartbeating(
                SamplingProvider(sampler).complete(codec.request_from_dict(data["request"]))
            )
        except ProviderError as exc:
            raise ApplicationError(
                exc.message, type="ProviderError", non_retryable=not exc.retryable
            ) from None
        return codec.response_to_dict(response)

    def _wake(self, run_id: str) -> None:
        changed = self._changed.pop(run_id, None)
        if changed is not None:
            changed.set()

    # -- runs ----------------------------------------------------------------------------------------
    async def start(
        self, spec: RunSpec, *, sampler: Sampler | None = None, principal: str | None = None
    ) -> str:
        """Record the run and start its workflow; returns its id at once."""
        check_members(self.config, spec)
        for name in spec.members:
            agent = self.config.agents.get(name)
            if agent is not None and agent.model == "sampling" and sampler is None:
                raise InvalidInputError(
                    f"agent {name!r} uses model 'sampling' but the client did not offer MCP sampling; "
                    + NO_MODEL_HELP
                )
        spec = spec if spec.limits is not None else spec.with_limits(self.limits)
        spec.build()  # validates the pattern's options here, not in a worker
        assert self.client is not None and spec.limits is not None
        run_id = new_id("run")
        opts = {
            "agents": list(spec.members),
            **spec.options,
            "limits": spec.limits.model_dump(exclude_defaults=True),
        }
        await self.audit.write(
            Write(
                [
                    (
                        "insert into runs (id, pattern, control, status, input, options, started_at, owner, spec,"
                        " lease_expires, principal, engine)"
                        " values (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, 'temporal')",
                        (
                            run_id,
                            spec.pattern,
                            spec.control,
                            spec.task,
                            json.dumps(opts, default=str),
                            now(),
                            f"temporal:{self.engine.namespace}/{self.engine.task_queue}",
                            spec.dump(),
                            NEVER,
                            principal,
                        ),
                    )
                ],
                [
                    Event(
                        "run_started",
                        run_id,
                        {
                            "pattern": spec.pattern,
                            "control": spec.control,
                            "input": spec.task,
                            "options": opts,
                            "spec": spec.model_dump(mode="json"),
                            "principal": principal,
                        },
                    )
                ],
            )
        )
        if sampler is not None:
            self._samplers[run_id] = sampler
        params = {
            "run_id": run_id,
            "spec": spec.dump(),
            "config": self.config.model_dump(mode="json"),
            "audit_queue": self.queue,
            "on_budget": self.on_budget,
        }
        try:
            await self.client.start_workflow(
                WORKFLOW_NAME,
                params,
                id=run_id,
                task_queue=self.engine.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except RPCError as exc:
            message = f"Temporal refused to start the run: {exc.message}"
            self._samplers.pop(run_id, None)  # the run never starts: nothing will pop it on run_finished
            await self._interrupt(run_id, "engine_error", message, status="failed")
            raise ConcertmasterError(message) from None
        return run_id

    def handle(self, run_id: str) -> WorkflowHandle[Any, Any]:
        assert self.client is not None
        return self.client.get_workflow_handle(run_id)

    async def signal_answer(
        self, run_id: str, request_id: str, response: Any, channel: str, decided_by: str | None
    ) -> None:
        """Deliver an answer to the run's workflow (again until the run records it: see `_resend_answers`)."""
        data = {"request_id": request_id, "response": response, "channel": channel, "decided_by": decided_by}
        try:
            await self.handle(run_id).signal("answer", data)
        except RPCError as exc:
            log.warning("could not deliver the answer to %s now (%s); retrying", request_id, exc.message)

    async def _resend_answers(self, interval: float = 0.5) -> None:
        """Answers recorded but not yet taken by their run (given through the CLI, or while Temporal was
        unreachable) are signalled again until the run records them."""
        while True:
            await anyio.sleep(interval)
            assert isinstance(self.pending, RemotePending)
            for row in self.pending.answered():
                response = json.loads(row["response"]) if row["response"] else None
                await self.signal_answer(
                    row["run_id"], row["id"], response, row["channel"] or "cli", row["decided_by"]
                )

    async def _poll_external_answers(self, interval: float = 0.25) -> None:
        """Replaced by `_resend_answers` (the run, not this process, waits for the answer)."""
        await anyio.sleep_forever()

    async def wait(
        self,
        run_id: str,
        seconds: float,
        *,
        wake_on_pending: tuple[str, ...] = (),
        known: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Wait up to `seconds` for the run to end (or to ask something of a kind in `wake_on_pending`)."""
        run = self.get_run(run_id)
        with anyio.move_on_after(max(seconds, 0)):
            while run["status"] not in TERMINAL:
                if wake_on_pending and any(
                    r.kind in wake_on_pending and r.id not in known for r in self.pending.open_for(run_id)
                ):
                    break
                changed = self._changed.setdefault(run_id, anyio.Event())
                # the audit writes of the run wake us; a second server on the same file is polled
                with anyio.move_on_after(1.0):
                    await changed.wait()
                run = self.get_run(run_id)
        return self.get_run(run_id)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel the run's workflow and wait (a bounded time) for it to record its end."""
        run = self.get_run(run_id)
        if run["status"] in TERMINAL:
            return run
        if run.get("engine") != "temporal":
            return await super().cancel(run_id)
        try:
            await self.handle(run_id).cancel()
        except RPCError as exc:
            raise ConcertmasterError(f"Temporal could not cancel run {run_id}: {exc.message}") from None
        return await self.wait(run_id, 10)

    async def resume_run(self, run_id: str) -> dict[str, Any]:
        run = self.get_run(run_id)
        if run.get("engine") == "temporal":
            raise InvalidInputError(
                f"run {run_id} runs on Temporal, which is never interrupted by a restart; follow it with get_run"
            )
        return await super().resume_run(run_id)

    def is_active(self, run_id: str) -> bool:
        return self.get_run(run_id)["status"] not in TERMINAL

    def subscribe(self, run_id: str, listener: Any) -> Any:
        listeners = self._listeners.setdefault(run_id, [])
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)
            if not listeners and self._listeners.get(run_id) is listeners:
                del self._listeners[run_id]  # one entry per followed run would stay for the server's life

        return unsubscribe
