"""Agents' tools from downstream MCP servers: started lazily, pinned when first listed, shut down cleanly.

concertmaster is a *client* of these servers. Each server's connection lives in its own task of the runtime's
task group (an MCP client must be entered and left in one task); calls from agent steps use it from anywhere.
A tool's definition (name, description, input schema) is pinned by hash when first listed and checked again
before every call, so a server that changes a tool under a running agent is refused (a "rug pull").
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult, TextContent, Tool

from orchestration.config import McpServerConfig
from orchestration.errors import ConcertmasterError

# concertmaster's own control tools are never offered to an agent, whatever a grant says.
CONTROL_TOOLS = frozenset({"approve_action", "list_pending_approvals", "cancel_run", "query_audit"})
ANNOTATION_KEYS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


class ToolServerError(ConcertmasterError):
    """A downstream MCP server failed to start, crashed, timed out, or changed a pinned tool."""

    code = "tool_server_error"


class ToolCallLost(ToolServerError):
    """The process running a tool call with side effects was lost during it (a Temporal worker): it may or
    may not have happened. The gate asks a human whether to call it again, as for a server that stopped."""


@dataclass(frozen=True)
class RemoteTool:
    """A downstream tool as agents see it."""

    server: str
    name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, bool]
    pin: str
    """Hash of name, description and input schema when first listed."""

    @property
    def qualified(self) -> str:
        """`server.tool`: the name grants and policies match on."""
        return f"{self.server}.{self.name}"

    @property
    def model_name(self) -> str:
        """The name shown to models (dots are not allowed in tool names): `server__tool`."""
        return f"{self.server}__{self.name}"


def pin_of(tool: Tool) -> str:
    """The hash that pins a tool's definition."""
    material = json.dumps([tool.name, tool.description or "", tool.input_schema], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def annotations_of(tool: Tool) -> dict[str, bool]:
    """The tool's behaviour hints that were declared (undeclared hints are absent, not False)."""
    if tool.annotations is None:
        return {}
    dumped = tool.annotations.model_dump(by_alias=True, exclude_none=True)
    return {k: bool(v) for k, v in dumped.items() if k in ANNOTATION_KEYS}


def granted(grants: Iterable[str], qualified: str) -> bool:
    """Does an agent's `tools` list grant `server.tool`? Control tools are never granted."""
    if qualified.rsplit(".", 1)[-1] in CONTROL_TOOLS:
        return False
    return any(fnmatch.fnmatchcase(qualified, pattern) for pattern in grants)


def server_environment(config: McpServerConfig) -> dict[str, str]:
    """What a stdio server gets on top of the SDK's safe list (`get_default_environment`, which the SDK adds
    itself): the variables named in `inherit_env` that are set, then the config's `env`. Never the rest of
    ours: a third-party server must not receive ANTHROPIC_API_KEY or any other secret by default."""
    inherited = {name: os.environ[name] for name in config.inherit_env if name in os.environ}
    return {**inherited, **config.env}


def describe_failure(exc: BaseException) -> str:
    """One line naming the real cause: task groups wrap it in (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        # the first that is not a cancellation caused by it
        exc = next(
            (e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())),
            exc.exceptions[0],
        )
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


@dataclass
class DownstreamServer:
    """One configured MCP server and its connection."""

    name: str
    config: McpServerConfig
    client: Client | None = None
    pins: dict[str, str] = field(default_factory=dict)
    _stop: anyio.Event | None = None
    _lock: anyio.Lock = field(default_factory=anyio.Lock)
    _error: str | None = None

    def _target(self) -> StdioServerParameters | str:
        if self.config.url:
            return self.config.url
        assert self.config.command is not None
        return StdioServerParameters(
            command=self.config.command,
            args=self.config.args,
            env=server_environment(self.config),
            cwd=self.config.cwd,
        )

    async def connect(self, tg: TaskGroup) -> Client:
        """The live client, starting the server first if needed."""
        async with self._lock:
            if self.client is not None:
                return self.client
            ready, self._stop, self._error = anyio.Event(), anyio.Event(), None
            tg.start_soon(self._serve, ready, self._stop)
            with anyio.move_on_after(self.config.startup_timeout_s):
                await ready.wait()
            if self.client is None:
                self._stop.set()
                problem = self._error or f"it did not start within {self.config.startup_timeout_s:g} s"
                raise ToolServerError(
                    f"MCP server {self.name!r} could not be started: {problem}; check [mcp_servers.{self.name}]"
                )
            return self.client

    async def _serve(self, ready: anyio.Event, stop: anyio.Event) -> None:
        try:
            async with Client(self._target(), mode="legacy") as client:
                self.client = client
                ready.set()
                await stop.wait()
        except Exception as exc:  # a server that fails to start or dies must not take the runtime down
            self._error = describe_failure(exc)
        finally:
            self.client = None
            ready.set()

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def mark_dead(self) -> None:
        """Forget a connection that failed mid-call; the next use starts the server again."""
        self.close()
        self.client = None


class Toolbox:
    """The downstream servers of a runtime."""

    def __init__(self, servers: dict[str, McpServerConfig]) -> None:
        self.servers = {name: DownstreamServer(name, cfg) for name, cfg in servers.items()}
        self._tg: TaskGroup | None = None

    def bind(self, tg: TaskGroup) -> None:
        """Give the toolbox the task group its connections live in."""
        self._tg = tg

    def close(self) -> None:
        for server in self.servers.values():
            server.close()

    def servers_for(self, grants: Iterable[str]) -> list[DownstreamServer]:
        """Servers that a grant list could match (`files.*` -> the `files` server)."""
        patterns = [g.split(".", 1)[0] for g in grants]
        return [s for s in self.servers.values() if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]

    async def list_tools(self, server: DownstreamServer) -> list[RemoteTool]:
        """The server's tools; the first listing pins each tool's definition."""
        assert self._tg is not None, "the toolbox is not bound to a task group"
        client = await server.connect(self._tg)
        try:
            with anyio.fail_after(server.config.timeout_s):
                listed = (await client.list_tools()).tools
        except Exception as exc:
            server.mark_dead()
            raise ToolServerError(f"MCP server {server.name!r} failed to list its tools: {exc}") from None
        tools = []
        for tool in listed:
            pin = server.pins.setdefault(tool.name, pin_of(tool))
            tools.append(
                RemoteTool(
                    server.name,
                    tool.name,
                    tool.description or "",
                    tool.input_schema,
                    annotations_of(tool),
                    pin,
                )
            )
        return tools

    async def granted_tools(self, grants: Iterable[str]) -> list[RemoteTool]:
        """Every tool the grants allow, across the servers they name."""
        grants = list(grants)
        found: list[RemoteTool] = []
        for server in self.servers_for(grants):
            found += [t for t in await self.list_tools(server) if granted(grants, t.qualified)]
        return found

    async def check_pin(self, tool: RemoteTool) -> str | None:
        """None if the tool is still as pinned, else what changed (the call must be refused)."""
        server = self.servers[tool.server]
        assert self._tg is not None
        client = await server.connect(self._tg)
        with anyio.fail_after(server.config.timeout_s):
            current = {t.name: t for t in (await client.list_tools()).tools}
        if tool.name not in current:
            return f"tool {tool.qualified} disappeared from its server"
        if pin_of(current[tool.name]) != server.pins.get(tool.name):
            return f"the definition of {tool.qualified} changed since it was first listed (pinned)"
        return None

    async def call(self, tool: RemoteTool, arguments: dict[str, Any]) -> tuple[str, bool]:
        """Call a tool: `(text, is_error)`. Raises `ToolServerError` on timeout or a dead server."""
        server = self.servers[tool.server]
        assert self._tg is not None
        client = await server.connect(self._tg)
        try:
            with anyio.fail_after(server.config.timeout_s):
                result: CallToolResult = await client.call_tool(tool.name, arguments)
        except TimeoutError:
            raise ToolServerError(
                f"{tool.qualified} did not answer within {server.config.timeout_s:g} s (timeout_s)"
            ) from None
        except Exception as exc:
            server.mark_dead()
            raise ToolServerError(f"MCP server {server.name!r} failed during {tool.name}: {exc}") from None
        text = "\n".join(b.text for b in result.content if isinstance(b, TextContent))
        if not text and result.structured_content is not None:
            # not ASCII escapes: a non-ASCII secret must stay visible to the audit's redaction
            text = json.dumps(result.structured_content, ensure_ascii=False)
        return text, bool(result.is_error)
