"""`concertmaster demo` (and `demo --tour`): the real server, a real MCP client in-process, the SCRIPTED model.

No network and no key. The tour adds a small notes MCP server (`server.demo_notes`) so that the default policy
has real tool calls to allow, deny and send to a human; after each part it runs the SQL that finds it in the
audit and prints the rows.
"""

from __future__ import annotations

import sqlite3
import sys
import tomllib
from pathlib import Path
from typing import Any

from mcp import Client

from orchestration.config import DEFAULT_TEAM_FILE, TeamConfig, load_config
from server.app import build_server
from server.settings import Settings

DEMO_TEAM = DEFAULT_TEAM_FILE.with_name("demo_team.toml")

BANNER = """\
concertmaster offline demo
  Agents run on the SCRIPTED model: canned replies written for this demo, not a real model.
  Set ANTHROPIC_API_KEY (or use a client with MCP sampling) and `concertmaster serve` for real agents.
"""


async def run_demo(settings: Settings) -> int:
    print(BANNER)
    server = build_server(settings, config=load_config(DEMO_TEAM))
    async with Client(server) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(t.name for t in tools.tools))
        research = await client.call_tool(
            "delegate_task", {"agent": "researcher", "task": "What does SQLite's WAL mode change?"}
        )
        r = research.structured_content or {}
        _print_run("researcher", r)
        draft = await client.call_tool(
            "delegate_task",
            {
                "agent": "writer",
                "task": "Write one paragraph for a developer.",
                "context": r.get("output", ""),
            },
        )
        d = draft.structured_content or {}
        _print_run("writer", d)
    print(f"\naudit database (temporary unless you gave --db): {settings.db}")
    print(f"  sqlite3 '{settings.db}' \"select id, status, input_tokens, output_tokens from runs\"")
    print(f"  concertmaster --db '{settings.db}' show {d.get('run_id')}")
    print(f"  concertmaster --db '{settings.db}' audit verify")
    print("  concertmaster demo --tour   (a pattern run, a guardrail stop, a policy denial, an approval)")
    return 0 if r.get("status") == d.get("status") == "succeeded" else 1


def _print_run(agent: str, run: dict[str, Any]) -> None:
    usage = run.get("usage", {})
    print(
        f"\n== {agent}: run {run.get('run_id')} {run.get('status')} "
        f"({usage.get('input_tokens')} in / {usage.get('output_tokens')} out tokens, "
        f"{usage.get('latency_ms')} ms, model: scripted)"
    )
    print(run.get("output") or run.get("error"))


# --- the tour ------------------------------------------------------------------------------------------


def _call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": f"notes__{tool}", "arguments": arguments}]}


def tour_config(notes: Path) -> TeamConfig:
    """The demo team plus two scripted agents that use the notes server: `dba` and `clerk`."""
    data = tomllib.loads(DEMO_TEAM.read_text(encoding="utf-8"))
    data["mcp_servers"] = {
        # -P: never import a `server` package from the current folder instead of ours
        "notes": {"command": sys.executable, "args": ["-P", "-m", "server.demo_notes", str(notes)]}
    }
    data["agents"]["dba"] = {
        "description": "Keeps the notes index tidy (scripted demo agent).",
        "instructions": "You maintain the notes index.",
        "model": "scripted",
        "tools": ["notes.*"],
        "scripted": {
            "replies": [
                _call("run_sql", query="DROP TABLE notes_index"),
                "The policy refused to drop the table, so nothing was changed. (scripted demo answer)",
            ]
        },
    }
    data["agents"]["clerk"] = {
        "description": "Tidies the notes folder (scripted demo agent).",
        "instructions": "You tidy the notes folder.",
        "model": "scripted",
        "tools": ["notes.*"],
        "scripted": {
            "replies": [
                _call("read_note", name="old.txt"),
                _call("delete_note", name="old.txt"),
                "Deleted old.txt after your approval. (scripted demo answer)",
            ]
        },
    }
    return TeamConfig.model_validate(data).model_copy(update={"source": "demo tour team"})


