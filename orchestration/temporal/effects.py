"""The effect boundary on Temporal, workflow side: what a `RunEngine` does when the run is workflow code.

- audit writes are buffered in the workflow and sent in batches (one activity) to the server that owns the
  SQLite file, before the run waits on anything (a model call, a tool call, a human) and when it ends; each
  write has a deterministic key, so a retried delivery is skipped by the server;
- a model call is an activity on the workers' queue, retried on transient provider errors;
- a downstream tool call is an activity, retried only when the tool is annotated read-only or idempotent;
- a question to a human, or a host step (`model = "host"`), is a pending request answered by a signal (the
  server routes `approve_action`, the CLI and `submit_step` alike); its expiry is a workflow timer.

Everything here runs inside a workflow: no clock, randomness or I/O but Temporal's.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import CancelledError as CancelledError_
from temporalio.exceptions import TimeoutError as TimeoutError_

from orchestration.audit.log import Event, Write
from orchestration.errors import ConcertmasterError, ProviderError
from orchestration.models.base import ModelRequest, ModelResponse
from orchestration.pending import PendingRequests
from orchestration.temporal import codec
from orchestration.toolbox import RemoteTool, ToolCallLost, ToolServerError

if TYPE_CHECKING:
    from orchestration.config import AgentConfig, TeamConfig
    from orchestration.context import RunContext

AUDIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
"""Audit writes are retried until the server that owns the audit takes them (it may be restarting)."""
MODEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
"""Transient provider errors (rate limit, overload, a worker lost mid-call) are retried; the others are not."""
READ_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
NO_RETRY = RetryPolicy(maximum_attempts=1)
IN_FLIGHT_LOST = (
    "the worker running this tool call was lost during it; it may or may not have happened and was not repeated "
    "(the tool is not annotated read-only or idempotent)"
)


T = TypeVar("T")


async def detached(operation: Coroutine[Any, Any, T], *, cancel: bool = True) -> T:
    """Await a Temporal operation (an activity) in a task of its own.

    anyio delivers a cancel scope's cancellation again and again until the task leaves the scope, while Temporal
    keeps a cancelled activity awaited until the service confirms it: awaited directly, the two spin the
    workflow's loop forever (a "deadlock"). Here the caller leaves at once; the operation is cancelled once
    (`cancel`), or left to finish (an audit write that must not be lost)."""
    task = asyncio.get_running_loop().create_task(operation)
    task.add_done_callback(_consume)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if cancel:
            task.cancel()
        raise


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned operation's failure is not an unhandled error


@dataclasses.dataclass(frozen=True)
class Sent:
    """A write queued in the workflow: settled as far as the run is concerned."""

    settled: bool = True


class WorkflowAudit:
    """The run's audit writes, buffered in the workflow and sent to the audit owner in batches."""

    def __init__(self, run_id: str, queue: str) -> None:
        self.run_id = run_id
        self.queue = queue
        self._buffer: list[Write] = []
        self._count = 0
        self._lock = asyncio.Lock()
        self.batches = 0
        """Audit activities sent (the benchmark reports them)."""

    async def write(self, write: Write) -> list[int]:
        """Queue `write` with the next deterministic key; sequence numbers are not known here (0s)."""
        self._queue(write)
        if any(e.kind in SEND_AT_ONCE for e in write.events):
            await self.flush()
        return [0] * len(write.events)

    def enqueue(self, write: Write, then: Callable[[list[int] | BaseException], None] | None = None) -> Sent:
        """`write` without waiting (an event nothing acts on yet): it goes with the next batch sent; `then` is
        called at once (the workflow's history, not this batch, is what the run acts on)."""
        assert not any(e.kind in SEND_AT_ONCE for e in write.events), "must be sent at once: use write()"
        self._queue(write)
        if then is not None:
            then([0] * len(write.events))
        return Sent()

    async def durable(self) -> None:
        """Nothing to wait for: what the run acts on (model replies, tool results) is durable in the workflow's
        history already; the audit is its record, sent in batches."""

    def _queue(self, write: Write) -> None:
        self._buffer.append(write._replace(key=f"{self.run_id}/{self._count}"))
        self._count += 1

    async def event(
        self,
        kind: str,
        run_id: str | None,
        payload: dict[str, Any],
        *,
        step_id: str | None = None,
        statements: Any = (),
    ) -> int:
        await self.write(Write(statements, [Event(kind, run_id, payload, step_id)]))
        return 0

    async def flush(self) -> None:
        """Send every queued write, and return once they are committed (in order: one batch at a time). A
        cancelled caller does not stop the batch: it is committed all the same."""
        await detached(self._send(), cancel=False)

    async def _send(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            self.batches += 1
            await workflow.execute_activity(
                "audit_write",
                {"run_id": self.run_id, "writes": [codec.write_to_dict(w) for w in batch]},
                task_queue=self.queue,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=AUDIT_RETRY,
            )


SEND_AT_ONCE = frozenset({"input_requested", "input_readopted", "run_finished"})
"""Writes the server must see before the run waits (the run parks for a human) or ends."""


class ActivityModel:
    """An agent's model, called as an activity on the workers; the worker builds the real provider."""

    def __init__(self, name: str, agent: AgentConfig, config: TeamConfig, ctx: RunContext) -> None:
        self.name = "temporal"
        self.agent_name = name
        self.agent = agent
        self.default_model = config.default_model
        self.audit: WorkflowAudit = ctx.engine.audit  # type: ignore[assignment]
        self.timeout_s = ctx.budget.limits.step_timeout_s
        self.heartbeat = timedelta(seconds=config.engine.heartbeat_s)
        self.task_queue = workflow.info().task_queue
        self.activity = "model_call"
        if (
            agent.model == "sampling"
        ):  # the client's model: through the session of the server that started the run
            self.activity, self.task_queue = "sampling_call", self.audit.queue
        self.position = 0
        """Calls made so far: a stateful model (the scripted one) answers from this point of its script."""

    def replayed(self, response: ModelResponse) -> None:
        self.position += 1

    async def complete(self, request: ModelRequest) -> ModelResponse:
        await self.audit.flush()  # what led to this call is in the audit before it is made
        position, self.position = self.position, self.position + 1
        try:
            data = await detached(
                workflow.execute_activity(
                    self.activity,
                    {
                        "agent": self.agent_name,
                        "agent_config": self.agent.model_dump(mode="json"),
                        "default_model": self.default_model,
                        "position": position,
                        "request": codec.request_to_dict(request),
                    },
                    task_queue=self.task_queue,
                    start_to_close_timeout=timedelta(seconds=self.timeout_s + 5),
                    heartbeat_timeout=self.heartbeat,
                    retry_policy=MODEL_RETRY,
                )
            )
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError_):  # the run was cancelled during the call
                raise asyncio.CancelledError() from None
            raise ProviderError(failure_message(exc), kind="error") from None
        return codec.response_from_dict(data)


