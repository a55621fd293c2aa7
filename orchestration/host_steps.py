"""Host steps from the outside: answering one (`submit_step`), and waiting until a run's branches have parked.

A host step is a pending request of kind `host_step` (see `orchestration.models.host`); its id is the
`step_id` the host answers. An answer is checked before it resolves anything: a wrong run or step, a duplicate,
a late (cancelled, finished) or oversized answer, or a call to a tool the step does not offer is refused with a
message saying what to do, and the step stays open, so the run is never corrupted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from orchestration.audit.log import Write
from orchestration.errors import InvalidInputError, RunNotFoundError
from orchestration.models.host import HOST_STEP

if TYPE_CHECKING:
    from orchestration.audit.read import AuditReader
    from orchestration.pending import PendingRequest, PendingRequests
    from orchestration.runtime import Runtime

MAX_OUTPUT_CHARS = 100_000
"""Longest text answer of one host step."""
MAX_CALLS = 32
"""Most tool calls in one host answer (the run's `max_tool_calls` still applies inside the step)."""
MAX_ARGUMENTS_CHARS = 100_000
"""Largest JSON of one answer's tool-call arguments, all together."""
FINAL = ("succeeded", "failed", "stopped", "cancelled", "interrupted")
SETTLING = frozenset({"step_finished", "step_failed", "step_cancelled", "step_stopped", "run_finished"})
"""Events after which a run may have become settled (besides pending requests opening or closing)."""


@dataclass(frozen=True)
class HostCall:
    """A tool call the host wants the agent to make."""

    name: str
    arguments: dict[str, Any]


def open_steps(pending: PendingRequests, run_id: str) -> list[PendingRequest]:
    """The run's host steps waiting for an answer, oldest first."""
    return pending.open_for(run_id, HOST_STEP)


async def submit_step(
    pending: PendingRequests,
    reader: AuditReader,
    run_id: str,
    step_id: str,
    output: str,
    tool_calls: Sequence[HostCall] = (),
    *,
    client: str,
) -> PendingRequest:
    """Answer host step `step_id` of run `run_id` as the agent: its reply `output` and the tool calls it makes.

    Raises `InvalidInputError` (the step stays open) or `RunNotFoundError`; resolves the step exactly once.
    """
    request = pending.get(step_id)
    if request is None or request.kind != HOST_STEP or request.run_id != run_id:
        raise InvalidInputError(_not_open(pending, reader, run_id, step_id))
    if len(output) > MAX_OUTPUT_CHARS:
        raise InvalidInputError(
            f"output is {len(output):,} characters, over the limit of {MAX_OUTPUT_CHARS:,}; shorten the answer "
            "(the step stays open)"
        )
    if len(tool_calls) > MAX_CALLS:
        raise InvalidInputError(
            f"{len(tool_calls)} tool calls in one answer, over the limit of {MAX_CALLS}; make fewer per step"
        )
    offered = {t["name"] for t in request.payload.get("tools", [])}
    for call in tool_calls:
        if call.name not in offered:
            raise InvalidInputError(
                f"tool {call.name!r} is not offered to agent {request.payload.get('agent')!r} in this step; "
                f"offered: {', '.join(sorted(offered)) or 'none (answer with output only)'}"
            )
    size = len(json.dumps([c.arguments for c in tool_calls], default=str))
    if size > MAX_ARGUMENTS_CHARS:
        raise InvalidInputError(
            f"the tool calls' arguments are {size:,} characters of JSON, over the limit of "
            f"{MAX_ARGUMENTS_CHARS:,}; pass less per call"
        )
    if not output.strip() and not tool_calls:
        raise InvalidInputError("output is blank and there are no tool_calls; answer as the agent would")
    answer = {
        "output": output,
        "tool_calls": [
            {"id": f"{step_id}.{i}", "name": c.name, "arguments": c.arguments}
            for i, c in enumerate(tool_calls, 1)
        ],
        "client": client,
    }
    try:
        return await pending.resolve(step_id, answer, channel="submit_step", decided_by=client)
    except InvalidInputError:  # answered by a concurrent call a moment ago
        raise InvalidInputError(_not_open(pending, reader, run_id, step_id)) from None


def _not_open(pending: PendingRequests, reader: AuditReader, run_id: str, step_id: str) -> str:
    """Why `step_id` cannot be answered now, and what to do instead."""
    run = reader.run(run_id)
    if run is None:
        raise RunNotFoundError(run_id)
    waiting = [r.id for r in open_steps(pending, run_id)]
    still = f"its open steps: {', '.join(waiting)}" if waiting else "it has no open host steps"
    rows = reader.query("select run_id, kind, status from pending_requests where id = ?", (step_id,))
    if not rows or rows[0]["kind"] != HOST_STEP:
        return f"run {run_id!r} has no host step {step_id!r}; {still} (get_run lists them)"
    row = rows[0]
    if row["run_id"] != run_id:
        return f"host step {step_id!r} belongs to run {row['run_id']!r}, not {run_id!r}; pass the run_id shown with it"
    if row["status"] == "resolved":
        return (
            f"host step {step_id!r} was already answered (duplicate refused); {still}. "
            f"Call get_run(run_id='{run_id}') to see what the run needs next"
        )
    if run["status"] in FINAL:
        return (
            f"run {run_id!r} is {run['status']}: host step {step_id!r} is no longer awaited (answer refused)"
        )
    if row["status"] == "pending":
        return f"host step {step_id!r} is waited on by another concertmaster process; answer it there"
    return f"host step {step_id!r} is {row['status']} (the step timed out or was cut short); {still}"


def settled(rt: Runtime, run_id: str) -> bool:
    """True when the run has host steps open and every running agent step waits on a pending request: the
    branches that can run have all parked, so the host gets them together."""
    open_requests = rt.pending.open_for(run_id)
    if not any(r.kind == HOST_STEP for r in open_requests):
        return False
    running = rt.reader.query(
        "select count(*) as n from steps where run_id = ? and status = 'running'"
        " and coalesce(provider, '') != 'team'",
        (run_id,),
    )[0]["n"]
    return int(running) <= len(open_requests)  # each waiting step waits on exactly one request


async def wait_settled(rt: Runtime, run_id: str, seconds: float) -> None:
    """Wait (event-driven, at most `seconds`) until the run is `settled`, has ended, or parks on something else.

    Settling is confirmed after the run's ready tasks had their turn and their audit writes landed (a no-op
    write flushes the writer), so a branch about to start its step is not missed.
    """
    events = 0
    poke = anyio.Event()

    def listener(_run_id: str, kind: str, _payload: dict[str, Any]) -> None:
        nonlocal events
        events += 1
        if kind in SETTLING:
            poke.set()

    async def watch_pending() -> None:
        while True:
            await rt.pending.wait_changed()
            poke.set()

    async def watch_end() -> None:
        await rt.wait(run_id, seconds)
        poke.set()

    unsubscribe = rt.subscribe(run_id, listener)
    try:
        with anyio.move_on_after(max(seconds, 0)):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_pending)
                tg.start_soon(watch_end)
                while rt.is_active(run_id):
                    waiting = rt.pending.open_for(run_id)
                    if waiting and not any(r.kind == HOST_STEP for r in waiting):
                        break  # parked on something else (a human, the client's model): the caller reports it
                    if settled(rt, run_id):
                        before = events
                        await (
                            anyio.lowlevel.checkpoint()
                        )  # branches ready to run reach their first audit write
                        await rt.audit.write(Write([], []))  # ... and it lands before this one
                        if events == before and settled(rt, run_id):
                            break
                        continue
                    await poke.wait()
                    poke = anyio.Event()
                tg.cancel_scope.cancel()
    finally:
        unsubscribe()
