"""Many deciders at once, across processes: exactly one decision wins, losers are told, a deny is final."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.server.test_governance import DELETE, ROOT, World, delegate

pytestmark = pytest.mark.anyio

CLI_DECIDERS = 8

# Each decider imports everything first, then waits for the gate file so that all decide at the same moment.
GATED_CLI = """
import os, sys, time
from server.cli import main
gate = sys.argv[1]
print("ready", flush=True)
while not os.path.exists(gate):
    time.sleep(0.005)
sys.exit(main(sys.argv[2:]))
"""


def spawn(gate: Path, verb: str, action_id: str, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", GATED_CLI, str(gate), verb, action_id, "--db", str(db)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _one_round(tmp: Path, round_: int) -> None:
    world = World(tmp)
    gate = tmp / "gate"
    async with Client(world.server(DELETE)) as client:
        run = await delegate(client)
        assert run["status"] == "awaiting_approval"
        action_id = run["pending"][0]["request_id"]
        verbs = ["deny" if (i + round_) % 2 else "approve" for i in range(CLI_DECIDERS)]
        procs = [spawn(gate, verb, action_id, world.db) for verb in verbs]
        tool_decision = "deny" if round_ % 2 else "approve"
        for p in procs:  # every decider has imported everything and waits at the gate
            assert p.stdout is not None
            assert (await anyio.to_thread.run_sync(p.stdout.readline)).strip() == "ready"
        gate.write_text("go")
        by_tool = await client.call_tool(
            "approve_action", {"action_id": action_id, "decision": tool_decision}
        )
        outs = [await anyio.to_thread.run_sync(p.communicate) for p in procs]
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": 10})
        ).structured_content

    winners = [verb for verb, p in zip(verbs, procs, strict=True) if p.returncode == 0]
    if not by_tool.is_error:
        winners.append(tool_decision)
    assert len(winners) == 1, (winners, outs, by_tool.content)
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:  # a loser is told, in one line, and nothing of its decision is applied
            assert p.returncode == 2 and "already decided" in err and err.count("\n") == 1, err
    if by_tool.is_error:
        assert "already decided" in by_tool.content[0].text
    decided = world.rows("select payload from events where kind = 'approval_decided'")
    assert len(decided) == 1
    assert len(world.rows("select * from events where kind = 'approval_rejected'")) == CLI_DECIDERS
    (row,) = world.rows("select status from approvals")
    assert final["status"] == "succeeded"
    if winners[0] == "deny":  # a deny that won is never overwritten: the tool did not run
        assert row["status"] == "denied" and world.calls() == [] and (world.dir / "a.txt").exists()
    else:
        assert row["status"] == "approved" and world.calls() == ["delete_file a.txt"]


@pytest.mark.parametrize("round_", range(4))
async def test_concurrent_deciders_across_processes_exactly_one_wins(tmp_path: Path, round_: int) -> None:
    (tmp_path / "round").mkdir()
    await _one_round(tmp_path / "round", round_)