def failure_message(exc: ActivityError) -> str:
    """The user-facing message of a failed activity (the provider's own message when it gave one)."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.message:
        return cause.message
    return str(cause or exc)


def not_on_workers(name: str, model: str) -> str:
    return (
        f"agent {name!r} uses model {model!r}, which is not available to runs on "
        '[engine] kind = "temporal" yet; use anthropic:<model> (the workers need ANTHROPIC_API_KEY), sampling, '
        "host or scripted agents"
    )


class ActivityProviders:
    """The provider factory of a run on Temporal: every model is called through an activity, but the host's
    (`model = "host"`), which is a question of the run like an approval."""

    def __call__(self, name: str, agent: AgentConfig, ctx: RunContext) -> Any:
        if agent.model == "host":
            # the calling assistant answers through submit_step: a pending request of the run, asked and answered
            # like an approval (rows sent to the audit owner, the answer delivered by the `answer` signal)
            from orchestration.models.host import HostProvider

            return HostProvider(ctx.engine.pending)
        return ActivityModel(name, agent, ctx.config, ctx)


class ActivityToolbox:
    """Downstream MCP tools, listed and called as activities on the workers."""

    def __init__(self, audit: WorkflowAudit, heartbeat_s: float) -> None:
        self.audit = audit
        self.task_queue = workflow.info().task_queue
        self.heartbeat = timedelta(seconds=heartbeat_s)

    async def granted_tools(self, grants: Any) -> list[RemoteTool]:
        await self.audit.flush()
        try:
            listed = await detached(
                workflow.execute_activity(
                    "list_tools",
                    {"grants": list(grants)},
                    task_queue=self.task_queue,
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=READ_RETRY,
                )
            )
        except ActivityError as exc:
            raise ToolServerError(failure_message(exc)) from None
        return [RemoteTool(**t) for t in listed]

    async def check_pin(self, tool: RemoteTool) -> str | None:
        try:
            changed: str | None = await detached(
                workflow.execute_activity(
                    "check_tool_pin",
                    codec.tool_to_dict(tool),
                    task_queue=self.task_queue,
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=READ_RETRY,
                )
            )
        except ActivityError as exc:
            raise ToolServerError(failure_message(exc)) from None
        return changed

    async def call(self, tool: RemoteTool, arguments: dict[str, Any]) -> tuple[str, bool]:
        """Call the tool once; again on a lost worker only when it is read-only or idempotent."""
        await self.audit.flush()  # `tool_call_started` is in the audit before the call
        hints = tool.annotations
        retry_safe = bool(hints.get("readOnlyHint") or hints.get("idempotentHint"))
        try:
            text, is_error = await detached(
                workflow.execute_activity(
                    "call_tool",
                    {"tool": codec.tool_to_dict(tool), "arguments": arguments},
                    task_queue=self.task_queue,
                    start_to_close_timeout=timedelta(seconds=300),
                    heartbeat_timeout=self.heartbeat,
                    retry_policy=READ_RETRY if retry_safe else NO_RETRY,
                )
            )
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError_):
                raise asyncio.CancelledError() from None
            if isinstance(exc.cause, TimeoutError_):  # its worker was lost during the call
                if not retry_safe:  # a human decides whether to call it again (the gate asks)
                    raise ToolCallLost(f"{IN_FLIGHT_LOST} ({tool.qualified})") from None
                raise ToolServerError(
                    f"the workers running {tool.qualified} were lost during it on every attempt"
                ) from None
            raise ToolServerError(failure_message(exc)) from None
        return str(text), bool(is_error)

    def close(self) -> None:
        pass


class WorkflowPending(PendingRequests):
    """Questions of a run on Temporal: asked exactly as the embedded engine asks them (the same rows and events,
    sent to the audit owner before the run waits), answered by a signal, expired by a workflow timer (anyio's
    `fail_after` on the workflow's loop)."""

    def __init__(self, audit: WorkflowAudit) -> None:
        super().__init__(audit)  # type: ignore[arg-type]

    async def answer(self, request_id: str, response: Any, channel: str, decided_by: str | None) -> None:
        """A decision delivered by a signal: applied once. Repeats, and answers to questions not open here yet
        (a signal racing the question's own audit write), are ignored: the server re-sends an answer until the
        run has recorded it."""
        if request_id in self._open:  # the server marked it answered when it took the decision
            await self.resolve(
                request_id, response, channel=channel, decided_by=decided_by, expect=("pending", "answered")
            )


__all__ = [
    "ActivityModel",
    "ActivityProviders",
    "ActivityToolbox",
    "ConcertmasterError",
    "WorkflowAudit",
    "WorkflowPending",
]
