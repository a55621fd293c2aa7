"""`concertmaster demo`: the real server, a real MCP client in-process, and the SCRIPTED model. No network."""

from __future__ import annotations

from mcp import Client

from orchestration.config import load_config
from server.app import build_server
from server.cli import DEMO_TEAM
from server.settings import Settings

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
    print(f"\naudit database: {settings.db}")
    print(f"  sqlite3 '{settings.db}' \"select id, status, input_tokens, output_tokens from runs\"")
    print(f"  concertmaster --db '{settings.db}' show {d.get('run_id')}")
    print(f"  concertmaster --db '{settings.db}' audit verify")
    return 0 if r.get("status") == d.get("status") == "succeeded" else 1


def _print_run(agent: str, run: dict) -> None:
    usage = run.get("usage", {})
    print(
        f"\n== {agent}: run {run.get('run_id')} {run.get('status')} "
        f"({usage.get('input_tokens')} in / {usage.get('output_tokens')} out tokens, "
        f"{usage.get('latency_ms')} ms, model: scripted)"
    )
    print(run.get("output") or run.get("error"))
