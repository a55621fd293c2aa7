"""concertmaster memory: RSS per idle run, per 1,000 finished runs, and growth over 10,000 runs.

    python bench/memory.py            # 1,000 idle runs, 10,000 finished runs, 2,000 delegate_task calls
    python bench/memory.py --quick    # 200 idle, 3,000 finished, 500 calls

Everything runs in this one process on the scripted model (L = 0, a fresh model per run, so the model's own
request log is not what is measured). RSS is read from /proc/self/statm after a full `gc.collect()`; the
finished-run phases are run twice: once for RSS (tracemalloc off, it costs memory itself), once under
tracemalloc for the Python heap and the sites that grew between the warm-up mark and the end.

Prints a table and writes bench/memory.json (ignored by git). Nothing here is asserted: the tests that keep the
per-run structures from growing count objects (tests/orchestration/test_memory.py, tests/server/test_memory.py).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestration.approvals import request_approval
from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.context import Outcome, RunContext
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.runtime import Runtime
from orchestration.spec import RunSpec

ROWS: list[dict[str, Any]] = []
SERIES: dict[str, list[dict[str, float]]] = {}
GROWTH_SITES: dict[str, list[str]] = {}
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") / 1024
AGENTS = ["a", "b", "c"]


def row(name: str, value: float, unit: str, note: str = "") -> None:
    ROWS.append({"benchmark": name, "value": round(value, 2), "unit": unit, "note": note})
    print(f"  {name}: {value:,.2f} {unit} {note}", flush=True)


def rss_kib() -> float:
    """Resident set size now (not the peak), after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def trimmed_rss_kib() -> float:
    """RSS after asking glibc to give freed memory back to the system (what is really still in use)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_kib()


def heap_kib() -> float:
    """What tracemalloc sees allocated now (0 when it is off)."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 1024 if tracemalloc.is_tracing() else 0.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def team() -> TeamConfig:
    return TeamConfig.model_validate(
        {
            "agents": {
                n: {"description": n, "instructions": f"You are {n}.", "model": "scripted"} for n in AGENTS
            },
            "limits": {"max_steps": 10_000, "max_turns": 1_000, "run_timeout_s": 3_600},
        }
    )


def fresh_db() -> Path:
    return Path(tempfile.mkdtemp(prefix="cm-memory-")) / "audit.db"


def fresh_models(latency: float = 0.0) -> Callable[..., ScriptedModel]:
    """A new scripted model per (run, agent): the runtime's own state is what is measured."""
    return lambda *_: ScriptedModel(latency=latency)


@asynccontextmanager
async def runtime(providers: Callable[..., Any]) -> AsyncIterator[Runtime]:
    async with Runtime(team(), AuditLog(fresh_db()), providers=providers) as rt:
        yield rt


def internals(rt: Runtime) -> dict[str, int]:
    """Sizes of the runtime's per-run structures (all 0 when no run is live)."""
    return {
        "active": len(rt._active),
        "listeners": len(rt._listeners),
        "pending": len(rt.pending._open),
    }


# -- idle runs -----------------------------------------------------------------------------------------------
async def idle_runs(n: int) -> None:
    """`n` delegate runs parked inside their model call (awaiting an event), then released."""
    print(f"{n} idle runs (parked in a model call), then released")
    release = anyio.Event()
    parked = 0
    all_parked = anyio.Event()

    async def respond(request: ModelRequest) -> str:
        nonlocal parked
        parked += 1
        if parked == n:
            all_parked.set()
        await release.wait()
        return "done"

    async with runtime(lambda *_: ScriptedModel(respond=respond)) as rt:
        # one run first, so imports and caches the first run fills are not counted per idle run
        warm = ScriptedModel()
        rt.providers = lambda *_: warm
        await rt.wait(await rt.start(RunSpec(pattern="delegate", members=("a",), task="warm")), 60)
        rt.providers = lambda *_: ScriptedModel(respond=respond)
        before, heap_before = rss_kib(), heap_kib()
        started = time.perf_counter()
        ids = [await rt.start(RunSpec(pattern="delegate", members=("a",), task=f"t{i}")) for i in range(n)]
        await all_parked.wait()
        took = time.perf_counter() - started
        during, heap_during = rss_kib(), heap_kib()
        live = internals(rt)
        release.set()
        statuses = {(await rt.wait(i, 600))["status"] for i in ids}
        after, heap_after = rss_kib(), heap_kib()
        trimmed = trimmed_rss_kib()
        assert statuses == {"succeeded"}, statuses
        assert internals(rt) == {"active": 0, "listeners": 0, "pending": 0}, internals(rt)
    label = "heap" if tracemalloc.is_tracing() else "RSS"
    value = (heap_during - heap_before) if tracemalloc.is_tracing() else (during - before)
    row(
        f"{label} per idle run (parked in a model call)",
        value / n,
        "KiB/run",
        f"{n} runs started in {took:.1f} s; live {live}",
    )
    if tracemalloc.is_tracing():
        row("heap kept after they finished", heap_after - heap_before, "KiB", f"all {n} succeeded")
    else:
        row(
            "RSS kept after they finished",
            after - before,
            "KiB",
            f"all {n} succeeded, per-run structures back to 0; {trimmed - before:+,.0f} KiB after malloc_trim",
        )


