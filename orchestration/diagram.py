"""A picture of a run from its audit: a Mermaid sequence diagram, and for plans the DAG as a Mermaid flowchart.

Everything an agent, a model, a tool or a user wrote is hostile text here: it is cut short and every character
outside a small safe set becomes a Mermaid entity code (`#59;`), so no text can end a line, open a block, start
a comment or inject HTML, and a diagram always parses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?()'/_=+")
"""Characters written as they are; every other one is written as an entity code."""


MAX_CHARS = 45_000
"""Mermaid refuses to render a diagram longer than 50,000 characters (`maxTextSize`): stay under it."""


def escape(text: Any, limit: int = 80) -> str:
    """`text` on one line, at most `limit` characters (and 3 x `limit` once escaped, for text that is mostly
    entities), safe anywhere Mermaid takes free text."""
    value = " ".join(str(text if text is not None else "").split())
    cut = len(value) > limit
    pieces, size = [], 0
    for c in value[:limit]:
        piece = c if c in SAFE else f"#{ord(c)};"
        if size + len(piece) > 3 * limit:
            cut = True
            break
        pieces.append(piece)
        size += len(piece)
    escaped = "".join(pieces).strip() + ("..." if cut else "")
    return escaped or "(empty)"


def _usage(payload: dict[str, Any]) -> str:
    parts = []
    if payload.get("input_tokens") is not None or payload.get("output_tokens") is not None:
        parts.append(
            f"{payload.get('input_tokens') or 0} in / {payload.get('output_tokens') or 0} out tokens"
        )
    if payload.get("cost_usd") is not None:
        parts.append(f"USD {payload['cost_usd']:.4f}")
    return ", ".join(parts)


class _Participants:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.lines: list[str] = []

    def __call__(self, label: str, *, kind: str = "participant") -> str:
        if label not in self.ids:
            pid = f"P{len(self.ids)}"
            self.ids[label] = pid
            self.lines.append(f"    {kind} {pid} as {escape(label, 40)}")
        return self.ids[label]


def sequence_diagram(
    run: dict[str, Any], steps: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]
) -> str:
    """Who spoke to whom in `run`: tasks, answers, model calls (tokens, cost), tool calls, approvals, handoffs,
    guardrail stops. `events` are audit rows with their payload parsed."""
    who = _Participants()
    caller = who("You (the assistant)", kind="actor")
    conductor = who("concertmaster")
    agent_of = {s["id"]: s["agent"] for s in steps}
    parent_of = {s["id"]: s.get("parent_step_id") for s in steps}
    body: list[str] = []

    def say(src: str, arrow: str, dst: str, text: str) -> None:
        body.append(f"    {src}{arrow}{dst}: {escape(text)}")

    def note(over: str, text: str) -> None:
        body.append(f"    Note over {over}: {escape(text)}")

    def step_agent(step_id: str | None) -> str:
        return who(str(agent_of.get(step_id or "", "agent")))

    def caller_of(step_id: str | None) -> str:
        parent = parent_of.get(step_id or "")
        return step_agent(parent) if parent in agent_of else conductor

    for ev in events:
        kind, p, sid = ev["kind"], ev["payload"], ev.get("step_id")
        if kind == "run_started":
            say(caller, "->>", conductor, f"{p.get('pattern')} run ({p.get('control')}): {p.get('input')}")
        elif kind == "step_started":
            say(caller_of(sid), "->>", who(str(p.get("agent"))), str(p.get("input") or ""))
        elif kind == "model_called":
            note(step_agent(sid), f"{p.get('model')}: {_usage(p) or 'usage not reported'}")
        elif kind == "tool_called" and "__" in str(p.get("tool")):
            # concertmaster's own tools (transfer_to_X, consult_X) are drawn by their handoff event
            tool = str(p.get("tool"))
            server = who(f"tool {tool.split('__', 1)[0]}")
            agent = step_agent(sid)
            say(agent, "->>", server, f"{tool}({json.dumps(p.get('arguments'), ensure_ascii=False)})")
            say(server, "--x" if p.get("is_error") else "-->>", agent, str(p.get("result") or ""))
        elif kind == "policy_decided" and p.get("decision") != "allow":
            note(conductor, f"policy {p.get('decision')} {p.get('tool')} (rule {p.get('rule') or 'default'})")
        elif kind == "input_requested":
            target = who("Human") if p.get("kind") == "approval" else caller
            say(conductor, "->>", target, f"{p.get('kind')} requested")
        elif kind == "approval_decided":
            say(
                who("Human"),
                "-->>",
                conductor,
                f"{p.get('decision')} via {p.get('channel')}: {p.get('reason') or ''}",
            )
        elif kind in ("input_expired", "approval_rejected"):
            note(conductor, f"{kind}: {p.get('why') or p.get('kind') or ''}")
        elif kind == "handoff":
            say(who(str(p.get("from"))), "->>", who(str(p.get("to"))), f"{p.get('mode')}: {p.get('message')}")
        elif kind == "escalated":
            say(conductor, "--x", caller, f"escalated ({p.get('reason')}): {p.get('detail')}")
        elif kind == "chat_terminated":
            note(conductor, f"chat ended by {p.get('by')}: {p.get('why')}")
        elif kind == "checkpoint" and not p.get("passed", True):
            note(conductor, f"checkpoint failed: {p.get('reason') or ''}")
        elif kind in ("step_finished", "step_failed", "step_stopped", "step_cancelled"):
            src = step_agent(sid)
            text = (
                p.get("output") if kind == "step_finished" else f"{p.get('status')}: {p.get('error') or ''}"
            )
            say(src, "-->>" if kind == "step_finished" else "--x", caller_of(sid), str(text or ""))
        elif kind == "run_finished":
            usage = _usage(run)
            status = f"{p.get('status')} ({p.get('reason')})"
            if p.get("status") == "stopped":
                note(conductor, f"stopped by {p.get('reason')}: {p.get('error') or ''}")
            say(conductor, "-->>" if p.get("status") == "succeeded" else "--x", caller, f"{status} {usage}")
    head = ["sequenceDiagram", *who.lines]
    size = sum(len(line) + 1 for line in head)
    if size + sum(len(line) + 1 for line in body) > MAX_CHARS:
        # keep the start and the end of a long run, and say what was left out
        tail = body[-3:]
        room = MAX_CHARS - size - sum(len(line) + 1 for line in tail) - 200
        kept: list[str] = []
        for line in body[:-3]:
            if room - len(line) - 1 < 0:
                break
            kept.append(line)
            room -= len(line) + 1
        left_out = len(body) - len(kept) - len(tail)
        summary = (
            f"{left_out} more messages left out, concertmaster show {run.get('id') or 'RUN'} has them all"
        )
        body = [*kept, f"    Note over {conductor}: {escape(summary)}", *tail]
    return "\n".join([*head, *body])


def plan_flowchart(events: Sequence[dict[str, Any]]) -> str | None:
    """The DAG of a planner-executor run (each round's plan, subtasks coloured by outcome), or None."""
    rounds: list[tuple[int, list[dict[str, Any]], dict[str, str]]] = []
    for ev in events:
        p = ev["payload"]
        if ev["kind"] == "plan":
            rounds.append((int(p.get("round") or 0), list((p.get("plan") or {}).get("subtasks") or []), {}))
        elif ev["kind"] == "subtask_finished" and rounds:
            rounds[-1][2][str(p.get("id"))] = str(p.get("status"))
    if not rounds:
        return None
    lines = ["flowchart TD"]
    for index, (round_, subtasks, status) in enumerate(rounds):
        ids = {str(s.get("id")): f"R{index}S{n}" for n, s in enumerate(subtasks)}
        lines.append(f'    subgraph round{index} ["round {round_ + 1}"]')
        for s in subtasks:
            sid = str(s.get("id"))
            label = escape(f"{sid}: {s.get('agent')} - {s.get('task')}", 60)
            lines.append(f'        {ids[sid]}["{label}"]')
        for s in subtasks:
            for dep in s.get("depends_on") or []:
                if str(dep) in ids:
                    lines.append(f"        {ids[str(dep)]} --> {ids[str(s.get('id'))]}")
        lines.append("    end")
        for sid, state in status.items():
            if sid in ids and state in ("succeeded", "failed", "skipped"):
                lines.append(f"    class {ids[sid]} {state}")
    lines += [
        "    classDef succeeded fill:#d4f4dd,stroke:#2e7d32",
        "    classDef failed fill:#fdd,stroke:#c62828",
        "    classDef skipped fill:#eee,stroke:#999,stroke-dasharray: 4 2",
    ]
    return "\n".join(lines)


def diagrams(
    run: dict[str, Any], steps: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]
) -> list[str]:
    """Every diagram of a run: its sequence diagram, and for plans the DAG."""
    found = [sequence_diagram(run, steps, events)]
    flow = plan_flowchart(events)
    if flow is not None:
        found.append(flow)
    return found


def markdown(run: dict[str, Any], steps: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> str:
    """The run's diagrams as fenced ```mermaid blocks, ready for a client (or GitHub) to render."""
    return "\n\n".join(f"```mermaid\n{d}\n```" for d in diagrams(run, steps, events)) + "\n"
