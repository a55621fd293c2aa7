"""What a run already did, read back from the audit so that a resumed run replays it instead of redoing it.

Every effect of a run has a deterministic key and its result is recorded before the run acts on it:
- an agent step by its key (`0.writer`, `1.outer/0.inner/0.x`): a finished step returns its recorded output;
- a model call by its position inside its step: a recorded reply is returned, never asked for again;
- a tool call by its call id: a recorded result is returned; a call that started but has no result (the server
  died during it) is retried only if the tool is read-only or idempotent, else a human decides;
- an event a pattern records (`reconciled`, `handoff`, a ledger...) by its kind, step and ordinal: on replay
  the n-th such event is already in the audit and is not written again;
- a question to a human by the digest of what was asked: an answer given before is not asked again.

The journal is read with one query per table, uncapped, when the run resumes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestration.errors import InvalidInputError
from orchestration.models.base import ModelResponse, ToolCall, Usage

REPLY_FORMAT = 1
"""Version of the `reply` recorded in `model_called` events (and of `tool_called` results)."""

ENGINE_KINDS = frozenset(
    {
        "run_started",
        "run_resumed",
        "run_finished",
        "run_interrupted",
        "step_started",
        "step_resumed",
        "step_finished",
        "step_failed",
        "step_cancelled",
        "step_stopped",
        "model_called",
        "tool_call_started",
        "tool_called",
        "budget_extended",
        "budget_exceeded",
    }
)
"""Events the engine writes with its own replay rules; any other kind recorded through the run context is a
pattern's event, deduplicated on replay by ordinal."""


@dataclass
class RecordedTool:
    """A tool call's recorded result."""

    content: str
    is_error: bool
    stop: bool = False
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRecord:
    """One step of the run as the audit has it."""

    step_id: str
    key: str
    agent: str
    status: str
    output: str | None
    model: str | None
    error: str | None = None
    replies: list[ModelResponse] = field(default_factory=list)
    """Recorded model replies, oldest first."""
    tool_results: dict[str, RecordedTool] = field(default_factory=dict)
    """Recorded tool results by call id."""
    started_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Tool calls that started (`tool_call_started`) and have no recorded result: in flight at the crash."""
    stopped_by: RecordedTool | None = None
    """The tool outcome that ended the step (a handoff), if any."""

    @property
    def finished(self) -> bool:
        return self.status == "succeeded"


@dataclass
class Journal:
    """Everything a resumed run replays."""

    steps: dict[str, StepRecord] = field(default_factory=dict)
    """By full step key."""
    pattern_events: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    """How many events of each (kind, step id) a pattern recorded: the first that many are not rewritten."""
    extensions: dict[str, Any] = field(default_factory=dict)
    """Budget limits a human extended (`budget_extended`), to apply again."""
    elapsed_s: float = 0.0
    """Run time already spent while a server ran it (downtime between servers is not counted)."""
    resumes: int = 0
    adopted_requests: set[str] = field(default_factory=set)
    """Recorded questions to a human already adopted by the resumed run."""

    def take_event(self, kind: str, step_id: str | None) -> bool:
        """True if this pattern event was recorded before the restart (and so must not be written again)."""
        if kind in ENGINE_KINDS or self.pattern_events[(kind, step_id)] <= 0:
            return False
        self.pattern_events[(kind, step_id)] -= 1
        return True


def reply_from(payload: dict[str, Any]) -> ModelResponse:
    """The `ModelResponse` recorded in a `model_called` event's payload."""
    reply = payload.get("reply")
    if not isinstance(reply, dict):
        raise InvalidInputError("a recorded model reply is missing; the run cannot be replayed")
    version = reply.get("v", 1)
    if version != REPLY_FORMAT:
        raise InvalidInputError(
            f"a recorded model reply has format {version}; this concertmaster replays format {REPLY_FORMAT}"
        )
    calls = tuple(
        ToolCall(str(c["id"]), str(c["name"]), dict(c["arguments"])) for c in reply.get("calls", ())
    )
    return ModelResponse(
        str(reply.get("text", "")),
        str(payload.get("model") or ""),
        str(payload.get("provider") or ""),
        usage=Usage(payload.get("input_tokens"), payload.get("output_tokens")),
        cost_usd=payload.get("cost_usd"),
        tool_calls=calls,
        stop_reason=reply.get("stop_reason"),
    )


def load_journal(steps: list[dict[str, Any]], events: list[dict[str, Any]]) -> Journal:
    """Build the journal of one run from all its step rows and all its events (payloads as JSON text), in
    order. Raises `InvalidInputError` if a recorded reply can't be read."""
    journal = Journal()
    by_id: dict[str, StepRecord] = {}
    for row in steps:
        record = StepRecord(
            row["id"], row["key"], row["agent"], row["status"], row["output"], row["model"], row["error"]
        )
        journal.steps[row["key"]] = record
        by_id[row["id"]] = record
    segment_start: datetime | None = None
    last: datetime | None = None
    for ev in events:
        kind, step_id = ev["kind"], ev["step_id"]
        try:
            payload = json.loads(ev["payload"]) if isinstance(ev["payload"], str) else ev["payload"]
        except ValueError:
            raise InvalidInputError(
                f"event {ev['seq']} of the run is not valid JSON; it cannot be replayed"
            ) from None
        at = _time(ev["created_at"])
        if kind in ("run_started", "run_resumed"):
            if segment_start is not None and last is not None:
                journal.elapsed_s += max((last - segment_start).total_seconds(), 0.0)
            segment_start = at
            journal.resumes += kind == "run_resumed"
        last = at
        step = by_id.get(step_id) if step_id else None
        if kind == "model_called" and step is not None:
            step.replies.append(reply_from(payload))
        elif kind == "tool_call_started" and step is not None:
            step.started_calls[str(payload.get("call_id"))] = payload
        elif kind == "tool_called" and step is not None and payload.get("call_id"):
            call_id = str(payload["call_id"])
            result = RecordedTool(
                str(payload.get("result", "")),
                bool(payload.get("is_error")),
                bool(payload.get("stop")),
                dict(payload.get("data") or {}),
            )
            step.tool_results[call_id] = result
            step.started_calls.pop(call_id, None)
            if result.stop:
                step.stopped_by = result
        elif kind == "budget_extended":
            journal.extensions[str(payload["limit"])] = payload["to"]
        elif kind not in ENGINE_KINDS:
            journal.pattern_events[(kind, step_id)] += 1
    if segment_start is not None and last is not None:
        journal.elapsed_s += max((last - segment_start).total_seconds(), 0.0)
    return journal


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