async def idle_approvals(n: int) -> None:
    """`n` runs parked awaiting a human's approval, then approved."""
    print(f"{n} runs parked awaiting approval, then approved")

    async def body(ctx: RunContext) -> Outcome:
        verdict = await request_approval(
            ctx,
            agent="a",
            tool="files.delete_file",
            arguments={"path": "x"},
            reason="bench",
            rule=None,
            human_only=False,
            ttl_s=3_600,
            step_id=None,
        )
        return Outcome("approved" if verdict.approved else "denied")

    async with runtime(fresh_models()) as rt:
        await rt.wait(await rt.start(RunSpec(pattern="delegate", members=("a",), task="warm")), 60)
        before = rss_kib()
        ids = [await rt.start_run("bench", "approve", body) for _ in range(n)]
        while len(rt.pending.open_for(kind="approval")) < n:
            await rt.pending.wait_changed()
        during = rss_kib()
        live = internals(rt)
        for request in rt.pending.open_for(kind="approval"):
            await rt.approvals.decide(request.id, "approve", "bench", channel="tool")
        statuses = {(await rt.wait(i, 600))["status"] for i in ids}
        after, trimmed = rss_kib(), trimmed_rss_kib()
        assert statuses == {"succeeded"}, statuses
        assert internals(rt) == {"active": 0, "listeners": 0, "pending": 0}, internals(rt)
    row("RSS per run awaiting approval", (during - before) / n, "KiB/run", f"live {live}")
    row(
        "RSS kept after they were approved",
        after - before,
        "KiB",
        f"all {n} succeeded; {trimmed - before:+,.0f} KiB after malloc_trim",
    )


# -- finished runs ---------------------------------------------------------------------------------------------
async def block(rt: Runtime, size: int) -> None:
    """`size` finished runs: 60 % delegate one after the other, 30 % delegate in batches of 50 started at once,
    5 % concurrent fan-outs of 3, 5 % group chats of 3 agents x 1 round."""
    sequential_n, batched_n = size * 6 // 10, size * 3 // 10
    fan_n = chat_n = (size - sequential_n - batched_n) // 2
    sequential_n += size - sequential_n - batched_n - fan_n - chat_n
    delegate = RunSpec(pattern="delegate", members=("a",), task="t")
    for _ in range(sequential_n):
        run = await rt.wait(await rt.start(delegate), 60)
        assert run["status"] == "succeeded", run
    for start in range(0, batched_n, 50):
        ids = [await rt.start(delegate) for _ in range(min(50, batched_n - start))]
        for run_id in ids:
            assert (await rt.wait(run_id, 60))["status"] == "succeeded"
    fan = RunSpec(pattern="concurrent", members=tuple(AGENTS), task="t")
    chat = RunSpec(pattern="group_chat", members=tuple(AGENTS), task="t", options={"max_turns": 3})
    for spec, count in ((fan, fan_n), (chat, chat_n)):
        for _ in range(count):
            run = await rt.wait(await rt.start(spec), 60)
            # a round-robin chat with nobody concluding ends `stopped` at max_turns: finished all the same
            assert run["status"] in ("succeeded", "stopped"), run


def report(
    label: str,
    unit: str,
    what: str,
    points: list[tuple[float, float]],
    base: float,
    warmup: int,
    total: int,
    took: float,
    snapshots: dict[int, tracemalloc.Snapshot],
) -> None:
    """The rows of a sampled phase: growth per 1,000 `what` over the warm-up, the slope after it, and (under
    tracemalloc) the sites that grew most between the warm-up mark and the end."""
    first = next(v for d, v in points if d == warmup)
    after = [(d / 1000, v) for d, v in points if d >= warmup]
    row(
        f"{label} per 1,000 {what} (first {warmup:,}, warm-up included)",
        (first - base) / warmup * 1000,
        f"KiB/1,000 {unit}",
        f"from {base:,.0f} KiB at start",
    )
    row(
        f"{label} slope after warm-up ({warmup:,} to {total:,} {unit})",
        slope(after),
        f"KiB/1,000 {unit}",
        f"{total / took:,.0f} {unit}/s; {after[-1][1] - after[0][1]:+,.0f} KiB over the span",
    )
    if len(snapshots) == 2:
        stats = snapshots[total].compare_to(snapshots[warmup], "lineno")
        top = [f"{s.size_diff / 1024:+.1f} KiB ({s.count_diff:+d} blocks) {s.traceback}" for s in stats[:8]]
        GROWTH_SITES[label] = top
        print(f"    top growth sites between {warmup:,} and {total:,} {unit}:")
        for line in top:
            print(f"      {line}")


