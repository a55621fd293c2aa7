"""The views with one vocabulary: tool_calls, transcript, guardrail_stops, run_cost_by_agent."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

World = tuple[Path, dict[str, str]]


def rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def test_tool_calls_name_tools_one_way_and_decide_in_one_vocabulary(audit_world: World) -> None:
    db, runs = audit_world
    calls = rows(
        db,
        "select tool, decision, decided_by, policy_decision, rule, is_error, error, latency_ms, tool_latency_ms"
        " from tool_calls where run_id = ? order by seq",
        runs["tools"],
    )
    assert [(c["tool"], c["decision"], c["decided_by"]) for c in calls] == [
        ("files.read_file", "allowed", "policy"),
        ("files.delete_file", "approved", "human"),
        ("files.delete_file", "denied", "human"),
        ("files.nope", "refused", "concertmaster"),
    ]
    read, approved, denied, refused = calls
    assert read["rule"] == "read-only-allowed" and read["error"] is None and read["tool_latency_ms"] > 0
    assert (
        approved["policy_decision"] == "require_approval" and approved["rule"] == "destructive-needs-approval"
    )
    assert denied["is_error"] == 1 and "keep b" in denied["error"] and denied["tool_latency_ms"] is None
    assert "unknown tool" in refused["error"]
    assert all(c["latency_ms"] is not None for c in calls)
    # concertmaster's own tools read as concertmaster.X, never the model's server__tool form
    (transfer,) = rows(db, "select tool, decision from tool_calls where run_id = ?", runs["handoff"])
    assert transfer == {"tool": "concertmaster.transfer_to_writer", "decision": "allowed"}
    assert rows(db, "select count(*) as n from tool_calls where tool like '%\\_\\_%' escape '\\'") == [
        {"n": 0}
    ]


@pytest.mark.parametrize(
    ("scenario", "speakers"),
    [
        ("group_chat", ["a", "b", "a"]),
        ("magentic", ["researcher", "writer"]),
        ("handoff", ["researcher", "writer"]),
    ],
)
def test_the_transcript_has_speaker_turns_only_in_order(
    audit_world: World, scenario: str, speakers: list[str]
) -> None:
    db, runs = audit_world
    turns = rows(
        db, "select turn, speaker, kind, text from transcript where run_id = ? order by turn", runs[scenario]
    )
    assert [t["speaker"] for t in turns] == speakers
    assert [t["turn"] for t in turns] == list(range(1, len(speakers) + 1))
    assert all(t["kind"] == "turn" for t in turns)
    # the manager's selections and ledgers are not turns
    assert "boss" not in [t["speaker"] for t in turns]


def test_the_transcript_leaves_other_patterns_out(audit_world: World) -> None:
    db, runs = audit_world
    assert rows(db, "select * from transcript where run_id in (?, ?)", runs["sequential"], runs["plan"]) == []


def test_guardrail_stops_lists_stopped_runs_with_their_reason(audit_world: World) -> None:
    db, runs = audit_world
    stops = rows(db, "select run_id, stop_reason, detail, last_agent, partial_output from guardrail_stops")
    assert [s["run_id"] for s in stops] == [runs["group_chat"]]
    (stop,) = stops
    assert stop["stop_reason"] == "max_turns" and "max_turns=3" in stop["detail"]
    assert stop["last_agent"] == "a" and stop["partial_output"] == "a says 42"


def test_run_cost_by_agent_sums_each_agents_steps_of_a_run(audit_world: World) -> None:
    db, runs = audit_world
    by_agent = rows(
        db,
        "select agent, steps, input_tokens, output_tokens, cost_usd from run_cost_by_agent where run_id = ?"
        " order by agent",
        runs["plan"],
    )
    assert by_agent == [
        {"agent": "planner", "steps": 1, "input_tokens": 40, "output_tokens": 60, "cost_usd": 0.0},
        {"agent": "researcher", "steps": 2, "input_tokens": 80, "output_tokens": 120, "cost_usd": 0.0},
        {"agent": "writer", "steps": 1, "input_tokens": 40, "output_tokens": 60, "cost_usd": 0.0},
    ]
    # a sub-team's own step is not an agent: its members' steps carry the usage
    team_run = rows(db, "select agent from run_cost_by_agent where run_id = ? order by agent", runs["team"])
    assert [r["agent"] for r in team_run] == ["a", "researcher", "writer"]
    (total,) = rows(db, "select input_tokens from runs where id = ?", runs["team"])
    (summed,) = rows(
        db, "select sum(input_tokens) as s from run_cost_by_agent where run_id = ?", runs["team"]
    )
    assert total["input_tokens"] == summed["s"]
