"""What the server tells clients unasked: log messages (at the level each client set) and list changes.

- `logging/setLevel` is served (so the `logging` capability is declared) and the level a session set is
  honoured by `log`: a message below it is not sent. 2026-07-28 clients choose the level per request
  (`_meta`), which the SDK applies itself.
- `resources/list` changes when a run starts or changes status, or an approval opens or closes. A watcher
  reads the audit's head once a second (so decisions given from the CLI in another process count too) and
  tells the sessions that listed resources (`notifications/resources/list_changed`), and 2026-07-28
  subscribers through the server's subscription bus.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, get_args

import anyio
from mcp.server.connection import allowed_log_levels
from mcp.server.lowlevel import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.subscriptions import ResourcesListChanged
from mcp_types import EmptyResult, LoggingLevel, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from orchestration.audit.read import AuditReader

log = logging.getLogger(__name__)

LEVELS: tuple[LoggingLevel, ...] = get_args(LoggingLevel)
"""Severity-ascending (RFC 5424 order, as the protocol lists them)."""

WATCH_INTERVAL_S = 1.0
"""How often the watcher looks at the audit head (cheap: one indexed read)."""

_levels: weakref.WeakKeyDictionary[Any, LoggingLevel] = weakref.WeakKeyDictionary()
_listeners: dict[int, weakref.WeakSet[Any]] = {}


def register(server: MCPServer[Any]) -> None:
    """Serve `logging/setLevel` and declare `resources.listChanged` on `server`."""
    lowlevel = server._lowlevel_server  # the SDK derives capabilities from the low-level handlers

    async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        _levels[connection_of(ctx.session)] = params.level
        return EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    base = lowlevel.create_initialization_options

    def with_list_changed(
        notification_options: NotificationOptions | None = None, *args: Any, **kw: Any
    ) -> Any:
        # MCPServer never passes NotificationOptions; ours say resources/list changes are announced
        return base(notification_options or NotificationOptions(resources_changed=True), *args, **kw)

    lowlevel.create_initialization_options = with_list_changed  # type: ignore[method-assign]


def connection_of(session: Any) -> Any:
    """The client connection behind a request's session (the SDK makes a new session object per request)."""
    return getattr(session, "_connection", session)


def level_of(session: Any) -> LoggingLevel | None:
    """The level a session's client asked for with `logging/setLevel`, if it did."""
    try:
        return _levels.get(connection_of(session))
    except TypeError:  # not weak-referenceable: never set
        return None


def wants_log(ctx: Context[Any, Any], level: LoggingLevel) -> bool:
    """Whether this request's client asked for log messages at `level`: on a 2025-era connection by
    `logging/setLevel` (at `level` or below), on 2026-07-28 by the request's own log level. A client that never
    asked gets none (the protocol leaves that choice to the server): each message is a write on its pipe."""
    rc = ctx.request_context
    if rc.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return level in allowed_log_levels(rc.protocol_version, rc.meta)
    wanted = level_of(rc.session)
    return wanted is not None and LEVELS.index(level) >= LEVELS.index(wanted)


async def send_log(ctx: Context[Any, Any], level: LoggingLevel, message: str) -> None:
    """Send a log message if the client asked for this level (`wants_log`; best effort: never fails a call)."""
    if not wants_log(ctx, level):
        return
    try:
        await ctx.log(level, message, logger_name="concertmaster")
    except Exception:  # a client gone mid-call must not break the run's follower
        log.debug("log notification dropped", exc_info=True)


def listen_for_list_changes(server: MCPServer[Any], session: Any) -> None:
    """Remember that `session`'s client listed resources: it is told when the list changes."""
    _listeners.setdefault(id(server), weakref.WeakSet()).add(connection_of(session))


def fingerprint(reader: AuditReader) -> tuple[Any, ...]:
    """What resources/list shows, reduced to what makes it change: recent runs' statuses, open approvals."""
    runs = reader.query(
        "select id, status from runs order by started_at desc, id desc limit ?", (RECENT_RUNS,)
    )
    pending = reader.query("select id from pending_requests where status = 'pending' and kind = 'approval'")
    return (tuple((r["id"], r["status"]) for r in runs), tuple(sorted(p["id"] for p in pending)))


RECENT_RUNS = 20
"""How many recent runs resources/list shows."""


def head_seq(reader: AuditReader) -> int:
    rows = reader.query("select seq from audit_head")
    return int(rows[0]["seq"]) if rows else 0


@asynccontextmanager
async def watch_list_changes(server: MCPServer[Any], reader: AuditReader) -> AsyncIterator[None]:
    """While the server runs, announce changes of resources/list to the sessions that listed it."""

    async def watch() -> None:
        seen_head, seen = head_seq(reader), fingerprint(reader)
        while True:
            await anyio.sleep(WATCH_INTERVAL_S)
            try:
                head = head_seq(reader)
                if head == seen_head:
                    continue
                seen_head, current = head, fingerprint(reader)
            except Exception:  # the audit is busy or going away: try again next tick
                log.debug("list watcher could not read the audit", exc_info=True)
                continue
            if current != seen:
                seen = current
                await announce(server)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def announce(server: MCPServer[Any]) -> None:
    """Tell every listening connection, and 2026-07-28 subscribers, that resources/list changed."""
    for connection in list(_listeners.get(id(server), ())):
        try:
            await connection.send_resource_list_changed()
        except Exception:  # that client is gone; the others still hear it
            _listeners[id(server)].discard(connection)
    bus = getattr(server, "_subscriptions", None)
    if bus is not None:
        await bus.publish(ResourcesListChanged())
