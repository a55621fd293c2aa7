"""The summary tables, recomputed from the chained events: what `audit verify` compares them with.

The hash chain covers `events` only, while people (and the views, and the README's queries) read `runs`,
`steps` and `pending_requests`. Every change to those rows is written in the same transaction as an event
that says it, so replaying the events gives the rows back; an edited row shows up as a mismatch. Columns the
events do not determine (owner, lease, timings other than `ended_at`) are not checked, and events this module
does not know are skipped, so new event kinds and new columns do not break verification.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

FINAL_RUN = frozenset({"succeeded", "failed", "stopped", "cancelled", "interrupted"})

STEP_END = {"step_finished", "step_failed", "step_cancelled", "step_stopped"}
REQUEST_END = {"input_received", "input_expired", "input_cancelled"}
APPROVAL_FIELDS = ("agent", "tool", "arguments", "reason", "rule", "human_only", "digest", "question")


@dataclass
class Usage:
    """Token and cost totals with the audit's NULL rule: NULL until something was reported."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None

    def add(self, payload: dict[str, Any]) -> None:
        for name in ("input_tokens", "output_tokens", "cost_usd"):
            value = payload.get(name)
            if value is not None:
                setattr(self, name, (getattr(self, name) or 0) + value)


@dataclass
class RunState:
    status: str = "running"
    stop_reason: str | None = None
    output: str | None = None
    error: str | None = None
    ended_at: str | None = None
    finished: bool = False
    principal: str | None = None
    """Who started it, when `run_started` says (older events do not)."""
    usage: Usage = field(default_factory=Usage)


@dataclass
class StepState:
    run_id: str | None
    status: str = "running"
    output: str | None = None
    error: str | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass
class RequestState:
    run_id: str | None
    kind: str
    status: str = "pending"
    asked: dict[str, Any] | None = None
    """What an approval asked (its `approval_requested` event)."""
    decision: dict[str, Any] | None = None
    """Its `approval_decided` event, if any."""


@dataclass
class Summary:
    """The rows the events imply."""

    runs: dict[str, RunState] = field(default_factory=dict)
    steps: dict[str, StepState] = field(default_factory=dict)
    requests: dict[str, RequestState] = field(default_factory=dict)


def replay(conn: sqlite3.Connection) -> Summary:
    """Replay every event, in order, into the summary rows it implies."""
    out = Summary()
    for run_id, step_id, kind, text in conn.execute(
        "select run_id, step_id, kind, payload from events order by seq"
    ):
        try:
            payload = json.loads(text)
        except ValueError:
            continue  # an edited event: the chain check reports it
        if isinstance(payload, dict):
            _apply(out, run_id, step_id, kind, payload)
    return out


def _apply(out: Summary, run_id: str | None, step_id: str | None, kind: str, p: dict[str, Any]) -> None:
    run = out.runs.get(run_id) if run_id else None
    if kind == "run_started" and run_id:
        out.runs[run_id] = RunState(principal=p.get("principal"))
    elif kind == "run_finished" and run is not None:
        run.status, run.stop_reason = p.get("status", run.status), p.get("reason")
        run.error, run.ended_at, run.finished = p.get("error"), p.get("ended_at"), True
        if "output" in p:  # the run itself ended: steps cut short end with it
            run.output = p["output"]
            _end_running_steps(out, run_id, "cancelled" if run.status == "cancelled" else "interrupted")
        elif run.status == "cancelled":  # cancelled while no server ran it: its questions are closed too
            _end_running_steps(out, run_id, "cancelled")
            _cancel_requests(out, run_id)
    elif kind == "run_interrupted" and run is not None:
        run.status, run.finished, run.ended_at = str(p.get("status", "interrupted")), True, p.get("ended_at")
        if "error" in p:  # interrupted for a resume: its questions stay open
            run.stop_reason, run.error = p.get("reason"), p.get("error")
        else:  # older servers: interrupted for good, its questions cancelled
            run.stop_reason, run.error = "server_restart", p.get("reason")
            _cancel_requests(out, run_id)
        _end_running_steps(out, run_id, run.status)
    elif kind == "run_resumed" and run is not None:
        run.status, run.stop_reason, run.error, run.ended_at, run.finished = (
            "running",
            None,
            None,
            None,
            False,
        )
        for req in out.requests.values():  # a question to the client's model can't outlive its session
            if req.run_id == run_id and req.kind == "sampling" and req.status == "pending":
                req.status = "cancelled"
    elif kind == "model_called":
        if run is not None:
            run.usage.add(p)
        if step_id in out.steps:
            out.steps[step_id].usage.add(p)
    elif kind == "step_started" and step_id:
        out.steps[step_id] = StepState(run_id)
    elif kind == "step_resumed" and step_id in out.steps:
        out.steps[step_id].status = "running"
    elif kind in STEP_END and step_id in out.steps:
        step = out.steps[step_id]
        step.status, step.output, step.error = p.get("status", step.status), p.get("output"), p.get("error")
    elif kind == "input_requested" and p.get("request_id"):
        out.requests[p["request_id"]] = RequestState(run_id, str(p.get("kind")))
    elif kind == "approval_requested" and p.get("action_id") in out.requests:
        out.requests[p["action_id"]].asked = p
    elif kind == "approval_decided" and p.get("action_id") in out.requests:
        req = out.requests[p["action_id"]]
        req.decision = p
        if req.status == "pending":  # from the CLI; the server's own decisions close it in the same write
            req.status = "answered"
    elif kind in REQUEST_END and p.get("request_id") in out.requests:
        out.requests[p["request_id"]].status = str(p.get("status"))


