"""The plain data a run on Temporal sends across the wire, as JSON-ready dicts (no temporalio here).

Model requests and replies go to and from the workers' activities; audit writes go to the server's.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from orchestration.audit.log import Event, Write
from orchestration.errors import InvalidInputError
from orchestration.models.base import (
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)

SCALARS = (str, int, float, bool, type(None))

if TYPE_CHECKING:
    from orchestration.toolbox import RemoteTool


def tool_to_dict(tool: RemoteTool) -> dict[str, Any]:
    """A downstream tool's definition as it travels between the workflow and the workers (`RemoteTool(**d)`)."""
    return dataclasses.asdict(tool)


def request_to_dict(request: ModelRequest) -> dict[str, Any]:
    return dataclasses.asdict(request)


def request_from_dict(data: dict[str, Any]) -> ModelRequest:
    return ModelRequest(
        system=str(data["system"]),
        messages=tuple(_message(m) for m in data["messages"]),
        tools=tuple(ToolSpec(t["name"], t["description"], dict(t["input_schema"])) for t in data["tools"]),
        max_tokens=int(data["max_tokens"]),
        agent=str(data["agent"]),
        run_id=str(data["run_id"]),
    )


def _message(data: dict[str, Any]) -> Message:
    return Message(
        role=data["role"],
        text=str(data["text"]),
        tool_calls=tuple(_call(c) for c in data["tool_calls"]),
        tool_results=tuple(
            ToolResult(str(r["call_id"]), str(r["content"]), bool(r["is_error"]))
            for r in data["tool_results"]
        ),
    )


def _call(data: dict[str, Any]) -> ToolCall:
    return ToolCall(str(data["id"]), str(data["name"]), dict(data["arguments"]))


def response_to_dict(response: ModelResponse) -> dict[str, Any]:
    return dataclasses.asdict(response)


def response_from_dict(data: dict[str, Any]) -> ModelResponse:
    usage = data.get("usage") or {}
    return ModelResponse(
        text=str(data["text"]),
        model=str(data["model"]),
        provider=str(data["provider"]),
        usage=Usage(
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            usage.get("cache_read_tokens"),
            usage.get("cache_write_tokens"),
        ),
        cost_usd=data.get("cost_usd"),
        tool_calls=tuple(_call(c) for c in data.get("tool_calls") or ()),
        stop_reason=data.get("stop_reason"),
    )


def write_to_dict(write: Write) -> dict[str, Any]:
    return {
        "key": write.key,
        "guard": [write.guard[0], list(write.guard[1])] if write.guard is not None else None,
        "statements": [[sql, list(params)] for sql, params in write.statements],
        "events": [[e.kind, e.run_id, e.payload, e.step_id] for e in write.events],
        "summary": [write.summary[0], write.summary[1], list(write.summary[2])] if write.summary else None,
    }


# What a run's writes may do to the audit: the statements the engine itself makes (steps, the run's own row,
# its questions), never anything else. A worker is trusted to run the team's agents, not to rewrite the audit.
ALLOWED_STATEMENTS = (
    "insert into steps ",
    "update steps set ",
    "update runs set ",
    "insert into pending_requests ",
    "update pending_requests set ",
)


def write_from_dict(data: dict[str, Any], run_id: str) -> Write:
    """A write sent by the run `run_id`; `InvalidInputError` when it is not one the engine makes."""
    key = data.get("key")
    if not isinstance(key, str) or not key.startswith(f"{run_id}/"):
        raise InvalidInputError(f"an audit write of run {run_id} has no key of that run")
    statements = [_statement(item, run_id) for item in data.get("statements") or ()]
    guard = _statement(data["guard"], run_id) if data.get("guard") is not None else None
    events = []
    for kind, event_run, payload, step_id in data.get("events") or ():
        if event_run != run_id or not isinstance(kind, str) or not isinstance(payload, dict):
            raise InvalidInputError(f"an audit write of run {run_id} has an event of another run")
        events.append(Event(kind, run_id, payload, step_id if isinstance(step_id, str) else None))
    if not events:
        raise InvalidInputError(f"an audit write of run {run_id} has no event")
    return Write(statements, events, key=key, guard=guard, summary=_summary(data.get("summary"), run_id))


def _summary(item: Any, run_id: str) -> tuple[str, str, list[Any]] | None:
    """A last-wins statement of the run (its key names the run; the statement is one the engine makes)."""
    if item is None:
        return None
    if not isinstance(item, list | tuple) or len(item) != 3 or item[0] != f"usage:{run_id}":
        raise InvalidInputError(f"an audit write of run {run_id} has a malformed summary")
    sql, params = _statement(item[1:], run_id)
    return item[0], sql, params


def _statement(item: Any, run_id: str) -> tuple[str, list[Any]]:
    if not isinstance(item, list | tuple) or len(item) != 2:
        raise InvalidInputError(f"an audit write of run {run_id} has a malformed statement")
    sql, params = item
    if not isinstance(sql, str) or ";" in sql or not sql.lower().startswith(ALLOWED_STATEMENTS):
        raise InvalidInputError(f"an audit write of run {run_id} has a statement the engine never makes")
    if not isinstance(params, list) or not all(isinstance(p, SCALARS) for p in params):
        raise InvalidInputError(f"an audit write of run {run_id} has non-scalar parameters")
    return sql, params
