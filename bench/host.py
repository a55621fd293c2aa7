"""What the `host` model adds: a host step's round trip through MCP, and parallel branches handed over at once.

    python bench/host.py [--quick]

In-process MCP client (the SDK's memory transport), so what is measured is concertmaster plus the SDK, not a
network. The reference is the same run on the scripted model (L = 0) through the same client: a host step costs
one more tool call (`submit_step`) and one more pending request (two audited writes). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mcp import Client

from orchestration.config import TeamConfig
from server.app import build_server
from server.settings import Settings


def team(n: int) -> TeamConfig:
    agents: dict[str, Any] = {}
    for i in range(n):
        agents[f"h{i}"] = {"description": "d", "instructions": "i", "model": "host"}
        agents[f"s{i}"] = {"description": "d", "instructions": "i", "model": "scripted"}
    return TeamConfig.model_validate({"agents": agents, "limits": {"max_steps": 10_000}})


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content  # type: ignore[return-value]


async def main(quick: bool) -> None:
    runs, fan = (20, [10, 50]) if quick else (100, [10, 50, 200])
    with tempfile.TemporaryDirectory() as tmp:
        config = team(max(fan))
        app = build_server(Settings(db=Path(tmp) / "audit.db", default_wait_seconds=50), config=config)
        async with Client(app) as client:
            warm = await call(client, "delegate_task", agent="h0", task="warm-up")  # imports, first queries
            await call(
                client,
                "submit_step",
                run_id=warm["run_id"],
                step_id=warm["host_steps"][0]["step_id"],
                output="ok",
            )
            await call(client, "delegate_task", agent="s0", task="warm-up")
            t0 = time.perf_counter()
            for _ in range(runs):
                await call(client, "delegate_task", agent="s0", task="t")
            scripted = (time.perf_counter() - t0) / runs * 1000
            t0 = time.perf_counter()
            for _ in range(runs):
                run = await call(client, "delegate_task", agent="h0", task="t")
                (step,) = run["host_steps"]
                await call(client, "submit_step", run_id=run["run_id"], step_id=step["step_id"], output="ok")
            host = (time.perf_counter() - t0) / runs * 1000
            print("| benchmark | ours | reference | unit | ratio | note |\n|---|---|---|---|---|---|")
            print(
                f"| delegate on host (start + submit_step) | {host:.2f} | {scripted:.2f} | ms/run | {host / scripted:.2f} | reference: scripted, L=0 |"
            )
            for n in fan:
                t0 = time.perf_counter()
                await call(client, "run_concurrent", agents=[f"s{i}" for i in range(n)], task="t")
                scripted = (time.perf_counter() - t0) * 1000
                t0 = time.perf_counter()
                run = await call(client, "run_concurrent", agents=[f"h{i}" for i in range(n)], task="t")
                handed = len(run["host_steps"])
                handed_ms = (time.perf_counter() - t0) * 1000

                async def answer(step: dict[str, Any], run_id: str = run["run_id"]) -> None:
                    await call(client, "submit_step", run_id=run_id, step_id=step["step_id"], output="ok")

                async with anyio.create_task_group() as tg:
                    for step in run["host_steps"]:
                        tg.start_soon(answer, step)
                final = await call(client, "get_run", run_id=run["run_id"], wait_seconds=50)
                host = (time.perf_counter() - t0) * 1000
                print(
                    f"| fan-out {n} on host, all answered in parallel | {host:.0f} | {scripted:.0f} | ms | "
                    f"{host / scripted:.2f} | {handed}/{n} steps in the first hand-over ({handed_ms:.0f} ms); "
                    f"{final['status']} |"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    anyio.run(main, parser.parse_args().quick)
