"""A real audit with one finished run of every pattern (and one with gated tool calls), for the observability tests.

Every run goes through the real runtime with scripted models; one agent answers with text that is hostile to
Mermaid and HTML (`end`, `-->`, `;`, `#`, quotes, newlines, `<script>`), so diagrams must escape it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import Reply, ScriptedModel
from orchestration.patterns.concurrent import ConcurrentOptions, concurrent
from orchestration.patterns.delegate import delegate
from orchestration.patterns.group_chat import GroupChatOptions, group_chat
from orchestration.patterns.handoff import handoff
from orchestration.patterns.magentic import MagenticOptions, magentic
from orchestration.patterns.plan import PlanOptions, plan_and_execute
from orchestration.patterns.sequential import sequential
from orchestration.runtime import Runtime
from server.app import build_server
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = 'end\nA-->>B: "quoted" ; #35; %% comment <script>alert(1)</script> {x} [y] (z) |pipe| end'

TEAM = TeamConfig.model_validate(
    {
        "agents": {
            name: {"description": f"{name} agent", "instructions": f"You are {name}.", "model": "scripted"}
            for name in ("researcher", "writer", "boss", "planner", "a", "b")
        },
        "teams": {
            "duo": {
                "description": "researches then writes",
                "pattern": "sequential",
                "agents": ["researcher", "writer"],
            }
        },
    }
)

LEDGER = json.dumps({"facts": ["f"], "guesses": [], "plan": ["research", "write"]})


def _progress(speaker: str, satisfied: bool) -> str:
    return json.dumps(
        {
            "is_request_satisfied": satisfied,
            "is_in_loop": False,
            "is_progress_being_made": True,
            "next_speaker": speaker,
            "instruction": f"{speaker}, do your part",
            "reason": "because",
        }
    )


def _model(name: str) -> ScriptedModel:
    """A fresh scripted model for `name` in one run."""
    if name == "writer":
        return ScriptedModel(respond=lambda r: HOSTILE)
    if name == "boss":
        rounds = iter([_progress("researcher", False), _progress("writer", False), _progress("writer", True)])

        def manage(request: ModelRequest) -> str:
            prompt = request.messages[-1].text
            if "TASK LEDGER" in prompt:
                return LEDGER
            if "PROGRESS LEDGER" in prompt:
                return next(rounds, _progress("writer", True))
            return "FINAL: shipped"

        return ScriptedModel(respond=manage)
    if name == "planner":
        plan = {
            "subtasks": [
                {"id": "find", "agent": "researcher", "task": "find facts", "depends_on": []},
                {"id": "draft", "agent": "writer", "task": "draft it", "depends_on": ["find"]},
                {"id": "check", "agent": "researcher", "task": "check it", "depends_on": ["find"]},
            ]
        }
        return ScriptedModel([json.dumps(plan)])
    if name == "researcher":
        return ScriptedModel(
            [Reply(tool_calls=(("transfer_to_writer", {"message": "over to you"}),))],
            respond=lambda r: "42 facts",
        )
    return ScriptedModel(respond=lambda r: f"{r.agent} says 42")


async def populate(db: Path) -> dict[str, str]:
    """Run one of each pattern on `db`; returns `{scenario: run_id}` (all runs finished)."""
    runs: dict[str, str] = {}
    async with Runtime(TEAM, AuditLog(db), providers=lambda n, a, c: _model(n)) as rt:
        bodies: dict[str, tuple[str, Any]] = {
            "delegate": ("delegate", delegate("a", "say 42")),
            "sequential": ("sequential", sequential(["a", "writer"], "write it up")),
            "concurrent": ("concurrent", concurrent(["a", "b"], "what is 6*7?", ConcurrentOptions())),
            "handoff": (
                "handoff",
                handoff("researcher", "research then write", members=["researcher", "writer"]),
            ),
            "group_chat": (
                "group_chat",
                group_chat(["a", "b"], "pick a name", GroupChatOptions(max_turns=3)),
            ),
            "magentic": (
                "magentic",
                magentic("ship it", ["researcher", "writer"], MagenticOptions(manager="boss")),
            ),
            "plan": (
                "plan",
                plan_and_execute("launch", ["researcher", "writer"], PlanOptions(planner="planner")),
            ),
            "team": ("sequential", sequential(["duo", "a"], "a team inside a chain")),
        }
        for scenario, (pattern, body) in bodies.items():
            run_id = await rt.start_run(pattern, f"task of {scenario}", body)
            result = await rt.wait(run_id, 30)
            assert result["status"] not in ("running", "failed"), (scenario, result)
            runs[scenario] = run_id
    return runs


def _call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": f"files__{tool}", "arguments": arguments}]}


def tools_team(served: Path) -> TeamConfig:
    """A clerk that reads (allowed), deletes twice (a human approves one and denies the other) and calls a tool
    that does not exist (refused)."""
    replies = [
        _call("read_file", name="a.txt"),
        _call("delete_file", name="a.txt"),
        _call("delete_file", name="b.txt"),
        _call("nope"),
        "done",
    ]
    return TeamConfig.model_validate(
        {
            "policy": "default",
            "mcp_servers": {
                "files": {
                    "command": sys.executable,
                    "args": ["-m", "tests.fixtures.files_server", str(served)],
                    "cwd": str(ROOT),
                    "timeout_s": 20,
                }
            },
            "agents": {
                "clerk": {
                    "description": "files clerk",
                    "instructions": "Tidy files.",
                    "model": "scripted",
                    "tools": ["files.*"],
                    "scripted": {"replies": replies},
                }
            },
        }
    )


async def populate_tools(db: Path, tmp: Path) -> str:
    """A run with gated tool calls through a real downstream MCP server; returns its run id."""
    served = tmp / "served"
    served.mkdir(exist_ok=True)
    (served / "a.txt").write_text("hello")
    (served / "b.txt").write_text("keep me")

    async def human(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        if "a.txt" in params.message:
            return ElicitResult(action="accept", content={"decision": "approve", "reason": "fine"})
        return ElicitResult(action="accept", content={"decision": "deny", "reason": "keep b"})

    server = build_server(Settings(db=db, default_wait_seconds=30), config=tools_team(served))
    async with Client(server, mode="legacy", elicitation_callback=human) as client:
        result = await client.call_tool("delegate_task", {"agent": "clerk", "task": "tidy up"})
    run = result.structured_content
    assert run is not None and run["status"] == "succeeded", result
    return str(run["run_id"])
