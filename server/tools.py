"""The MCP tools. Each validates its input, calls the core, and shapes the answer: no orchestration here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult, ToolAnnotations
from pydantic import Field

from orchestration.config import TeamConfig
from orchestration.errors import ModelUnavailableError
from orchestration.spec import RunSpec
from server.app import state, tool_errors
from server.bridge import sampler_for
from server.follow import describe_run, follow_run, resume_followed
from server.principals import current_principal, own_run
from server.schemas import AgentInfo, AgentList, RunList, RunResult, RunSummary
from server.starting import (
    MAX_TASK_CHARS,
    RUN_STARTER,
    WaitSeconds,
    check_members,
    check_task,
    followed_retry,
    start_and_follow,
)

AgentName = Annotated[str, Field(min_length=1, max_length=64, description="Agent name (list_agents).")]
Task = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TASK_CHARS, description="What to do."),
]
Context_ = Annotated[
    str | None,
    Field(max_length=MAX_TASK_CHARS, description="Background: documents, constraints."),
]
RunId = Annotated[str, Field(min_length=1, max_length=64, description="A run id.")]

READER = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def register(server: MCPServer[Any], team: TeamConfig) -> None:
    """Add concertmaster's tools to `server`."""

    @server.tool(title="List the agents", annotations=READER)
    @tool_errors
    async def list_agents(ctx: Context[Any, Any]) -> AgentList:
        """Use first, to see the team: each agent's name, what it is for, and the model it would run on now."""
        app = state(ctx)
        rt = app.runtime
        sampler = sampler_for(ctx, rt.pending, 1.0)
        agents = []
        for name, agent in rt.config.agents.items():
            try:
                runs_on = rt.provider_for(name, sampler).name
            except ModelUnavailableError as exc:
                runs_on = f"unavailable: {exc.message}"
            agents.append(
                AgentInfo(
                    name=name,
                    description=agent.description,
                    model=agent.model,
                    runs_on=runs_on,
                    group=agent.group,
                    tools=agent.tools,
                )
            )
        return AgentList(agents=agents, config=rt.config.source)

    @server.tool(title="Delegate a task to an agent", annotations=RUN_STARTER)
    @tool_errors
    async def delegate_task(
        ctx: Context[Any, Any],
        agent: AgentName,
        task: Task,
        context: Context_ = None,
        allow_handoffs: Annotated[
            bool,
            Field(description="Let it hand the task on, by its routes."),
        ] = False,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """Use for one task by one agent (the simplest way to get work done). Returns the run id, status, output
        and usage; if it is not done within wait_seconds, follow it with get_run."""
        if (followed := await followed_retry(ctx, wait_seconds)) is not None:
            return followed
        rt = state(ctx).runtime
        check_members(rt, [agent], "agent")
        check_task(task)
        if allow_handoffs:
            members = rt.config.member_names()
            spec = RunSpec(
                pattern="handoff",
                members=[agent, *(m for m in members if m != agent)],
                task=task,
                options={"context": context},
                control="decentralized",
            )
        else:
            spec = RunSpec(pattern="delegate", members=[agent], task=task, options={"context": context})
        return await start_and_follow(ctx, spec, wait_seconds=wait_seconds)

    @server.tool(title="Follow a run", annotations=READER)
    @tool_errors
    async def get_run(
        ctx: Context[Any, Any],
        run_id: RunId,
        wait_seconds: WaitSeconds = None,
        diagram: Annotated[
            bool, Field(description="Add the run as a Mermaid diagram (sequence; DAG for plans).")
        ] = False,
    ) -> RunResult | InputRequiredResult:
        """Use to follow a run that returned done=false: status, output, usage; waits up to wait_seconds for the
        end. On 2026-07-28 clients it also carries the run's requests for your model."""
        followed = await resume_followed(ctx)
        rt = state(ctx).runtime
        run = own_run(ctx, followed or run_id)
        wait = 0.0 if wait_seconds is None else wait_seconds
        if rt.is_active(run["id"]):
            result = await follow_run(ctx, run["id"], wait)
        else:
            result = describe_run(ctx, run)
        if diagram and isinstance(result, RunResult):
            from server.audit_tools import run_diagram

            result.diagram = run_diagram(rt, run["id"])
        return result

    @server.tool(title="List recent runs", annotations=READER)
    @tool_errors
    async def list_runs(
        ctx: Context[Any, Any],
        limit: Annotated[int, Field(ge=1, le=200, description="Newest first.")] = 20,
        status: Annotated[
            Literal[
                "running",
                "awaiting_input",
                "awaiting_approval",
                "awaiting_host",
                "succeeded",
                "failed",
                "stopped",
                "cancelled",
                "interrupted",
            ]
            | None,
            Field(description="Only runs with this status."),
        ] = None,
        pattern: Annotated[str | None, Field(max_length=32, description="Only runs of this pattern.")] = None,
    ) -> RunList:
        """Use to find earlier runs: recent runs with status, agents, tokens and cost."""
        caller = current_principal()
        rows = state(ctx).runtime.reader.runs(
            limit=limit, status=status, pattern=pattern, principal=None if caller.approver else caller.name
        )
        return RunList(
            runs=[
                RunSummary(
                    run_id=r["id"],
                    pattern=r["pattern"],
                    status=r["status"],
                    started_at=r["started_at"],
                    ended_at=r["ended_at"],
                    agents=r["agents"],
                    steps=r["steps"],
                    input_tokens=r["input_tokens"],
                    output_tokens=r["output_tokens"],
                    cost_usd=r["cost_usd"],
                    input=r["input"] or "",
                )
                for r in rows
            ]
        )

    @server.tool(
        title="Cancel a run",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    @tool_errors
    async def cancel_run(ctx: Context[Any, Any], run_id: RunId) -> RunResult:
        """Use to stop a run that is still going; its finished steps stay in the audit."""
        rt = state(ctx).runtime
        own_run(ctx, run_id)
        run = await rt.cancel(run_id)
        return describe_run(ctx, run)

    @server.tool(
        title="Resume an interrupted run",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
        ),
    )
    @tool_errors
    async def resume_run(
        ctx: Context[Any, Any], run_id: RunId, wait_seconds: WaitSeconds = None
    ) -> RunResult | InputRequiredResult:
        """Use for a run left `interrupted`: it continues where it stopped, recorded work is not redone (runs
        resume by themselves after a restart unless configured otherwise)."""
        rt = state(ctx).runtime
        own_run(ctx, run_id)
        run = await rt.resume_run(run_id)
        wait = state(ctx).settings.default_wait_seconds if wait_seconds is None else wait_seconds
        return await follow_run(ctx, run["id"], wait)

    _ = (list_agents, delegate_task, get_run, list_runs, cancel_run, resume_run)
