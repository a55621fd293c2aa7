"""`audit verify` recomputes runs, steps and pending requests from the chained events.

Untouched databases of every pattern verify; each edit of a summary row is reported with the row and column.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from orchestration.audit.log import AuditLog, event_hash
from orchestration.audit.read import verify_chain
from orchestration.audit.schema import GENESIS_HASH
from orchestration.context import Outcome, RunContext
from orchestration.errors import ProviderError
from orchestration.models.base import ModelRequest, ModelResponse, Usage
from orchestration.patterns.registry import build
from orchestration.runtime import Runtime
from server.cli import main as cli
from tests.conftest import team

pytestmark = pytest.mark.anyio

TEAM = team(a={"model": "scripted"}, b={"model": "scripted"}, planner={"model": "scripted"})


class Priced:
    """A paid model (as the Anthropic provider reports one): tokens and a cost per call."""

    name = "anthropic"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(f"answer to {request.agent}", "claude-test", "anthropic", Usage(100, 50), 0.0123)


class Failing:
    name = "anthropic"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise ProviderError("the API is down")


async def busy_database(db: Path) -> dict[str, str]:
    """Runs of every pattern, a failed one, a cancelled one and one interrupted by a restart."""
    ids = {}
    async with Runtime(TEAM, AuditLog(db)) as rt:
        for pattern, members, options in [
            ("delegate", ["a"], {}),
            ("sequential", ["a", "b"], {}),
            ("concurrent", ["a", "b"], {}),
            ("handoff", ["a", "b"], {}),
            ("group_chat", ["a", "b"], {}),
            ("magentic", ["a", "b"], {"manager": "planner"}),
            ("plan", ["a", "b"], {"planner": "planner"}),
        ]:
            ids[pattern] = await rt.start_run(pattern, "task", build(pattern, members, "task", options))
        for run_id in ids.values():
            await rt.wait(run_id, 60)

        hold = anyio.Event()

        async def forever(ctx: RunContext) -> Outcome:
            await hold.wait()
            return Outcome("never")

        ids["cancelled"] = await rt.start_run("custom", "t", forever)
        await rt.cancel(ids["cancelled"])
    async with Runtime(TEAM, AuditLog(db), providers=lambda name, agent, ctx: Priced()) as rt:  # type: ignore[arg-type,return-value]
        ids["paid"] = await rt.start_run("sequential", "t", build("sequential", ["a", "b"], "t", {}))
        await rt.wait(ids["paid"], 60)
    failing = Runtime(TEAM, AuditLog(db), providers=lambda name, agent, ctx: Failing())  # type: ignore[arg-type,return-value]
    async with failing as rt:
        ids["failed"] = await rt.start_run("delegate", "t", build("delegate", ["a"], "t", {}))
        await rt.wait(ids["failed"], 60)
    return ids


def edit(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()


async def test_untouched_runs_of_every_pattern_verify(db: Path) -> None:
    ids = await busy_database(db)
    report = verify_chain(db)
    assert report.ok, report.problems
    conn = sqlite3.connect(db)
    statuses = dict(conn.execute("select id, status from runs").fetchall())
    conn.close()
    assert statuses[ids["cancelled"]] == "cancelled" and statuses[ids["failed"]] == "failed"


@pytest.mark.parametrize(
    ("sql", "expect"),
    [
        ("update runs set cost_usd = 0 where id = ?", "cost_usd"),
        ("update runs set input_tokens = 1 where id = ?", "input_tokens"),
        ("update runs set status = 'failed' where id = ?", "status"),
        ("update runs set output = 'something else' where id = ?", "output"),
        ("update runs set ended_at = '2020-01-01T00:00:00.000Z' where id = ?", "ended_at"),
        ("update steps set output = 'forged' where run_id = ?", "output"),
        ("update steps set status = 'failed' where run_id = ?", "status"),
        ("update steps set output_tokens = 0 where run_id = ?", "output_tokens"),
        ("delete from steps where run_id = ?", "not in the table"),
        (
            "insert into runs (id, pattern, status, input, started_at) values (? || 'x', 'delegate',"
            " 'succeeded', 'i', 'now')",
            "no run_started",
        ),
    ],
)
async def test_each_edited_summary_row_is_reported(db: Path, sql: str, expect: str) -> None:
    ids = await busy_database(db)
    run_id = ids["paid"]
    edit(db, sql, run_id)
    report = verify_chain(db)
    assert not report.ok
    assert any(expect in p and (run_id in p or "steps" in p) for p in report.problems), report.problems


async def test_audit_verify_reports_an_edited_cost_on_the_command_line(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await busy_database(db)
    assert cli(["audit", "verify", "--db", str(db)]) == 0
    edit(db, "update runs set cost_usd = 0 where id = ?", ids["paid"])
    assert cli(["audit", "verify", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert f"runs {ids['paid']}: cost_usd is 0.0 but the events say 0.0246" in err


async def test_a_kept_head_catches_a_rewritten_file(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await busy_database(db)
    assert cli(["audit", "head", "--db", str(db)]) == 0
    kept = capsys.readouterr().out.strip()
    assert cli(["audit", "verify", "--db", str(db), "--head", kept]) == 0
    # a rewrite of the whole log, every hash recomputed: the chain check alone can't tell ...
    conn = sqlite3.connect(db)
    with conn:
        rows = conn.execute(
            "select seq, run_id, step_id, kind, payload, created_at from events order by seq"
        ).fetchall()
        prev = GENESIS_HASH
        for i, (n, run_id, step_id, kind, payload, created) in enumerate(rows):
            if i == 0:
                payload = payload.replace("task", "TASK")
            digest = event_hash(prev, n, run_id, step_id, kind, payload, created)
            conn.execute(
                "update events set payload = ?, prev_hash = ?, hash = ? where seq = ?",
                (payload, prev, digest, n),
            )
            prev = digest
        conn.execute("update audit_head set hash = ?", (prev,))
    conn.close()
    chain_only = verify_chain(db)
    assert not any("event" in p and "hash" in p for p in chain_only.problems)
    # ... the head kept elsewhere can
    assert cli(["audit", "verify", "--db", str(db), "--head", kept]) == 1
    assert "kept head" in capsys.readouterr().err