def _cancel_requests(out: Summary, run_id: str | None) -> None:
    for req in out.requests.values():
        if req.run_id == run_id and req.status in ("pending", "answered"):
            req.status = "cancelled"


def _end_running_steps(out: Summary, run_id: str | None, status: str) -> None:
    for step in out.steps.values():
        if step.run_id == run_id and step.status == "running":
            step.status = status


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return (a if a != "" else None) == (b if b != "" else None)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def mismatches(conn: sqlite3.Connection) -> Iterator[str]:
    """Every difference between the summary tables and what the chained events imply, one line each."""
    conn.row_factory = sqlite3.Row
    want = replay(conn)
    yield from _runs(conn, want)
    yield from _steps(conn, want)
    yield from _requests(conn, want)


def _diff(what: str, checks: list[tuple[str, Any, Any]]) -> Iterator[str]:
    for column, have, expected in checks:
        if not _same(have, expected):
            yield f"{what}: {column} is {_short(have)} but the events say {_short(expected)} (edited?)"


def _runs(conn: sqlite3.Connection, want: Summary) -> Iterator[str]:
    seen = set()
    for row in conn.execute("select * from runs"):
        seen.add(row["id"])
        run = want.runs.get(row["id"])
        what = f"runs {row['id']}"
        if run is None:
            yield f"{what}: no run_started event for this row (inserted by hand?)"
            continue
        checks: list[tuple[str, Any, Any]] = [
            ("input_tokens", row["input_tokens"], run.usage.input_tokens),
            ("output_tokens", row["output_tokens"], run.usage.output_tokens),
            ("cost_usd", row["cost_usd"], run.usage.cost_usd),
        ]
        if run.principal is not None:
            checks.append(
                ("principal", row["principal"] if "principal" in row.keys() else None, run.principal)
            )
        if run.finished:
            checks += [
                ("status", row["status"], run.status),
                ("stop_reason", row["stop_reason"], run.stop_reason),
                ("output", row["output"], run.output),
                ("error", row["error"], run.error),
            ]
            if run.ended_at is not None:
                checks.append(("ended_at", row["ended_at"], run.ended_at))
            elif row["ended_at"] is None:
                yield f"{what}: ended_at is empty but the events say the run ended (edited?)"
        elif row["status"] in FINAL_RUN:
            yield f"{what}: status is {row['status']!r} but no event ended the run (edited?)"
        yield from _diff(what, checks)
    for run_id in want.runs.keys() - seen:
        yield f"runs {run_id}: in the events but not in the table (deleted?)"


def _steps(conn: sqlite3.Connection, want: Summary) -> Iterator[str]:
    seen = set()
    for row in conn.execute("select * from steps"):
        seen.add(row["id"])
        step = want.steps.get(row["id"])
        what = f"steps {row['id']}"
        if step is None:
            yield f"{what}: no step_started event for this row (inserted by hand?)"
            continue
        checks: list[tuple[str, Any, Any]] = [
            ("status", row["status"], step.status),
            ("input_tokens", row["input_tokens"], step.usage.input_tokens),
            ("output_tokens", row["output_tokens"], step.usage.output_tokens),
            ("cost_usd", row["cost_usd"], step.usage.cost_usd),
        ]
        if step.status != "running":
            checks += [("output", row["output"], step.output), ("error", row["error"], step.error)]
        yield from _diff(what, checks)
    for step_id in want.steps.keys() - seen:
        yield f"steps {step_id}: in the events but not in the table (deleted?)"


def _requests(conn: sqlite3.Connection, want: Summary) -> Iterator[str]:
    seen = set()
    for row in conn.execute("select * from pending_requests"):
        seen.add(row["id"])
        req = want.requests.get(row["id"])
        what = f"pending_requests {row['id']}"
        if req is None:
            yield f"{what}: no input_requested event for this row (inserted by hand?)"
            continue
        yield from _diff(what, [("status", row["status"], req.status)])
        if req.asked is not None:
            try:
                stored = json.loads(row["payload"])
            except ValueError:
                stored = {}
            for name in APPROVAL_FIELDS:
                if stored.get(name) != req.asked.get(name):
                    yield (
                        f"{what}: payload.{name} is {_short(stored.get(name))} but the approval_requested event"
                        f" says {_short(req.asked.get(name))} (edited?)"
                    )
        if req.kind == "approval" and row["response"] is not None:
            try:
                response = json.loads(row["response"]) or {}
            except ValueError:
                response = {}
            decided = req.decision or {}
            for name in ("decision", "digest"):
                if response.get(name) != decided.get(name):
                    yield (
                        f"{what}: response.{name} is {_short(response.get(name))} but the approval_decided event"
                        f" says {_short(decided.get(name))} (forged?)"
                    )
    for request_id in want.requests.keys() - seen:
        yield f"pending_requests {request_id}: in the events but not in the table (deleted?)"
