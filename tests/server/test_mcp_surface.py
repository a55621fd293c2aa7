"""The MCP surface a host sees besides tools: logging levels, progress, prompts, resources and their changes."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import LoggingMessageNotificationParams, ResourceListChangedNotification

from orchestration.audit.schema import timestamp
from server.app import build_server
from server.settings import Settings
from tests.conftest import team

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "auto"]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def scripted(*replies: str, latency_ms: int = 0) -> dict[str, Any]:
    return {"model": "scripted", "scripted": {"replies": list(replies), "latency_ms": latency_ms}}


TEAM = team(
    researcher=scripted(),
    writer=scripted(),
    reviewer=scripted(),
    v1=scripted("Paris"),
    v2=scripted("Lyon"),
    slow=scripted("late", latency_ms=60_000),
)


def server(db: Path):
    return build_server(Settings(db=db, default_wait_seconds=10), config=TEAM)


@pytest.mark.parametrize("mode", ERAS)
async def test_capabilities_declare_logging_prompts_and_resources(db: Path, mode: str) -> None:
    async with Client(server(db), mode=mode) as client:
        caps = client.server_capabilities
        prompts = (await client.list_prompts()).prompts
    assert caps.logging is not None and caps.prompts is not None and caps.resources is not None
    assert caps.resources.list_changed is True
    assert {p.name for p in prompts} == {"second_opinion", "debate", "plan_goal", "review_approvals"}


async def test_set_level_is_honoured_for_our_log_messages(db: Path) -> None:
    heard: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        heard.append(params)

    async with Client(server(db), mode="legacy", logging_callback=on_log) as client:
        await client.set_logging_level("warning")
        quiet = await client.call_tool("delegate_task", {"agent": "writer", "task": "one"})
        after_quiet = len(heard)
        await client.set_logging_level("info")
        loud = await client.call_tool("delegate_task", {"agent": "writer", "task": "two"})
    assert quiet.structured_content["status"] == loud.structured_content["status"] == "succeeded"
    assert after_quiet == 0
    assert heard and all(p.level == "info" and p.logger == "concertmaster" for p in heard)
    assert any("writer finished" in str(p.data) for p in heard)


@pytest.mark.parametrize("level", ["warning", "info"])
async def test_a_2026_client_chooses_the_log_level_per_request(db: Path, level: str) -> None:
    heard: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        heard.append(params)

    async with Client(server(db), logging_callback=on_log, log_level=level) as client:
        run = await client.call_tool("delegate_task", {"agent": "writer", "task": "one"})
    assert run.structured_content["status"] == "succeeded"
    if level == "warning":
        assert heard == []
    else:
        assert any("writer finished" in str(p.data) for p in heard)


@pytest.mark.parametrize("mode", ERAS)
async def test_progress_strictly_increases_with_a_total_and_says_where_the_run_is(
    db: Path, mode: str
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(server(db), mode=mode) as client:
        run = await client.call_tool(
            "run_sequential",
            {"agents": ["researcher", "writer", "reviewer"], "task": "t"},
            progress_callback=on_progress,
        )
    assert run.structured_content["status"] == "succeeded"
    values = [p for p, _, _ in seen]
    assert values == sorted(set(values)) and values[-1] == 3
    assert {total for _, total, _ in seen} == {3}
    messages = [m or "" for _, _, m in seen]
    assert any(m.startswith("writer is working · step 2 of 3 · ") for m in messages), messages
    assert messages[-1].startswith("reviewer finished · step 3 of 3 · ") and "tokens" in messages[-1]


async def test_group_chat_progress_counts_turns_of_max_turns(db: Path) -> None:
    seen: list[tuple[float, float | None, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message or ""))

    async with Client(server(db)) as client:
        run = await client.call_tool(
            "start_group_chat",
            {"agents": ["researcher", "reviewer"], "topic": "t", "max_turns": 3},
            progress_callback=on_progress,
        )
    assert run.structured_content["status"] == "stopped"
    assert [p for p, _, _ in seen] == sorted({p for p, _, _ in seen})
    assert any("turn 3 of 3" in m for _, _, m in seen) and not any("of 12" in m for _, _, m in seen)
    assert all(total is None for _, total, _ in seen)  # the number of steps is not fixed in advance


@pytest.mark.parametrize("mode", ERAS)
async def test_each_prompt_names_a_tool_the_server_has_and_the_teams_agents(db: Path, mode: str) -> None:
    async with Client(server(db), mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        texts = {}
        for prompt, args in [
            ("second_opinion", {"subject": "my draft"}),
            ("debate", {"question": "tabs or spaces?", "turns": "4"}),
            ("plan_goal", {"goal": "ship it"}),
            ("review_approvals", {}),
        ]:
            result = await client.get_prompt(prompt, args)
            texts[prompt] = result.messages[0].content.text
    assert (
        "run_concurrent" in texts["second_opinion"] and "'reviewer', 'researcher'" in texts["second_opinion"]
    )
    assert "start_group_chat" in texts["debate"] and "max_turns 4" in texts["debate"]
    assert "plan_and_execute" in texts["plan_goal"] and "dry_run true" in texts["plan_goal"]
    assert (
        "list_pending_approvals" in texts["review_approvals"] and "Never decide" in texts["review_approvals"]
    )
    for text in texts.values():
        named = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", text)) - {"dry_run", "max_turns"}
        assert named and named <= tools, named - tools


async def test_resources_list_recent_runs_and_pending_approvals_and_announce_changes(db: Path) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceListChangedNotification) or (
            getattr(message, "root", None) is not None
            and isinstance(message.root, ResourceListChangedNotification)
        ):
            changed.set()

    async with Client(server(db), mode="legacy", message_handler=on_message) as client:
        assert [str(r.uri) for r in (await client.list_resources()).resources] == [
            "concertmaster://audit/schema"
        ]
        run = (
            await client.call_tool(
                "run_concurrent",
                {
                    "agents": ["v1", "v2"],
                    "task": "capital?",
                    "reconcile": "majority",
                    "on_disagreement": "escalate",
                },
            )
        ).structured_content
        assert run["status"] == "awaiting_approval"
        with anyio.fail_after(60):  # bounds a hang; the watcher looks once a second
            await changed.wait()
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        (action,) = [u for u in listed if u.startswith("concertmaster://approvals/")]
        assert f"concertmaster://runs/{run['run_id']}" in listed
        assert "waiting for you" in (listed[action].title or "")
        body = (await client.read_resource(action)).contents[0].text
        changed = anyio.Event()
        await client.call_tool(
            "approve_action", {"action_id": action.rsplit("/", 1)[1], "decision": "approve", "reason": "ok"}
        )
        with anyio.fail_after(60):
            await changed.wait()
        after = [str(r.uri) for r in (await client.list_resources()).resources]
    assert '"status": "pending"' in body and '"tool": "concurrent.accept_answer"' in body
    assert action not in after and f"concertmaster://runs/{run['run_id']}" in after


async def test_every_timestamp_has_one_format(db: Path) -> None:
    async with Client(server(db)) as client:
        await client.call_tool(
            "run_concurrent",
            {
                "agents": ["v1", "v2"],
                "task": "capital?",
                "reconcile": "majority",
                "on_disagreement": "escalate",
            },
        )
    conn = sqlite3.connect(db)
    try:
        values = conn.execute(
            "select created_at, expires_at from pending_requests union all "
            "select started_at, ended_at from runs union all select created_at, null from events"
        ).fetchall()
        live = conn.execute(
            "select count(*) from approvals where expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
        ).fetchone()[0]
    finally:
        conn.close()
    stamps = [v for row in values for v in row if v is not None]
    assert stamps and all(ISO.match(v) for v in stamps), [v for v in stamps if not ISO.match(v)]
    assert any(row[1] for row in values)  # the approval has an expiry, in the same format
    assert live == 1  # and compares with SQLite's own clock as text
    from datetime import UTC, datetime, timedelta, timezone

    assert timestamp(datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-01-02T01:04:05.006Z"
    )
    assert ISO.match(timestamp(datetime.now(UTC)))


async def test_a_2026_client_hears_resource_list_changes_on_its_listen_stream(db: Path) -> None:
    async with Client(server(db)) as client:
        async with client.listen(resources_list_changed=True) as subscription:
            await client.call_tool("delegate_task", {"agent": "writer", "task": "hello"})
            with anyio.fail_after(60):  # bounds a hang; the watcher looks once a second
                event = await subscription.__aiter__().__anext__()
        listed = [
            str(r.uri)
            for r in (await client.list_resources()).resources
            if str(r.uri) != "concertmaster://audit/schema"
        ]
    assert type(event).__name__ == "ResourcesListChanged"
    assert len(listed) == 1 and listed[0].startswith("concertmaster://runs/run_")
