"""query_audit, the audit schema resource, run diagrams and get_run(diagram=true), through a real MCP client."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from orchestration.audit.catalog import EVENT_KINDS, QUESTIONS, STOP_REASONS
from orchestration.audit.query import AuditQuery
from orchestration.errors import InvalidInputError
from server.app import build_server
from server.settings import Settings
from tests.audit_world import TEAM

pytestmark = pytest.mark.anyio
World = tuple[Path, dict[str, str]]


@pytest.fixture
def copy(audit_world: World, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private copy of the shared audit (the server opens it for writing)."""
    db, runs = audit_world
    target = tmp_path / "audit.db"
    shutil.copy(db, target)
    return target, runs


def server(db: Path):
    return build_server(Settings(db=db, default_wait_seconds=5), config=TEAM)


async def query(client: Client, sql: str, **extra: Any) -> Any:
    return await client.call_tool("query_audit", {"sql": sql, **extra})


async def test_query_audit_answers_every_documented_question(copy: World) -> None:
    db, runs = copy
    answers: dict[str, Any] = {}
    async with Client(server(db)) as client:
        for name, (_, sql) in QUESTIONS.items():
            scenario = "group_chat" if name == "chat_transcript" else "plan"
            result = await query(client, sql.replace(":run_id", f"'{runs[scenario]}'"))
            assert not result.is_error, (name, result.content)
            answers[name] = result.structured_content
    week = answers["cost_per_agent_this_week"]
    assert week["columns"][:2] == ["agent", "runs"]
    assert {row[0] for row in week["rows"]} >= {"a", "b", "researcher", "writer", "boss", "planner", "clerk"}
    assert [r[0] for r in answers["cost_per_agent_of_a_run"]["rows"]] == ["planner", "researcher", "writer"]
    denied = answers["denied_tool_calls_this_week"]["rows"]
    assert [(r[3], r[4]) for r in denied] == [("files.nope", "refused"), ("files.delete_file", "denied")]
    assert [r[1] for r in answers["chat_transcript"]["rows"]] == ["a", "b", "a"]
    assert [r[2] for r in answers["guardrail_stops"]["rows"]] == ["max_turns"]
    assert answers["pending_approvals"]["rows"] == []


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("delete from runs", "refused: writing"),
        ("update runs set status = 'succeeded'", "refused: writing"),
        ("insert into events (kind) values ('forged')", "refused: writing"),
        ("create table t (x)", "refused: writing"),
        ("drop view run_summary", "refused: writing"),
        ("attach database ':memory:' as other", "refused: ATTACH"),
        ("pragma journal_mode = delete", "refused: PRAGMA journal_mode"),
        ("pragma query_only = off", "refused: PRAGMA query_only"),
        ("select * from audit_head", "not one of the documented tables"),
        ("select 1; delete from runs", "exactly one SELECT"),
        ("select * from nowhere", "no such table: nowhere"),
    ],
)
async def test_query_audit_refuses_anything_but_reading(copy: World, sql: str, says: str) -> None:
    db, _ = copy
    before = sqlite3.connect(db).execute("select count(*) from runs").fetchone()
    async with Client(server(db)) as client:
        result = await query(client, sql)
        still = await query(client, "select count(*) from runs")  # the server stays up
    assert result.is_error and says in result.content[0].text, result.content
    assert still.structured_content["rows"] == [list(before)]


async def test_a_runaway_query_is_stopped_by_its_step_budget(copy: World) -> None:
    db, _ = copy
    runaway = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"
    async with Client(server(db)) as client:
        result = await query(client, runaway)
    assert result.is_error and "too much work" in result.content[0].text
    # the budget counts SQLite VM steps, not seconds: the same query stops after the same work anywhere
    small = AuditQuery(db, max_steps=50_000)
    with pytest.raises(InvalidInputError, match="over 50,000 SQLite steps"):
        small.run(runaway)
    bounded = (
        "with recursive c(x) as (select 1 union all select x + 1 from c limit 1000) select count(*) from c"
    )
    assert small.run(bounded).rows == [[1000]]


async def test_rows_are_capped_and_results_redacted(copy: World) -> None:
    db, _ = copy
    conn = sqlite3.connect(db)
    with conn:  # a secret that reached the file some other way (written before a redaction rule existed)
        conn.execute(
            "update runs set output = 'key sk-ant-planted-xxxxxxxxxxxxxxxx' where pattern = 'delegate'"
        )
    conn.close()
    async with Client(server(db)) as client:
        capped = (await query(client, "select seq from events order by seq", limit=3)).structured_content
        leaked = (
            await query(client, "select output from runs where pattern = 'delegate'")
        ).structured_content
        too_many = await query(client, "select 1", limit=5000)
    assert capped["rows"] == [[1], [2], [3]] and capped["truncated"] is True
    assert leaked["rows"] and all("sk-ant-planted" not in row[0] for row in leaked["rows"])
    assert any("[redacted]" in row[0] for row in leaked["rows"])
    assert too_many.is_error and "limit" in too_many.content[0].text


async def test_the_tool_description_is_short_and_the_schema_resource_has_the_rest(copy: World) -> None:
    db, _ = copy
    async with Client(server(db)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schema = await client.read_resource("concertmaster://audit/schema")
    description = tools["query_audit"].description or ""
    assert len(description) < 700 and "concertmaster://audit/schema" in description
    text = schema.contents[0].text  # type: ignore[union-attr]
    for word in [
        *EVENT_KINDS,
        *STOP_REASONS,
        "tool_calls",
        "transcript",
        "guardrail_stops",
        "run_cost_by_agent",
    ]:
        assert word in text


async def test_a_runs_diagram_is_a_resource_and_get_run_adds_it_on_request(copy: World) -> None:
    db, runs = copy
    async with Client(server(db)) as client:
        resource = await client.read_resource(f"concertmaster://runs/{runs['plan']}/diagram")
        plain = (await client.call_tool("get_run", {"run_id": runs["plan"]})).structured_content
        drawn = (
            await client.call_tool("get_run", {"run_id": runs["plan"], "diagram": True})
        ).structured_content
        missing = await client.call_tool("get_run", {"run_id": "run_nope", "diagram": True})
    text = resource.contents[0].text  # type: ignore[union-attr]
    assert text.count("```mermaid\n") == 2 and "sequenceDiagram" in text and "flowchart TD" in text
    assert plain.get("diagram") is None
    assert drawn["diagram"] == text
    assert missing.is_error and "run_nope" in missing.content[0].text
