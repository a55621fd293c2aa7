"""The MCP server: builds the app, owns the runtime for a connection's lifetime, turns errors into tool errors."""

from __future__ import annotations

import functools
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import CallToolResult, InputRequiredResult
from mcp_types import Tool as MCPTool
from pydantic import ValidationError

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig, describe_validation_error, load_config
from orchestration.context import ProviderFactory
from orchestration.engines import runtime_for
from orchestration.errors import ConcertmasterError
from orchestration.governance import PolicyBook
from orchestration.models.pricing import load_prices
from orchestration.providers import preload
from orchestration.runtime import Runtime
from policies.redaction import Redactor
from server import notifications
from server.settings import Settings, version
from server.tool_schema import compact, type_unions

# Sampling and logging are deprecated from 2026-07-28 (SEP-2577) but are what today's clients speak:
# we use them on purpose, as the fallback path, so the warning is noise for our users.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

INSTRUCTIONS = """\
concertmaster runs a team of specialised agents for you and records every step in an SQLite audit trail.
Start with list_agents to see the team. delegate_task gives one agent a task. A tool that starts a run waits
up to wait_seconds and then returns the run id with its status; follow it with get_run(run_id, wait_seconds)
until `done` is true. cancel_run stops a run. Every answer carries tokens, cost and latency.
Agents on model `host` (or `auto` with no API key and no sampling) run on you: a run result's `host_steps` lists
steps for you to do as the named agent, using only the step's instructions, messages and tools; answer each
with submit_step(run_id, step_id, output, tool_calls?) in any order (parallel steps can be done in parallel).
Tool calls run under the agent's policy; the next host step shows their results."""


@dataclass
class AppState:
    """What tools see of the server: the runtime and the settings."""

    runtime: Runtime
    settings: Settings


P = ParamSpec("P")
R = TypeVar("R")


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn concertmaster's errors into MCP tool errors with their user-facing message (redacted)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ConcertmasterError as exc:
            raise ToolError(_redactor((*args, *kwargs.values())).text(exc.message)) from None

    return wrapper


def _redactor(args: tuple[Any, ...]) -> Redactor:
    """The audit's redactor (with the policy's extra rules) when the call's context is at hand (tools take
    it as a keyword argument, so callers pass positional and keyword values alike)."""
    for arg in args:
        if isinstance(arg, Context):
            value = arg.request_context.lifespan_context
            if isinstance(value, AppState):
                return value.runtime.audit.redactor
    return Redactor()


def state(ctx: Context[Any, Any]) -> AppState:
    """The server state of the connection a tool call came on."""
    value = ctx.request_context.lifespan_context
    assert isinstance(value, AppState), "concertmaster tools need the concertmaster lifespan"
    return value


class ConcertmasterServer(MCPServer[AppState]):
    """MCPServer that refuses unknown arguments, names each invalid field with its fix, and lists compact
    input schemas and quick-to-check output schemas (`server.tool_schema`)."""

    async def list_tools(self) -> list[MCPTool]:
        tools = await super().list_tools()
        for tool in tools:
            tool.input_schema = compact(tool.input_schema)
            if tool.output_schema is not None:
                tool.output_schema = type_unions(tool.output_schema)
        return tools

    redactor: Redactor | None = None
    """The policies' redactor: argument errors echo what was given, which may hold a secret."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await self._call_tool(name, arguments, context)
        except ToolError as exc:
            raise ToolError((self.redactor or Redactor()).text(str(exc))) from exc.__cause__

    async def _call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None
    ) -> CallToolResult | InputRequiredResult:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            known = set(tool.parameters.get("properties", {}))
            unknown = sorted(set(arguments) - known)
            if unknown:
                raise ToolError(
                    f"unknown argument(s) {', '.join(map(repr, unknown))} for tool {name!r}; "
                    f"valid arguments: {', '.join(sorted(known))}"
                )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(
                    f"invalid arguments for {name!r}: {describe_validation_error(exc.__cause__)}"
                ) from None
            raise


def build_server(
    settings: Settings,
    *,
    config: TeamConfig | None = None,
    providers: ProviderFactory | None = None,
    http_auth: tuple[AuthSettings, TokenVerifier] | None = None,
) -> ConcertmasterServer:
    """The concertmaster MCP server. `config` defaults to the file in `settings` (or the built-in team).
    `http_auth` makes streamable HTTP require a bearer token (the SDK's auth middleware checks it)."""
    team = config or load_config(settings.config)

    # every policy file (team, groups, agents) and the price table are loaded now: a broken one fails the
    # start with its message, not a run later
    redactor = PolicyBook(team).redactor()
    load_prices()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        await preload(team)  # the Anthropic SDK is imported off the event loop, before any run needs it
        async with runtime_for(team, AuditLog(settings.db, redactor), providers=providers) as runtime:
            async with notifications.watch_list_changes(server, runtime.reader):
                yield AppState(runtime, settings)

    server = ConcertmasterServer(
        name="concertmaster",
        title="concertmaster: a conductor for agent teams",
        instructions=INSTRUCTIONS,
        version=version(),
        lifespan=lifespan,
        log_level="WARNING",
        auth=http_auth[0] if http_auth else None,
        token_verifier=http_auth[1] if http_auth else None,
    )
    server.redactor = redactor
    from server import approval_tools, audit_tools, host_tools, pattern_tools, prompts, resources, tools

    tools.register(server, team)
    pattern_tools.register(server)
    approval_tools.register(server)
    resources.register(server)
    host_tools.register(server)
    audit_tools.register(server)
    prompts.register(server, team)
    notifications.register(server)
    return server
