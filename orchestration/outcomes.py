"""The values a step and its tools exchange: what a tool returns, where it is called, what a step produced.

They sit below the step runner, the patterns and the agent tools, so none of those import each other for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from orchestration.errors import ConcertmasterError
from orchestration.models.base import ToolSpec


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool returns to the step runner."""

    content: str
    """Text sent back to the model (or the step's output when `stop` is set)."""
    is_error: bool = False
    """True when the tool failed or was refused; the model is told."""
    stop: bool = False
    """End the step now with `content` as its output (a handoff ends the agent's turn this way)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Structured details for the pattern (e.g. the handoff target)."""


@dataclass(frozen=True)
class ToolCallContext:
    """Where a tool call happens: the step (so sub-steps nest under it) and the calling agent."""

    step_id: str
    agent: str
    call_id: str = ""
    """The model's id of this call (the key its result is recorded and replayed under)."""
    in_flight: bool = False
    """The server died during this very call before (its start is recorded, its result is not): a tool with
    effects outside the run must not silently repeat it (see `agent_tools`)."""


@dataclass(frozen=True)
class AgentTool:
    """A tool offered to the model during a step."""

    spec: ToolSpec
    call: Callable[[dict[str, Any], ToolCallContext], Awaitable[ToolOutcome]]


@dataclass(frozen=True)
class StepResult:
    """What one step produced."""

    step_id: str
    agent: str
    output: str
    model: str | None = None
    stopped_by: ToolOutcome | None = None
    """The tool outcome that ended the step early (a handoff), if any."""
    replayed: bool = False
    """True when the result came from the audit (a resumed run), not a new model call."""


class StepFailed(ConcertmasterError):
    """A step could not finish: the provider failed, it timed out, or a limit tripped inside it."""

    code = "step_failed"

    def __init__(self, agent: str, step_id: str, message: str, cause: Exception | None = None) -> None:
        super().__init__(f"agent {agent!r} failed: {message}")
        self.agent = agent
        self.step_id = step_id
        self.cause = cause
