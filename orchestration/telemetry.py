"""OpenTelemetry spans of runs, agent steps, tool calls and approval waits (GenAI semantic conventions).

Only `opentelemetry-api` is used: every span is a no-op unless the user installs and configures an SDK (for
example with `opentelemetry-instrument`). Spans nest through OTel's context, which anyio tasks inherit, so a
step's model calls (the Anthropic SDK's own spans, when instrumented), tool calls and sub-teams appear under the
step that made them, and every step under its run. No prompt, output or argument text is put on a span: only
names, ids, usage and cost, so turning tracing on does not copy the conversation to a backend.

Hooks, one line each: `traced_run` wraps a run body (runtime), `traced_step` / `traced_tool` decorate the step
runner and its tool calls (step.py), `traced_approval` the approval wait (approvals.py), and `model_called`
adds a model call's usage to the step's span.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

if TYPE_CHECKING:
    from orchestration.context import Outcome, RunBody, RunContext
    from orchestration.models.base import ModelResponse

TRACER_NAME = "concertmaster"
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


_TRACER = trace.get_tracer(TRACER_NAME)
"""Before a provider is configured this is OTel's proxy tracer, which follows one configured later
(`opentelemetry-instrument`, tests), so it is looked up once."""


def _tracer() -> trace.Tracer:
    return _TRACER


_FROM_ENV = bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))
_UNKNOWN = object()


def _off() -> bool:
    """True while no tracer provider is configured: every span would be a no-op, so none is made (a run, a
    step and a tool call each skip the span machinery). Checked at each call: one configured later counts.
    The API's own lookup reads the environment each time; its global is read directly when it has one."""
    configured = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if configured is _UNKNOWN or _FROM_ENV:
        return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return configured is None


def _start(name: str, attributes: dict[str, Any]) -> Any:
    clean = {k: v for k, v in attributes.items() if v is not None}
    return _tracer().start_as_current_span(
        name, attributes=clean, record_exception=False, set_status_on_exception=False
    )


def _failed(span: Span, exc: BaseException) -> None:
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        span.set_attribute("concertmaster.cancelled", True)
        return
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, getattr(exc, "message", None) or type(exc).__name__))
    code = getattr(exc, "code", None) or getattr(exc, "limit", None)
    if code:
        span.set_attribute("error.type", str(getattr(exc, "limit", None) or code))


# -- runs ----------------------------------------------------------------------------------------------------------


def traced_run(body: RunBody, run_id: str, pattern: str, control: str) -> RunBody:
    """`body` inside an `invoke_workflow {pattern}` span carrying the run id, pattern, control, status and usage."""

    async def traced(ctx: RunContext) -> Outcome:
        if _off():
            return await body(ctx)
        attributes = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.conversation.id": run_id,
            "concertmaster.run.id": run_id,
            "concertmaster.pattern": pattern,
            "concertmaster.control": control,
            "concertmaster.resumed": getattr(getattr(ctx, "engine", ctx), "resumed", False) or None,
        }
        with _start(f"invoke_workflow {pattern}", attributes) as span:
            try:
                outcome = await body(ctx)
            except BaseException as exc:
                _failed(span, exc)
                _usage_of_run(span, ctx)
                raise
            span.set_attribute("concertmaster.run.status", outcome.status)
            span.set_attribute("concertmaster.run.stop_reason", outcome.reason)
            if outcome.status == "failed":
                span.set_status(Status(StatusCode.ERROR, outcome.error or outcome.reason))
            _usage_of_run(span, ctx)
            return outcome

    return traced


def _usage_of_run(span: Span, ctx: RunContext) -> None:
    span.set_attribute("gen_ai.usage.total_tokens", ctx.budget.tokens)
    span.set_attribute("concertmaster.cost_usd", ctx.budget.cost_usd)
    span.set_attribute("concertmaster.steps", ctx.budget.steps)


# -- agent steps ---------------------------------------------------------------------------------------------------


@dataclass
class _StepUsage:
    span: Span
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0


_step: ContextVar[_StepUsage | None] = ContextVar("concertmaster_step_span", default=None)


