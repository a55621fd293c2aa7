"""Progress notifications of a followed run: strictly increasing, with a total when it is known.

The value is the number of finished steps (plus one half while a step is under way), counted from the
run's events as they come (the audit may already hold later ones: a commit carries several), and a notification is sent only when it goes up: the protocol requires every progress value
of a request to be larger than the last. The total is the number of steps the run will take when the
pattern fixes it (a delegation without handoffs, a sequence, a fan-out of agents), else none. The message
names the agent, its turn/round "of N" when the pattern has one, and the run's tokens and cost so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context

from orchestration.audit.read import AuditReader

# patterns whose step keys count from 0 ("0.researcher"); magentic counts rounds from 1
ZERO_BASED = frozenset({"sequential", "concurrent", "group_chat", "handoff", "delegate"})
UNITS = {"sequential": "step", "concurrent": "answer", "group_chat": "turn", "magentic": "round"}
UNDER_WAY = frozenset({"step_started", "tool_called", "input_requested"})
STEP_ENDS = frozenset({"step_finished", "step_failed", "step_cancelled", "step_stopped"})


@dataclass
class Update:
    """One notification: `progress` is None when the value did not go up (send the message as a log only)."""

    progress: float | None
    total: float | None
    message: str


class RunProgress:
    """Turns a run's events into progress notifications for one tool call that follows it."""

    def __init__(
        self,
        run: dict[str, Any],
        *,
        team_names: frozenset[str],
        max_turns: int | None,
        reader: AuditReader | None = None,
    ) -> None:
        self.run_id = run["id"]
        self.pattern = run.get("pattern") or ""
        options = _options(run)
        members = _members(options)
        self.unit = UNITS.get(self.pattern)
        self.of = _unit_count(self.pattern, options, members, max_turns)
        self.total = _total_steps(self.pattern, options, members, team_names)
        self.last = 0.0
        self.finished = _finished_steps(self.run_id, reader) if reader is not None else 0
        self.steps: dict[str, tuple[str | None, str | None]] = {}
        """Agent and key of each step seen starting, by step id."""

    def update(self, kind: str, payload: dict[str, Any], reader: AuditReader) -> Update:
        """The notification for one event of the run (its payload carries its `step_id`)."""
        step_id = payload.get("step_id")
        agent, key = payload.get("agent"), payload.get("key")
        if kind == "step_started" and step_id:
            self.steps[step_id] = (agent, key)
        elif kind in STEP_ENDS:
            self.finished += 1
            agent, key = self.steps.get(step_id or "", (None, None))
        value = self.finished + (0.5 if kind in UNDER_WAY else 0.0)
        progress: float | None = None
        if value > self.last:
            progress = self.last = value
        total = self.total if self.total is not None and self.total >= value else None
        return Update(progress, total, self._message(kind, payload, agent, key, reader))

    def _message(
        self, kind: str, payload: dict[str, Any], agent: str | None, key: str | None, reader: AuditReader
    ) -> str:
        who = agent or "the run"
        what = {
            "step_started": f"{who} is working",
            "step_finished": f"{who} finished",
            "step_failed": f"{who} failed: {payload.get('error')}",
            "tool_called": f"{who} called {payload.get('tool')}",
        }.get(kind)
        if what is None:
            waiting = {"sampling": "the client's model", "host_step": "the host (submit_step)"}.get(
                str(payload.get("kind")), payload.get("kind")
            )
            what = f"{who} is waiting for {waiting}"
        parts = [what]
        at = _position(self.pattern, key)
        if self.unit and at is not None:
            parts.append(f"{self.unit} {at} of {self.of}" if self.of else f"{self.unit} {at}")
        parts.append(_usage(reader, self.run_id))
        return " · ".join(parts)


def _finished_steps(run_id: str, reader: AuditReader) -> int:
    """Steps of the run already ended when following starts (a resumed or re-followed run)."""
    rows = reader.query("select count(*) as n from steps where run_id = ? and status != 'running'", (run_id,))
    return int(rows[0]["n"])


def _options(run: dict[str, Any]) -> dict[str, Any]:
    raw = run.get("options")
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _members(options: dict[str, Any]) -> list[str]:
    recipe = options.get("recipe")
    members = options.get("agents") or (recipe.get("members") if isinstance(recipe, dict) else None)
    return [m for m in members if isinstance(m, str)] if isinstance(members, list) else []


def _unit_count(
    pattern: str, options: dict[str, Any], members: list[str], max_turns: int | None
) -> int | None:
    given = options.get("limits")
    limits: dict[str, Any] = given if isinstance(given, dict) else {}
    if pattern in ("sequential", "concurrent"):
        return len(members) or None
    if pattern == "group_chat":
        return options.get("max_turns") or limits.get("max_turns") or max_turns
    if pattern == "magentic":
        return options.get("max_rounds") or limits.get("max_turns") or max_turns
    return None


def _total_steps(
    pattern: str, options: dict[str, Any], members: list[str], team_names: frozenset[str]
) -> int | None:
    if any(m in team_names for m in members):
        return None  # a sub-team takes as many steps as its own pattern does
    if pattern == "delegate" and not options.get("allow_handoffs"):
        return 1
    if pattern == "sequential" and not (options.get("checkpoint") or {}).get("agent"):
        return len(members) or None
    if pattern == "concurrent" and options.get("reconcile", "all") != "judge" and not options.get("judge"):
        return len(members) or None
    return None


def _position(pattern: str, key: str | None) -> int | None:
    if not key or "/" in key:  # a nested team's step: the parent's position stands
        return None
    head = key.split(".", 1)[0]
    if not head.isdigit():
        return None
    return int(head) + (1 if pattern in ZERO_BASED else 0)


def _usage(reader: AuditReader, run_id: str) -> str:
    rows = reader.query("select input_tokens, output_tokens, cost_usd from runs where id = ?", (run_id,))
    if not rows:
        return "no usage yet"
    row = rows[0]
    if row["input_tokens"] is None and row["output_tokens"] is None:
        tokens = "tokens not reported"
    else:
        tokens = f"{(row['input_tokens'] or 0) + (row['output_tokens'] or 0):,} tokens"
    cost = "" if row["cost_usd"] is None else f", ${row['cost_usd']:.4f}"
    return f"{tokens}{cost} so far"


def asked_for_progress(ctx: Context[Any, Any]) -> bool:
    """Whether this tool call carries a progress token (else `report_progress` sends nothing, so the server
    need not work out progress at all)."""
    meta = ctx.request_context.meta
    if meta and meta.get("progress_token") is not None:
        return True
    # in-process the SDK's dispatch context holds the client's callback instead of a token; look there, and
    # when it cannot be told (a dispatcher we do not know) report as before
    outbound: Any = getattr(ctx.request_context.session, "_request_outbound", None)
    while hasattr(outbound, "_inner"):
        outbound = outbound._inner
    for attribute in ("_progress_token", "_on_progress"):
        if hasattr(outbound, attribute):
            return getattr(outbound, attribute) is not None
    return True
