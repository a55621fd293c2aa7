"""concertmaster benchmarks: orchestration overhead as ratios against an ideal, all in one run.

    python bench/run.py            # full run (a few minutes)
    python bench/run.py --quick    # smaller sizes (under a minute)

Prints a markdown table and writes bench/results.json. Nothing here is asserted: the numbers are for reading.
The model is the scripted one with a fixed latency, so what is measured is what concertmaster adds around it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestration.approvals import request_approval
from orchestration.audit.log import AuditLog, Event, Write, canonical, event_hash
from orchestration.audit.schema import now
from orchestration.config import TeamConfig
from orchestration.context import Outcome, RunContext
from orchestration.models.base import Message, ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.concurrent import ConcurrentOptions, concurrent
from orchestration.patterns.delegate import delegate
from orchestration.patterns.group_chat import GroupChatOptions, group_chat
from orchestration.patterns.plan import PlanOptions, plan_and_execute
from orchestration.patterns.sequential import sequential
from orchestration.runtime import Runtime
from orchestration.spec import RunSpec
from policies.engine import Action, evaluate
from policies.limits import Limits
from policies.load import load_policy

ROWS: list[dict[str, Any]] = []
REPEAT = 3
"""Each timed workload runs this many times; the median is reported (`--repeat`)."""


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def bare_calls(model: ScriptedModel, n: int, *, parallel: bool = False) -> float:
    """The floor: `n` calls of the same model with nothing around them, one after another or all at once."""
    request = ModelRequest("s", (Message("user", "task"),))
    started = time.perf_counter()
    if parallel:
        await asyncio.gather(*(model.complete(request) for _ in range(n)))
    else:
        for _ in range(n):
            await model.complete(request)
    return time.perf_counter() - started


async def against_floor(
    floor: Callable[[], Awaitable[float]], ours: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    """Medians of `REPEAT` runs of ours and of its floor (the same model calls with nothing around them),
    alternated so that the machine's load falls on both alike: (ours, floor) in seconds."""
    walls, floors = [], []
    for _ in range(REPEAT):
        floors.append(await floor())
        walls.append(await ours())
    return median(walls), median(floors)


async def succeeded(
    config: TeamConfig, body: Callable[[RunContext], Awaitable[Outcome]], model: ScriptedModel
) -> float:
    """The wall time of a run that must succeed."""
    wall, result = await run_body(config, body, model=model)
    assert result["status"] == "succeeded", result
    return wall


def row(name: str, ours: float, ideal: float, unit: str, note: str = "") -> None:
    ROWS.append(
        {
            "benchmark": name,
            "ours": round(ours, 3),
            "reference": round(ideal, 3),
            "unit": unit,
            "ratio": round(ours / ideal, 3) if ideal else None,
            "note": note,
        }
    )
    print(
        f"  {name}: {ours:.3f} vs {ideal:.3f} {unit} (x{ours / ideal:.2f}) {note}"
        if ideal
        else f"  {name}: {ours:.3f} {unit} {note}",
        flush=True,
    )


def team(names: list[str], latency_ms: float = 0.0) -> TeamConfig:
    return TeamConfig.model_validate(
        {
            "agents": {
                n: {
                    "description": n,
                    "instructions": f"You are {n}.",
                    "model": "scripted",
                    "scripted": {"latency_ms": latency_ms},
                }
                for n in names
            },
            "limits": {"max_steps": 10_000, "max_turns": 1_000, "run_timeout_s": 3_600},
        }
    )


def fresh_db() -> Path:
    return Path(tempfile.mkdtemp(prefix="cm-bench-")) / "audit.db"


async def run_body(
    config: TeamConfig,
    body: Callable[[RunContext], Awaitable[Outcome]],
    *,
    model: ScriptedModel,
    limits: Limits | None = None,
) -> tuple[float, dict[str, Any]]:
    async with Runtime(config, AuditLog(fresh_db()), providers=lambda n, a, c: model) as rt:
        started = time.perf_counter()
        run_id = await rt.start_run("bench", "bench", body, limits=limits)
        result = await rt.wait(run_id, 3_600)
        return time.perf_counter() - started, result