class Tour:
    """Prints each part of the tour and the SQL that finds it."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.ok = True

    def part(self, number: str, title: str, run: dict[str, Any], expect: str) -> None:
        print(f"\n== {number} {title}")
        print(f"   run {run.get('run_id')}: {run.get('status')}", end="")
        print(f" (stop reason: {run['stop_reason']})" if run.get("stop_reason") else "")
        text = (run.get("output") or run.get("error") or "").strip().splitlines()
        if text:
            print(f"   output: {text[0][:110]}")
        if run.get("status") != expect:
            self.ok = False
            print(f"   UNEXPECTED: the tour expected status {expect}")

    def sql(self, query: str, *params: str) -> None:
        shown = query
        for value in params:
            shown = shown.replace("?", f"'{value}'", 1)
        print(f"   find it:  sqlite3 '{self.db}' \"{shown}\"")
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            for row in conn.execute(query, params):
                print("     ", " | ".join("NULL" if v is None else str(v) for v in row))
        finally:
            conn.close()


async def run_tour(settings: Settings) -> int:
    print(BANNER)
    notes = settings.db.parent / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "old.txt").write_text("an old note nobody needs\n")
    tour = Tour(settings.db)
    server = build_server(settings, config=tour_config(notes))
    async with Client(server) as client:

        async def call(tool: str, **arguments: Any) -> dict[str, Any]:
            result = await client.call_tool(tool, arguments)
            if result.is_error:
                raise RuntimeError(f"{tool} failed: {result.content}")
            return result.structured_content or {}

        run = await call(
            "run_sequential",
            agents=["researcher", "writer", "reviewer"],
            task="Explain SQLite's WAL mode to a developer.",
        )
        tour.part("1.", "A pattern run: run_sequential researcher -> writer -> reviewer", run, "succeeded")
        tour.sql(
            "select agent, status, input_tokens, output_tokens, latency_ms from steps "
            "where run_id = ? order by started_at",
            run["run_id"],
        )

        run = await call(
            "start_group_chat",
            agents=["researcher", "reviewer"],
            topic="Should our app turn on WAL mode?",
            max_turns=3,
        )
        tour.part("2.", "A guardrail stop: a group chat that reaches max_turns = 3", run, "stopped")
        tour.sql("select id, pattern, status, stop_reason from runs where status = 'stopped'")

        run = await call("delegate_task", agent="dba", task="Clean up the notes index.")
        tour.part(
            "3.", "A policy denial: the dba agent tries DROP TABLE; the policy refuses it", run, "succeeded"
        )
        tour.sql(
            "select seq, json_extract(payload, '$.tool'), json_extract(payload, '$.rule'), "
            "json_extract(payload, '$.reason') from events "
            "where kind = 'policy_decided' and json_extract(payload, '$.decision') = 'deny'"
        )

        run = await call("delegate_task", agent="clerk", task="Delete old.txt if nobody needs it.")
        tour.part(
            "4.",
            "An approval: the clerk wants to delete a note and waits for a human",
            run,
            "awaiting_approval",
        )
        (pending,) = (await call("list_pending_approvals", run_id=run["run_id"]))["approvals"]
        print(f"   waiting: {pending['tool']} {pending['arguments']} (rule {pending['rule']})")
        print("   the assistant asks you, and passes your answer on with approve_action: approve")
        await call(
            "approve_action", action_id=pending["action_id"], decision="approve", reason="ok (demo tour)"
        )
        run = await call("get_run", run_id=run["run_id"], wait_seconds=30)
        tour.part("  ", "... approved: the run resumes and the note is deleted", run, "succeeded")
        tour.sql("select action_id, tool, rule, status, channel, decided_by from approvals")

    print(f"\nnotes folder: {notes} (old.txt {'still there' if (notes / 'old.txt').exists() else 'deleted'})")
    print(f"audit database (temporary unless you gave --db): {settings.db}")
    print(f"  concertmaster --db '{settings.db}' runs")
    print(f"  concertmaster --db '{settings.db}' audit verify")
    return 0 if tour.ok else 1
