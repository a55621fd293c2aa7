"""The workers' activities: model calls and downstream tool calls of runs on Temporal.

A worker builds the real provider of an agent from the agent's config that the run sent (so every worker runs
an agent the same way), with its own secrets (ANTHROPIC_API_KEY) and its own downstream MCP servers. Errors are
reported as Temporal application errors, retryable only when retrying is safe: a transient provider error
(rate limit, overload), never a refused request.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestration.config import AgentConfig, McpServerConfig, TeamConfig
from orchestration.context import ProviderFactory, RunContext, RunEngine
from orchestration.errors import ConcertmasterError, ModelUnavailableError, ProviderError
from orchestration.guard import Budget
from orchestration.models.base import Replayable
from orchestration.providers import DefaultProviders, has_api_key
from orchestration.temporal import codec
from orchestration.temporal.effects import not_on_workers
from orchestration.toolbox import RemoteTool, Toolbox, pin_of

T = TypeVar("T")


class WorkerActivities:
    """The activities one worker process serves; `providers` and the tool servers are the worker's own."""

    def __init__(
        self, providers: ProviderFactory | None = None, mcp_servers: dict[str, McpServerConfig] | None = None
    ) -> None:
        self.providers: ProviderFactory = providers or DefaultProviders()
        self.toolbox = Toolbox(mcp_servers or {})
        self.calls = 0
        """Model calls this worker made (the benchmark and tests count them)."""

    def bind(self, tg: Any) -> None:
        """Downstream tool servers live in the worker's task group."""
        self.toolbox.bind(tg)

    @activity.defn(name="model_call")
    async def model_call(self, data: dict[str, Any]) -> dict[str, Any]:
        """One model call of an agent step: `{agent, agent_config, default_model, position, request}`."""
        name = str(data["agent"])
        agent = AgentConfig.model_validate(data["agent_config"])
        config = TeamConfig(agents={name: agent}, default_model=str(data["default_model"]))
        ctx = RunContext(
            run_id=str(data["request"].get("run_id", "")),
            config=config,
            budget=Budget(config.limits),
            engine=RunEngine(audit=None, providers=self.providers),  # type: ignore[arg-type]
        )
        try:
            if agent.model == "auto" and not has_api_key() and isinstance(self.providers, DefaultProviders):
                raise ModelUnavailableError(
                    not_on_workers(name, "auto") + "; set ANTHROPIC_API_KEY on the workers"
                )
            provider = self.providers(name, agent, ctx)
            if isinstance(provider, Replayable):  # a scripted model answers from where the run is
                for _ in range(int(data.get("position") or 0)):
                    provider.replayed(None)  # type: ignore[arg-type]
            self.calls += 1
            response = await heartbeating(provider.complete(codec.request_from_dict(data["request"])))
        except ProviderError as exc:
            raise ApplicationError(
                exc.message, type="ProviderError", non_retryable=not exc.retryable
            ) from None
        except ConcertmasterError as exc:
            raise ApplicationError(exc.message, type=type(exc).__name__, non_retryable=True) from None
        return codec.response_to_dict(response)

    @activity.defn(name="list_tools")
    async def list_tools(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The downstream tools the grants allow (each with its definition's pin)."""
        try:
            tools = await self.toolbox.granted_tools(list(data["grants"]))
        except ConcertmasterError as exc:
            raise ApplicationError(exc.message, type="ToolServerError") from None
        return [codec.tool_to_dict(t) for t in tools]

    @activity.defn(name="check_tool_pin")
    async def check_tool_pin(self, data: dict[str, Any]) -> str | None:
        """None if the tool's definition is still the one the run listed, else what changed."""
        tool = RemoteTool(**data)
        server = self.toolbox.servers.get(tool.server)
        if server is None:
            return f"MCP server {tool.server!r} is not configured on this worker"
        try:
            current = {t.name: t for t in await _listed(self.toolbox, server)}
        except Exception as exc:
            raise ApplicationError(f"MCP server {tool.server!r} failed to list its tools: {exc}") from None
        if tool.name not in current:
            return f"tool {tool.qualified} disappeared from its server"
        if pin_of(current[tool.name]) != tool.pin:
            return f"the definition of {tool.qualified} changed since it was first listed (pinned)"
        return None

    @activity.defn(name="call_tool")
    async def call_tool(self, data: dict[str, Any]) -> tuple[str, bool]:
        """Call a downstream tool: `(text, is_error)`."""
        tool = RemoteTool(**data["tool"])
        if tool.server not in self.toolbox.servers:
            raise ApplicationError(
                f"MCP server {tool.server!r} is not configured on this worker; give every worker the same "
                "[mcp_servers]",
                non_retryable=True,
            )
        try:
            return await heartbeating(self.toolbox.call(tool, dict(data["arguments"])))
        except ConcertmasterError as exc:
            raise ApplicationError(exc.message, type="ToolServerError") from None

    def all(self) -> list[Any]:
        return [self.model_call, self.list_tools, self.check_tool_pin, self.call_tool]


async def heartbeating(work: Awaitable[T]) -> T:
    """Await `work` while telling Temporal this worker is alive (so a dead worker's call is noticed)."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        return await work
    interval = max(timeout.total_seconds() / 4, 0.2)
    done: list[tuple[bool, Any]] = []

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await anyio.sleep(interval)

    async with anyio.create_task_group() as tg:
        tg.start_soon(beat)
        try:  # the work's own error is raised as it is, not wrapped in the task group's
            done.append((True, await work))
        except Exception as exc:
            done.append((False, exc))
        tg.cancel_scope.cancel()
    ok, value = done[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


async def _listed(toolbox: Toolbox, server: Any) -> list[Any]:
    assert toolbox._tg is not None
    client = await server.connect(toolbox._tg)
    with anyio.fail_after(server.config.timeout_s):
        return list((await client.list_tools()).tools)