# -- issue 2 -------------------------------------------------------------------------------------------------
async def step_overhead(n: int) -> None:
    print("delegate run vs bare model call (per step)")
    for latency in (0.0, 0.010, 0.050):
        model = ScriptedModel(latency=latency)
        bares, ours = [], []
        config = team(["a"])
        audit = AuditLog(fresh_db())
        async with Runtime(config, audit, providers=lambda *_, m=model: m) as rt:
            await rt.wait(await rt.start_run("delegate", "task", delegate("a", "task")), 60)  # warm up
            before = audit.commits
            for _ in range(REPEAT):
                bares.append(await bare_calls(model, n) / n)
                started = time.perf_counter()
                for _ in range(n):
                    await rt.wait(await rt.start_run("delegate", "task", delegate("a", "task")), 60)
                ours.append((time.perf_counter() - started) / n)
            commits = (audit.commits - before) / (REPEAT * n)
        bare, mine = median(bares), median(ours)
        label = f"delegate run, L={latency * 1000:.0f} ms"
        row(
            label,
            mine * 1000,
            bare * 1000,
            "ms/run",
            f"overhead {1000 * (mine - bare):.2f} ms/run (one step, the run's start and end); "
            f"{commits:.1f} commits/run",
        )


async def audit_throughput(k: int) -> None:
    print("audit writes vs raw batched SQLite inserts")
    db = fresh_db()
    with AuditLog(db) as log:
        started = time.perf_counter()

        async def writer(count: int) -> None:
            for i in range(count):
                await log.write(Write(events=[Event("bench", None, {"i": i, "text": "x" * 100})]))

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(writer, k // 50)
        concurrent_rate = k / (time.perf_counter() - started)
        started = time.perf_counter()
        sequential_n = max(k // 10, 200)
        for i in range(sequential_n):
            await log.write(Write(events=[Event("bench", None, {"i": i, "text": "x" * 100})]))
        sequential_rate = sequential_n / (time.perf_counter() - started)
    raw_db = fresh_db()
    conn = sqlite3.connect(raw_db, isolation_level=None)
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=normal")
    conn.execute(
        "create table events (seq integer primary key, run_id text, step_id text, kind text, "
        "payload text, created_at text, prev_hash text, hash text)"
    )
    payload = json.dumps({"i": 0, "text": "x" * 100})
    started = time.perf_counter()
    for batch in range(0, k, 512):
        conn.execute("begin")
        conn.executemany(
            "insert into events (run_id, step_id, kind, payload, created_at, prev_hash, hash) "
            "values (null, null, 'bench', ?, '2026-11-25T00:00:00.000Z', '0', '0')",
            [(payload,)] * min(512, k - batch),
        )
        conn.execute("commit")
    raw_rate = k / (time.perf_counter() - started)
    # the same rows with the work the audit must do per event (canonical JSON, timestamp, sha256 chain)
    started, prev = time.perf_counter(), "0" * 64
    for batch in range(0, k, 512):
        rows = []
        for i in range(batch, min(batch + 512, k)):
            body = canonical({"i": i, "text": "x" * 100})
            stamp = now()
            digest = event_hash(prev, i + 1, None, None, "bench", body, stamp)
            rows.append((body, stamp, prev, digest))
            prev = digest
        conn.execute("begin")
        conn.executemany(
            "insert into events (run_id, step_id, kind, payload, created_at, prev_hash, hash) "
            "values (null, null, 'bench', ?, ?, ?, ?)",
            rows,
        )
        conn.execute("commit")
    chained_rate = k / (time.perf_counter() - started)
    conn.close()
    # the same chained rows into the audit's own table (its indexes too)
    schema_db = fresh_db()
    with AuditLog(schema_db):
        pass  # creates and migrates the file
    conn = sqlite3.connect(schema_db, isolation_level=None)
    started, prev = time.perf_counter(), "0" * 64
    for batch in range(0, k, 512):
        keyed: list[tuple[int, str, str, str, str]] = []
        for i in range(batch, min(batch + 512, k)):
            body = canonical({"i": i, "text": "x" * 100})
            stamp = now()
            digest = event_hash(prev, i + 1, None, None, "bench", body, stamp)
            keyed.append((i + 1, body, stamp, prev, digest))
            prev = digest
        conn.execute("begin")
        conn.executemany(
            "insert into events (seq, run_id, step_id, kind, payload, created_at, prev_hash, hash)"
            " values (?, null, null, 'bench', ?, ?, ?, ?)",
            keyed,
        )
        conn.execute("commit")
    schema_rate = k / (time.perf_counter() - started)
    conn.close()
    floor_rate = await group_commit_floor(k)
    indexed_floor_rate = await group_commit_floor(k, indexed=True)
    row(
        "audit events/s, 50 concurrent writers",
        concurrent_rate,
        raw_rate,
        "rows/s",
        "vs raw executemany of ready rows",
    )
    row(
        "audit events/s, 50 concurrent writers (vs chained raw)",
        concurrent_rate,
        chained_rate,
        "rows/s",
        "raw executemany that also builds JSON, timestamp and hash chain",
    )
    row(
        "audit events/s, 50 concurrent writers (vs chained raw, same table)",
        concurrent_rate,
        schema_rate,
        "rows/s",
        "the same chained rows into the audit's events table, with its indexes",
    )
    row(
        "audit events/s, 50 concurrent writers (vs a bare group-commit writer)",
        concurrent_rate,
        floor_rate,
        "rows/s",
        "50 tasks awaiting a minimal writer that commits each loop turn's rows together",
    )
    row(
        "audit events/s, 50 concurrent writers (vs a bare group-commit writer, audit's table)",
        concurrent_rate,
        indexed_floor_rate,
        "rows/s",
        "the same minimal writer into the audit's events table, with its indexes",
    )
    row(
        "bare group-commit writer into the audit's table, vs chained raw",
        indexed_floor_rate,
        chained_rate,
        "rows/s",
        "the ceiling of any writer that keeps the audit's indexes, against the 0.7x target",
    )
    row("audit events/s, one awaited at a time", sequential_rate, raw_rate, "rows/s", "one commit per event")


async def group_commit_floor(k: int, *, indexed: bool = False) -> float:
    """The floor of awaited writes on one event loop: 50 tasks, a writer that chains and commits each loop
    turn's rows in one transaction (no redaction, no summary rows). `indexed`: into the audit's own events
    table (its indexes too), else into a table without indexes."""
    if indexed:
        db = fresh_db()
        with AuditLog(db):
            pass  # creates and migrates the file
        conn = sqlite3.connect(db, isolation_level=None)
        insert = (
            "insert into events (seq, run_id, step_id, kind, payload, created_at, prev_hash, hash)"
            " values (?, null, null, 'bench', ?, ?, ?, ?)"
        )
    else:
        conn = sqlite3.connect(fresh_db(), isolation_level=None)
        conn.execute(
            "create table events (seq integer primary key, kind text, payload text, created_at text,"
            " prev_hash text, hash text)"
        )
        insert = "insert into events values (?, 'bench', ?, ?, ?, ?)"
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=normal")
    loop = asyncio.get_running_loop()
    pending: list[tuple[asyncio.Future[None], dict[str, Any]]] = []
    head: dict[str, Any] = {"seq": 0, "hash": "0" * 64}

    def flush() -> None:
        batch = pending[:]
        pending.clear()
        seq, prev, stamp, rows = int(head["seq"]), str(head["hash"]), now(), []
        for _, payload in batch:
            seq += 1
            body = canonical(payload)
            digest = event_hash(prev, seq, None, None, "bench", body, stamp)
            rows.append((seq, body, stamp, prev, digest))
            prev = digest
        conn.execute("begin")
        conn.executemany(insert, rows)
        conn.execute("commit")
        head.update(seq=seq, hash=prev)
        for done, _ in batch:
            done.set_result(None)

    async def write(payload: dict[str, Any]) -> None:
        done = loop.create_future()
        if not pending:
            loop.call_soon(flush)
        pending.append((done, payload))
        await done

    async def writer(count: int) -> None:
        for i in range(count):
            await write({"i": i, "text": "x" * 100})

    started = time.perf_counter()
    await asyncio.gather(*(writer(k // 50) for _ in range(50)))
    rate = k / (time.perf_counter() - started)
    conn.close()
    return rate


async def stdio_round_trip(m: int) -> None:
    from mcp import Client, StdioServerParameters

    print("delegate_task over stdio vs a bare MCP tool over stdio")
    tmp = Path(tempfile.mkdtemp(prefix="cm-bench-"))
    config = tmp / "team.toml"
    config.write_text('[agents.a]\ndescription = "a"\ninstructions = "a"\nmodel = "scripted"\n')
    env = {**os.environ, "CONCERTMASTER_DB": str(tmp / "audit.db"), "CONCERTMASTER_CONFIG": str(config)}
    ours_params = StdioServerParameters(
        command=sys.executable, args=["-m", "server", "serve"], env=env, cwd=str(ROOT)
    )
    bare_params = StdioServerParameters(
        command=sys.executable, args=[str(ROOT / "bench" / "bare_server.py")], env=env, cwd=str(ROOT)
    )
    timings = {}
    for label, params, tool, args in (
        ("ours", ours_params, "delegate_task", {"agent": "a", "task": "t"}),
        ("bare", bare_params, "echo", {"text": "t"}),
    ):
        async with Client(params, mode="legacy") as client:
            await client.call_tool(tool, args)  # warm up
            started = time.perf_counter()
            for _ in range(m):
                result = await client.call_tool(tool, args)
                assert not result.is_error, result.content
            timings[label] = (time.perf_counter() - started) / m
    row(
        "MCP tool call over stdio",
        timings["ours"] * 1000,
        timings["bare"] * 1000,
        "ms/call",
        "delegate_task (a full audited run) vs a bare echo tool",
    )


# -- issue 3 -------------------------------------------------------------------------------------------------
async def fan_out(sizes: list[int], latencies: list[float]) -> None:
    print("concurrent fan-out: wall time vs one latency (the ideal)")
    for latency in latencies:
        for n in sizes:
            await fan_out_of(n, latency)


async def fan_out_of(n: int, latency: float) -> None:
    names = [f"a{i}" for i in range(n)]
    config = team(names)
    wall, floor = await against_floor(
        lambda: bare_calls(ScriptedModel(latency=latency), n, parallel=True),
        lambda: succeeded(
            config, concurrent(names, "t", ConcurrentOptions()), ScriptedModel(latency=latency)
        ),
    )
    row(
        f"fan-out {n} agents, L={latency * 1000:.0f} ms",
        wall * 1000,
        latency * 1000,
        "ms",
        f"median of {REPEAT}; {n} bare calls at once take {floor / latency:.2f} L here",
    )


async def chain(n: int, latency: float) -> None:
    print("sequential chain: overhead per step against N bare calls of the same model")
    names = [f"a{i}" for i in range(n)]
    wall, bare = await against_floor(
        lambda: bare_calls(ScriptedModel(latency=latency), n),
        lambda: succeeded(team(names), sequential(names, "t"), ScriptedModel(latency=latency)),
    )
    row(
        f"chain of {n}, L={latency * 1000:.0f} ms",
        wall * 1000,
        bare * 1000,
        "ms",
        f"overhead {(wall - bare) / n * 1000:.2f} ms/step (median of {REPEAT})",
    )


async def chat(agents: int, rounds: int, latency: float) -> None:
    names = [f"a{i}" for i in range(agents)]
    turns = agents * rounds

    async def ours() -> float:  # a chat that runs out of turns ends "stopped" by design: any end counts
        body = group_chat(names, "topic", GroupChatOptions(max_turns=turns))
        return (await run_body(team(names), body, model=ScriptedModel(latency=latency)))[0]

    wall, bare = await against_floor(lambda: bare_calls(ScriptedModel(latency=latency), turns), ours)
    row(
        f"group chat {agents} agents x {rounds} rounds, L={latency * 1000:.0f} ms",
        wall * 1000,
        bare * 1000,
        "ms",
        f"overhead {(wall - bare) / turns * 1000:.2f} ms/turn (vs {turns} bare calls)",
    )


async def plan20(latency: float) -> None:
    layers, width = 4, 5
    subtasks = [
        {
            "id": f"s{layer}_{i}",
            "agent": f"w{i}",
            "task": f"part {layer}.{i}",
            "depends_on": [f"s{layer - 1}_{j}" for j in range(width)] if layer else [],
        }
        for layer in range(layers)
        for i in range(width)
    ]
    names = ["planner", *(f"w{i}" for i in range(width))]
    plan_json = json.dumps({"subtasks": subtasks})

    async def ideal() -> float:  # the critical path: the planner's call, then each layer's calls at once
        floor = ScriptedModel(latency=latency)
        total = await bare_calls(floor, 1)
        for _ in range(layers):
            total += await bare_calls(floor, width, parallel=True)
        return total

    body = plan_and_execute("goal", names[1:], PlanOptions(planner="planner"))
    wall, best = await against_floor(
        ideal, lambda: succeeded(team(names), body, ScriptedModel([plan_json], latency=latency))
    )
    row(
        f"20-node plan (4 layers x 5), L={latency * 1000:.0f} ms",
        wall * 1000,
        best * 1000,
        "ms",
        "ideal: the planner's call and each layer's 5 calls at once, bare",
    )


# -- issue 4 -------------------------------------------------------------------------------------------------
async def approval_path(n: int) -> None:
    print("approval path (request -> decision -> resume) with an auto-approver")

    async def body(ctx: RunContext) -> Outcome:
        for i in range(n):
            verdict = await request_approval(
                ctx,
                agent="a",
                tool="files.delete_file",
                arguments={"i": i},
                reason="bench",
                rule=None,
                human_only=False,
                ttl_s=60,
                step_id=None,
            )
            assert verdict.approved
        return Outcome("done")

    async with Runtime(team(["a"]), AuditLog(fresh_db())) as rt:
        run_id = await rt.start_run("bench", "approvals", body)

        async def approver() -> None:
            while rt.is_active(run_id):
                for request in rt.pending.open_for(run_id, "approval"):
                    await rt.approvals.decide(request.id, "approve", "auto", channel="tool")
                await rt.pending.wait_changed()

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(approver)
            await rt.wait(run_id, 600)
            tg.cancel_scope.cancel()
        per = (time.perf_counter() - started) / n
    row("approval round trip (auto-approver)", per * 1000, 0, "ms/approval", "4 audited writes each")


# -- issue 7 -------------------------------------------------------------------------------------------------
async def resume_time(n: int) -> None:
    """A fan-out of `n` agents stopped with all but one step recorded, resumed by a new runtime: the time to
    replay them, vs the time the same steps took the first time."""
    print(f"resume a run with {n} recorded steps")
    names = [f"a{i}" for i in range(n + 1)]
    config = team(names)
    db = fresh_db()
    recorded = anyio.Event()
    finished = 0

    async def respond(request: ModelRequest) -> str:
        if request.agent == names[-1]:
            await anyio.sleep_forever()  # the last agent's step is cut short by the stop
        return f"{request.agent} answered"

    def count(run_id: str, kind: str, payload: dict[str, Any]) -> None:
        nonlocal finished
        finished += kind == "step_finished"
        if finished == n:
            recorded.set()

    model = ScriptedModel(respond=respond)
    spec = RunSpec(pattern="concurrent", members=tuple(names), task="t")
    async with Runtime(config, AuditLog(db), providers=lambda *_: model) as rt:
        started = time.perf_counter()
        run_id = await rt.start(spec)
        rt.subscribe(run_id, count)
        await recorded.wait()
        first = time.perf_counter() - started
    replayed = ScriptedModel()
    started = time.perf_counter()
    async with Runtime(config, AuditLog(db), providers=lambda *_: replayed) as rt:
        result = await rt.wait(run_id, 600)
        resumed = time.perf_counter() - started
    assert result["status"] == "succeeded", result
    assert len(replayed.requests) == 1, len(replayed.requests)  # only the unfinished step
    row(
        f"resume after {n} recorded steps (start to finish)",
        resumed * 1000,
        first * 1000,
        "ms",
        f"vs running them the first time; {resumed / n * 1e6:.0f} µs per replayed step",
    )


def policy_check(n: int) -> None:
    policy = load_policy("default")
    actions = [
        Action("a", None, "files.read_file", {"readOnlyHint": True}, {"name": "x"}),
        Action("a", None, "files.delete_file", {"destructiveHint": True}, {"name": "x"}),
        Action("a", "ops", "ops.deploy", {}, {"environment": "production"}),
        Action("a", None, "db.query", {"readOnlyHint": True}, {"sql": "select 1"}),
    ]
    started = time.perf_counter()
    for i in range(n):
        evaluate(policy, actions[i % 4])
    per = (time.perf_counter() - started) / n
    row("policy check (default preset, 9 rules)", per * 1e6, 0, "µs/check")


async def main(quick: bool) -> None:
    print(
        f"concertmaster bench on {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    await step_overhead(20 if quick else 100)
    await audit_throughput(5_000 if quick else 20_000)
    await stdio_round_trip(30 if quick else 100)
    await fan_out([10, 100] if quick else [10, 100, 1000], [0.010, 0.100])
    await chain(20, 0.0)  # the pure per-step overhead: no latency to hide anything behind
    await chain(20, 0.010)
    await chat(4, 5, 0.010)
    await plan20(0.010)
    await approval_path(50 if quick else 200)
    await resume_time(200 if quick else 1000)
    policy_check(20_000 if quick else 100_000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row("peak RSS of the bench process", peak, 0, "MiB")


def table() -> str:
    lines = ["| benchmark | ours | reference | unit | ratio | note |", "|---|---|---|---|---|---|"]
    for r in ROWS:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        reference = "" if not r["reference"] else r["reference"]
        lines.append(
            f"| {r['benchmark']} | {r['ours']} | {reference} | {r['unit']} | {ratio} | {r['note']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from server.cli import freeze_startup_heap

    freeze_startup_heap()  # as `concertmaster serve` does once the server is built
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="runs of each timed workload (median)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    REPEAT = args.repeat
    anyio.run(main, args.quick)
    print()
    print(table())
    (Path(__file__).parent / "results.json").write_text(json.dumps(ROWS, indent=2))
