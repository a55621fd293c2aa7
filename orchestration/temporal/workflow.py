"""A run as a Temporal workflow: the pattern's own body (`RunSpec.build()`), in a `RunContext` whose engine
performs every effect through Temporal (see `effects`).

The workflow is the run: its id is the run id, its input the run's description, the team config it was started
with, and the audit owner's task queue. Temporal records each activity's result in the workflow's history; a
worker that dies mid-run is replaced by another that replays the history (no model call or tool call is made
again) and goes on. The pattern modules (and `RunSpec`) are loaded inside the SDK's sandbox, which refuses a
clock, randomness or I/O in them; the engine's own modules are passed through.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import anyio

    from orchestration.agent_tools import tools_for
    from orchestration.audit.schema import now
    from orchestration.config import TeamConfig
    from orchestration.context import Outcome, RunContext, RunEngine
    from orchestration.errors import ConcertmasterError, GuardrailTripped
    from orchestration.governance import PolicyBook
    from orchestration.guard import Budget
    from orchestration.ids import ID_SOURCE
    from orchestration.outcomes import AgentTool, StepFailed
    from orchestration.step import run_step
    from orchestration.temporal.effects import (
        ActivityProviders,
        ActivityToolbox,
        WorkflowAudit,
        WorkflowPending,
    )

# sandboxed: the run description and the pattern modules it builds (loaded with the workflow, not mid-run)
from orchestration.patterns import (  # noqa: F401
    concurrent,
    delegate,
    group_chat,
    handoff,
    magentic,
    plan,
    registry,
    sequential,
)
from orchestration.spec import RunSpec

WORKFLOW_NAME = "concertmaster.run"


@workflow.defn(name=WORKFLOW_NAME)
class RunWorkflow:
    """One run. Signal `answer` delivers a human's (or the client's) answer to one of its questions."""

    def __init__(self) -> None:
        self._pending: WorkflowPending | None = None
        self._early: list[dict[str, Any]] = []

    @workflow.signal(name="answer")
    async def answer(self, data: dict[str, Any]) -> None:
        """`{request_id, response, channel, decided_by}`: applied once, repeats ignored."""
        if self._pending is None:
            self._early.append(data)
            return
        await self._deliver(data)

    async def _deliver(self, data: dict[str, Any]) -> None:
        assert self._pending is not None
        request_id = data.get("request_id")
        if not isinstance(request_id, str):
            return  # not an answer the server sends: ignored rather than failing the run
        await self._pending.answer(
            request_id, data.get("response"), str(data.get("channel") or "unknown"), data.get("decided_by")
        )

    @workflow.run
    async def run(self, params: dict[str, Any]) -> dict[str, Any]:
        run_id = str(params["run_id"])
        rng = workflow.random()
        ID_SOURCE.set(lambda: f"{rng.getrandbits(48):012x}")  # the same ids when the history is replayed
        config = TeamConfig.model_validate(params["config"])
        audit = WorkflowAudit(run_id, str(params["audit_queue"]))
        self._pending = WorkflowPending(audit)
        for early in self._early:
            await self._deliver(early)
        spec = RunSpec.load(params["spec"])
        assert spec.limits is not None
        policies = PolicyBook(config)

        async def agent_tools(ctx: RunContext, agent: str) -> list[AgentTool]:
            return await tools_for(ctx, agent, policies.gate(agent))

        engine = RunEngine(
            audit=audit,  # type: ignore[arg-type]
            providers=ActivityProviders(),
            pending=self._pending,
            toolbox=ActivityToolbox(audit, config.engine.heartbeat_s),  # type: ignore[arg-type]
            gate=policies.gate,
            run_step=run_step,
            build_team=RunSpec.build,
            agent_tools=agent_tools,
        )
        budget = Budget(spec.limits, on_budget=str(params.get("on_budget") or "stop"))
        ctx = RunContext(run_id=run_id, config=config, budget=budget, engine=engine, control=spec.control)
        try:
            outcome = await run_body(ctx, spec)
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await finish(
                    ctx, Outcome(ctx.partial, "failed", "cancelled", "cancelled by the user"), "cancelled"
                )
                await audit.flush()
            raise
        await finish(ctx, outcome)
        await audit.flush()
        return {"status": outcome.status, "reason": outcome.reason, "audit_batches": audit.batches}


async def run_body(ctx: RunContext, spec: RunSpec) -> Outcome:
    """Run the pattern to its outcome, as the embedded engine does: a limit stops it, a failure fails it, the
    run timeout is a workflow timer."""
    try:
        body = spec.build()
        with anyio.fail_after(max(ctx.budget.remaining_seconds(), 0)):
            return await body(ctx)
    except GuardrailTripped as exc:
        return Outcome(ctx.partial, "stopped", exc.limit, exc.message)
    except TimeoutError:
        limit = ctx.budget.limits.run_timeout_s
        return Outcome(
            ctx.partial, "stopped", "run_timeout_s", f"the run took longer than run_timeout_s={limit:g} s"
        )
    except StepFailed as exc:
        return Outcome(ctx.partial, "failed", "step_failed", exc.message)
    except ConcertmasterError as exc:
        return Outcome(ctx.partial, "failed", exc.code, exc.message)
    except (asyncio.CancelledError, workflow.NondeterminismError):  # Temporal's to handle
        raise
    except Exception as exc:  # a bug must fail the run, not loop the workflow task forever
        workflow.logger.exception("run %s crashed", ctx.run_id)
        return Outcome(
            ctx.partial, "failed", "internal_error", f"internal error ({type(exc).__name__}): {exc}"
        )


async def finish(ctx: RunContext, outcome: Outcome, status: str | None = None) -> None:
    """Record how the run ended (the same row and event as the embedded engine)."""
    status = status or outcome.status
    reason = "cancelled" if status == "cancelled" else outcome.reason
    payload = {
        "status": status,
        "reason": reason,
        "output": outcome.output,
        "error": outcome.error,
        **({"data": outcome.data} if outcome.data else {}),
    }
    await ctx.record(
        "run_finished",
        payload,
        statements=[
            (
                "update runs set status = ?, stop_reason = ?, output = ?, error = ?, ended_at = ?,"
                " lease_expires = null where id = ?",
                (status, reason, outcome.output, outcome.error, now(), ctx.run_id),
            ),
            (
                "update steps set status = ?, ended_at = ? where run_id = ? and status = 'running'",
                ("cancelled" if status == "cancelled" else "interrupted", now(), ctx.run_id),
            ),
        ],
    )