def traced_step(fn: F) -> F:
    """Decorates the step runner `(ctx, agent, prompt, *, key, ...)`: an `invoke_agent {agent}` span per step
    (a sub-team's step too, its members' steps nested inside)."""

    @functools.wraps(fn)
    async def wrapper(ctx: RunContext, agent: str, prompt: str, *args: Any, **kwargs: Any) -> Any:
        if _off():
            return await fn(ctx, agent, prompt, *args, **kwargs)
        team = ctx.is_team(agent)
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.conversation.id": ctx.run_id,
            "concertmaster.run.id": ctx.run_id,
            "concertmaster.step.key": ctx.key_prefix + str(kwargs.get("key", "")),
            "concertmaster.depth": ctx.depth,
            "concertmaster.team": ctx.config.teams[agent].pattern if team else None,
        }
        with _start(f"invoke_agent {agent}", attributes) as span:
            token = _step.set(_StepUsage(span))
            try:
                result = await fn(ctx, agent, prompt, *args, **kwargs)
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                _step.reset(token)
            span.set_attribute("concertmaster.step.id", result.step_id)
            if result.replayed:
                span.set_attribute("concertmaster.replayed", True)
            return result

    return wrapper  # type: ignore[return-value]


def model_called(response: ModelResponse) -> None:
    """Add one model call's model, tokens and cost to the current step's span."""
    step = _step.get()
    if step is None or not step.span.is_recording():
        return
    step.calls += 1
    step.input_tokens += response.usage.input_tokens or 0
    step.output_tokens += response.usage.output_tokens or 0
    step.cost_usd += response.cost_usd or 0.0
    span = step.span
    span.set_attribute("gen_ai.provider.name", response.provider)
    span.set_attribute("gen_ai.request.model", response.model)
    span.set_attribute("gen_ai.response.model", response.model)
    span.set_attribute("gen_ai.usage.input_tokens", step.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", step.output_tokens)
    span.set_attribute("concertmaster.cost_usd", round(step.cost_usd, 8))
    span.set_attribute("concertmaster.model_calls", step.calls)
    if response.stop_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [response.stop_reason])


# -- tool calls and approvals -------------------------------------------------------------------------------------


def qualified(name: str) -> str:
    """`server.tool` for a downstream tool (`server__tool` to models); `concertmaster.X` for our own tools."""
    return name.replace("__", ".", 1) if "__" in name else f"concertmaster.{name}"


def traced_tool(fn: F) -> F:
    """Decorates the tool-call runner `(ctx, step_id, agent, tools, name, arguments, count, *, call_id)`: an
    `execute_tool {tool}` span per call, with the approval wait (if any) inside it."""

    @functools.wraps(fn)
    async def wrapper(
        ctx: RunContext, step_id: str, agent: str, tools: Any, name: str, *args: Any, **kwargs: Any
    ) -> Any:
        if _off():
            return await fn(ctx, step_id, agent, tools, name, *args, **kwargs)
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": kwargs.get("call_id") or None,
            "gen_ai.agent.name": agent,
            "concertmaster.tool": qualified(name),
            "concertmaster.run.id": ctx.run_id,
            "concertmaster.step.id": step_id,
        }
        with _start(f"execute_tool {name}", attributes) as span:
            try:
                outcome = await fn(ctx, step_id, agent, tools, name, *args, **kwargs)
            except BaseException as exc:
                _failed(span, exc)
                raise
            span.set_attribute("concertmaster.tool.is_error", bool(outcome.is_error))
            decision = (outcome.data or {}).get("decision")
            if decision:
                span.set_attribute("concertmaster.tool.decision", str(decision))
            if outcome.is_error:
                span.set_status(Status(StatusCode.ERROR, "the tool call failed or was refused"))
            return outcome

    return wrapper  # type: ignore[return-value]


def traced_approval(fn: F) -> F:
    """Decorates `request_approval(ctx, *, agent, tool, ...)`: an `await_approval {tool}` span for the time the
    run waits for a human, with the decision and its channel."""

    @functools.wraps(fn)
    async def wrapper(ctx: RunContext, *args: Any, **kwargs: Any) -> Any:
        if _off():
            return await fn(ctx, *args, **kwargs)
        tool = str(kwargs.get("tool"))
        attributes = {
            "gen_ai.operation.name": "await_approval",
            "gen_ai.agent.name": kwargs.get("agent"),
            "concertmaster.tool": tool,
            "concertmaster.approval.rule": kwargs.get("rule"),
            "concertmaster.approval.human_only": kwargs.get("human_only"),
            "concertmaster.run.id": ctx.run_id,
        }
        with _start(f"await_approval {tool}", attributes) as span:
            try:
                verdict = await fn(ctx, *args, **kwargs)
            except BaseException as exc:
                _failed(span, exc)
                raise
            span.set_attribute("concertmaster.approval.approved", bool(verdict.approved))
            span.set_attribute("concertmaster.approval.channel", str(verdict.channel))
            return verdict

    return wrapper  # type: ignore[return-value]
