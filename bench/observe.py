"""What seeing costs: spans, diagrams and audit queries, as ratios and times in one run.

    python bench/observe.py [--steps 30] [--reps 5]

- span overhead: a chain of zero-latency scripted steps with the telemetry hooks short-circuited, with the
  OpenTelemetry API alone (no SDK: what every user pays), and with the SDK recording to memory;
- a diagram of that chain, and the README's common questions through query_audit's engine;
- the runaway recursive CTE: how long 50 million SQLite steps take here.
Nothing is asserted: the numbers are for reading (the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestration import telemetry
from orchestration.audit.catalog import QUESTIONS
from orchestration.audit.log import AuditLog
from orchestration.audit.query import AuditQuery
from orchestration.audit.read import AuditReader
from orchestration.diagram import diagrams
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.sequential import sequential
from orchestration.runtime import Runtime
from tests.conftest import team

TEAM = team(**{f"a{i}": {"model": "scripted"} for i in range(4)})


async def chain(db: Path, steps: int) -> tuple[float, str]:
    agents = [f"a{i % 4}" for i in range(steps)]
    async with Runtime(TEAM, AuditLog(db), providers=lambda n, a, c: ScriptedModel()) as rt:
        t0 = time.perf_counter()
        run_id = await rt.start_run("sequential", "go", sequential(agents, "go"))
        await rt.wait(run_id, 600)
        return time.perf_counter() - t0, run_id


def timed_chains(tmp: Path, label: str, steps: int, reps: int) -> float:
    times = [anyio.run(chain, tmp / f"{label}{i}.db", steps)[0] for i in range(reps)]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    real_start = telemetry._start
    telemetry._start = lambda name, attributes: contextlib.nullcontext(telemetry.trace.INVALID_SPAN)  # type: ignore[assignment]
    none = timed_chains(tmp, "none", args.steps, args.reps)
    telemetry._start = real_start  # type: ignore[assignment]
    api = timed_chains(tmp, "api", args.steps, args.reps)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(provider)
    sdk = timed_chains(tmp, "sdk", args.steps, args.reps)
    rows: list[tuple[str, str]] = [
        (f"chain of {args.steps} steps, no spans", f"{none * 1000:.1f} ms"),
        ("same, OpenTelemetry API only (no SDK)", f"{api * 1000:.1f} ms (x{api / none:.3f})"),
        ("same, SDK recording every span", f"{sdk * 1000:.1f} ms (x{sdk / none:.3f})"),
    ]
    db = tmp / "api0.db"
    with AuditReader(db) as reader:
        run_id = reader.runs(limit=1)[0]["id"]
        run, steps, events = reader.run(run_id), reader.steps(run_id), reader.events(run_id, limit=100_000)
    assert run is not None
    t0 = time.perf_counter()
    for _ in range(20):
        diagrams(run, steps, events)
    rows.append(
        (
            f"Mermaid diagram of that run ({len(events)} events)",
            f"{(time.perf_counter() - t0) / 20 * 1000:.2f} ms",
        )
    )
    engine = AuditQuery(db)
    for name, (_, sql) in QUESTIONS.items():
        t0 = time.perf_counter()
        result = engine.run(sql.replace(":run_id", f"'{run_id}'"))
        rows.append(
            (f"query_audit: {name}", f"{(time.perf_counter() - t0) * 1000:.2f} ms, {result.steps:,} steps")
        )
    t0 = time.perf_counter()
    try:
        engine.run("with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c")
    except Exception as exc:
        stopped: Any = type(exc).__name__
    rows.append(
        (
            "runaway recursive CTE stopped at 50M steps",
            f"{(time.perf_counter() - t0) * 1000:.0f} ms ({stopped})",
        )
    )
    print("| benchmark | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