async def finished_runs(
    total: int, every: int, warmup: int, measure: Callable[[], float], label: str
) -> None:
    print(f"{total:,} finished runs, {label} sampled every {every:,}")
    points: list[tuple[float, float]] = []
    snapshots: dict[int, tracemalloc.Snapshot] = {}
    async with runtime(fresh_models()) as rt:
        base = measure()
        started = time.perf_counter()
        for done in range(every, total + 1, every):
            await block(rt, every)
            value = measure()
            points.append((done, value))
            SERIES.setdefault(label, []).append({"runs": done, "kib": round(value, 1)})
            if tracemalloc.is_tracing() and done in (warmup, total):
                snapshots[done] = tracemalloc.take_snapshot()
            print(f"    {done:>6,} runs: {value:,.0f} KiB {internals(rt)}", flush=True)
        took = time.perf_counter() - started
        assert internals(rt) == {"active": 0, "listeners": 0, "pending": 0}, internals(rt)
    report(label, "runs", "finished runs", points, base, warmup, total, took, snapshots)


# -- through the MCP server ------------------------------------------------------------------------------------
async def server_calls(total: int, every: int, warmup: int, measure: Callable[[], float], label: str) -> None:
    from mcp import Client

    from server.app import AppState, build_server
    from server.settings import Settings

    print(f"{total:,} delegate_task calls through the MCP server in memory, {label} sampled every {every:,}")
    server = build_server(Settings(db=fresh_db(), default_wait_seconds=10), config=team())
    lowlevel = server._lowlevel_server
    inner = lowlevel.lifespan
    states: list[AppState] = []

    @asynccontextmanager
    async def capture(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state:
            states.append(state)
            yield state

    lowlevel.lifespan = capture
    points: list[tuple[float, float]] = []
    snapshots: dict[int, tracemalloc.Snapshot] = {}
    async with Client(server) as client:
        await client.call_tool("delegate_task", {"agent": "a", "task": "warm"})
        base = measure()
        started = time.perf_counter()
        for done in range(every, total + 1, every):
            for _ in range(every):
                result = await client.call_tool("delegate_task", {"agent": "a", "task": "t"})
                assert not result.is_error and result.structured_content["status"] == "succeeded"
            value = measure()
            points.append((done, value))
            SERIES.setdefault(label, []).append({"runs": done, "kib": round(value, 1)})
            if tracemalloc.is_tracing() and done in (warmup, total):
                snapshots[done] = tracemalloc.take_snapshot()
            print(f"    {done:>6,} calls: {value:,.0f} KiB {internals(states[0].runtime)}", flush=True)
        took = time.perf_counter() - started
        assert internals(states[0].runtime) == {"active": 0, "listeners": 0, "pending": 0}
    report(label, "calls", "delegate_task calls", points, base, warmup, total, took, snapshots)


async def traced(phase: Callable[[], Awaitable[None]]) -> None:
    tracemalloc.start()
    try:
        await phase()
    finally:
        tracemalloc.stop()


def sizes(quick: bool) -> dict[str, Any]:
    return {
        "idle": 200 if quick else 1_000,
        "runs": (3_000, 500, 1_000) if quick else (10_000, 1_000, 2_000),
        "calls": (500, 100, 200) if quick else (2_000, 250, 500),
    }


PHASES: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
    "idle": lambda z: idle_runs(z["idle"]),
    "idle-heap": lambda z: traced(lambda: idle_runs(z["idle"])),
    "approvals": lambda z: idle_approvals(z["idle"]),
    "runs": lambda z: finished_runs(*z["runs"], rss_kib, "RSS"),
    "runs-heap": lambda z: traced(lambda: finished_runs(*z["runs"], heap_kib, "heap")),
    "server": lambda z: server_calls(*z["calls"], rss_kib, "server RSS"),
    "server-heap": lambda z: traced(lambda: server_calls(*z["calls"], heap_kib, "server heap")),
}
"""Each phase runs in a process of its own: memory freed by one phase and kept by the allocator would
otherwise be reused by the next one and hide its cost."""


async def phase(name: str, quick: bool) -> None:
    await PHASES[name](sizes(quick))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row(f"peak RSS of the {name} phase's process", peak, "MiB")
    print("PHASE-RESULT " + json.dumps({"rows": ROWS, "series": SERIES, "growth_sites": GROWTH_SITES}))


def main(quick: bool) -> None:
    print(
        f"concertmaster memory on {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for name in PHASES:
        args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--phase",
            name,
            *(["--quick"] if quick else []),
        ]
        done = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=True)
        for line in done.stdout.splitlines():
            if line.startswith("PHASE-RESULT "):
                result = json.loads(line.removeprefix("PHASE-RESULT "))
                ROWS.extend(result["rows"])
                SERIES.update(result["series"])
                GROWTH_SITES.update(result["growth_sites"])
            else:
                print(line, flush=True)


def table() -> str:
    lines = ["| benchmark | value | unit | note |", "|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['value']:,} | {r['unit']} | {r['note']} |" for r in ROWS]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--phase", choices=sorted(PHASES), help="run one phase in this process (used by main)"
    )
    args = parser.parse_args()
    if args.phase:
        anyio.run(phase, args.phase, args.quick)
        sys.exit(0)
    main(args.quick)
    print()
    print(table())
    (Path(__file__).parent / "memory.json").write_text(
        json.dumps({"rows": ROWS, "series": SERIES, "growth_sites": GROWTH_SITES}, indent=2)
    )
