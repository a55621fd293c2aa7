"""Mermaid pictures of runs: what they show, and that they always parse (the real Mermaid parser, under node)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.audit.read import AuditReader
from orchestration.diagram import SAFE, diagrams, escape, plan_flowchart, sequence_diagram

ROOT = Path(__file__).resolve().parents[2]
NODE_PREFIX = ROOT / ".ci-node"  # `npm install --prefix .ci-node mermaid jsdom` (what .ci/run does)
World = tuple[Path, dict[str, str]]
Parse = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="session")
def mermaid() -> Iterator[Parse]:
    """The real Mermaid parser in a node process; skipped when node or the npm packages are absent."""
    node = shutil.which("node")
    if node is None or not (NODE_PREFIX / "node_modules" / "mermaid").is_dir():
        pytest.skip("node and mermaid are not installed (npm install --prefix .ci-node mermaid@11 jsdom)")
    proc = subprocess.Popen(
        [node, str(ROOT / "tests" / "fixtures" / "mermaid_check.mjs"), str(NODE_PREFIX)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == {"ready": True}

    def parse(text: str) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(text) + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]

    yield parse
    proc.stdin.close()
    proc.wait()


def run_of(db: Path, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    with AuditReader(db) as reader:
        run = reader.run(run_id)
        assert run is not None
        return run, reader.steps(run_id), reader.events(run_id)


SCENARIOS = [
    "delegate",
    "sequential",
    "concurrent",
    "handoff",
    "group_chat",
    "magentic",
    "plan",
    "team",
    "tools",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_patterns_diagram_parses(audit_world: World, mermaid: Parse, scenario: str) -> None:
    db, runs = audit_world
    found = diagrams(*run_of(db, runs[scenario]))
    assert len(found) == (2 if scenario == "plan" else 1)
    for text in found:
        parsed = mermaid(text)
        assert parsed["ok"], (parsed, text)
    assert mermaid(found[0])["type"] == "sequence"
    if scenario == "plan":
        assert mermaid(found[1])["type"].startswith("flowchart")


def test_the_parser_really_rejects_a_broken_diagram(mermaid: Parse) -> None:
    assert not mermaid("sequenceDiagram\n    A->>B: hi\n    end\n")["ok"]
    assert not mermaid('flowchart TD\n    a["x"] --> b[\n')["ok"]


def test_the_sequence_diagram_shows_who_spoke_tools_approvals_and_cost(audit_world: World) -> None:
    db, runs = audit_world
    text = sequence_diagram(*run_of(db, runs["tools"]))
    assert "actor P0 as You (the assistant)" in text and "participant P2 as clerk" in text
    assert "participant P3 as tool files" in text
    assert "P2->>P3: files__read_file(" in text
    assert "P3--xP2: not approved (elicitation)" in text  # the denied delete, as an error answer
    assert "P1->>P4: approval requested" in text and "participant P4 as Human" in text
    assert "Note over P1: policy require_approval files.delete_file" in text
    assert "scripted#58; 40 in / 60 out tokens, USD 0.0000" in text
    assert text.splitlines()[-1].startswith("    P1-->>P0: succeeded (completed) 200 in / 300 out tokens")


def test_handoffs_and_guardrail_stops_are_drawn(audit_world: World) -> None:
    db, runs = audit_world
    handoff = sequence_diagram(*run_of(db, runs["handoff"]))
    assert "P2->>P3: transfer#58; over to you" in handoff  # researcher hands over to writer
    chat = sequence_diagram(*run_of(db, runs["group_chat"]))
    assert "Note over P1: stopped by max_turns#58; the chat did not conclude within max_turns=3" in chat
    assert chat.splitlines()[-1].startswith("    P1--xP0: stopped (max_turns)")


def test_a_sub_teams_members_answer_to_the_team_step(audit_world: World) -> None:
    db, runs = audit_world
    text = sequence_diagram(*run_of(db, runs["team"]))
    ids = dict(re.findall(r"participant (P\d+) as (\w+)", text))
    by_name = {v: k for k, v in ids.items()}
    assert f"{by_name['duo']}->>{by_name['researcher']}" in text  # the team hands its members their tasks
    assert f"{by_name['researcher']}-->>{by_name['duo']}" in text


def test_the_plan_is_drawn_as_its_dag_with_outcomes(audit_world: World) -> None:
    db, runs = audit_world
    _, _, events = run_of(db, runs["plan"])
    flow = plan_flowchart(events)
    assert flow is not None
    assert "R0S0 --> R0S1" in flow and "R0S0 --> R0S2" in flow and "R0S1 --> R0S2" not in flow
    assert flow.count("class R0S") == 3 and "class R0S1 succeeded" in flow
    assert plan_flowchart(run_of(db, runs["delegate"])[2]) is None


def test_hostile_agent_text_is_escaped(audit_world: World) -> None:
    db, runs = audit_world
    text = sequence_diagram(*run_of(db, runs["sequential"]))
    assert "<script>" not in text and "-->>B" not in text and "%%" not in text
    assert "#60;script#62;" in text


ENTITY = re.compile(r"#\d+;")


@given(st.text(max_size=300))
def test_escaped_text_is_one_line_of_safe_characters_and_entity_codes(text: str) -> None:
    escaped = escape(text)
    assert "\n" not in escaped and escaped == escaped.strip()
    assert set(ENTITY.sub("", escaped)) <= SAFE


def _fake_run(text: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """A run whose every free-text field is `text`: agent names, task, outputs, tools, a plan."""
    step = {"id": "s1", "agent": text or "x", "parent_step_id": None}
    events = [
        {
            "kind": "run_started",
            "step_id": None,
            "payload": {"pattern": "plan", "control": text, "input": text},
        },
        {"kind": "step_started", "step_id": "s1", "payload": {"agent": text, "input": text}},
        {
            "kind": "model_called",
            "step_id": "s1",
            "payload": {"model": text, "input_tokens": 1, "cost_usd": 0.5},
        },
        {
            "kind": "tool_called",
            "step_id": "s1",
            "payload": {"tool": f"{text}__{text}", "arguments": {text: text}, "result": text},
        },
        {
            "kind": "handoff",
            "step_id": "s1",
            "payload": {"from": text, "to": text + "2", "mode": "transfer", "message": text},
        },
        {
            "kind": "approval_decided",
            "step_id": "s1",
            "payload": {"decision": "deny", "channel": text, "reason": text},
        },
        {
            "kind": "plan",
            "step_id": None,
            "payload": {
                "round": 0,
                "plan": {
                    "subtasks": [
                        {"id": text, "agent": text, "task": text, "depends_on": []},
                        {"id": text + "b", "agent": text, "task": text, "depends_on": [text]},
                    ]
                },
            },
        },
        {"kind": "subtask_finished", "step_id": None, "payload": {"id": text, "status": "failed"}},
        {"kind": "step_finished", "step_id": "s1", "payload": {"output": text}},
        {
            "kind": "run_finished",
            "step_id": None,
            "payload": {"status": "stopped", "reason": text, "error": text},
        },
    ]
    return {"input_tokens": 1, "output_tokens": 2, "cost_usd": None}, [step], events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.text(min_size=1, max_size=120)
    | st.sampled_from(["end", "-->>", ";", "%%", "#", "loop", '"', "\n", "participant"])
)
def test_any_agent_text_gives_diagrams_that_parse(mermaid: Parse, text: str) -> None:
    for diagram in diagrams(*_fake_run(text)):
        parsed = mermaid(diagram)
        assert parsed["ok"], (parsed, diagram)


def test_a_long_run_stays_under_mermaids_size_limit_and_still_parses(mermaid: Parse) -> None:
    run, steps, events = _fake_run("長い" * 100)
    middle = [
        e for e in events if e["kind"] not in ("run_started", "run_finished", "plan", "subtask_finished")
    ]
    long_events = [events[0], *middle * 400, events[-1]]
    text = sequence_diagram({**run, "id": "run_long"}, steps, long_events)
    assert len(text) <= 45_000
    assert "more messages left out, concertmaster show run_long has them all" in text
    assert text.splitlines()[-1].startswith("    P1--xP0: stopped")
    parsed = mermaid(text)
    assert parsed["ok"], parsed
