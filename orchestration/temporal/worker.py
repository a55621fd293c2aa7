"""`concertmaster worker`: run workflows (runs) and activities (model and tool calls) from the task queue.

A worker never opens the audit database: it reads nothing but Temporal, and its runs' audit writes go to the
server that owns the file. Start as many as you like, on any machine that reaches the Temporal service.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Sequence
from typing import Any

import anyio
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import orchestration
from orchestration.config import EngineConfig, TeamConfig
from orchestration.context import ProviderFactory
from orchestration.errors import ConfigError
from orchestration.temporal.activities import WorkerActivities
from orchestration.temporal.workflow import RunWorkflow

SANDBOXED = ("orchestration.spec", "orchestration.patterns", "orchestration.temporal.workflow")
"""Loaded inside the workflow sandbox (fresh for each run, a clock or randomness refused): the run's own code.
Every other module of the engine is passed through, so that its classes are the same inside and outside."""

THIRD_PARTY = (
    "anyio",
    "sniffio",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_inspection",
    "typing_extensions",
    "sqlite_utils",
    "mcp",
    "mcp_types",
    "anthropic",
    "httpx",
    "httpcore",
)


def passthrough_modules() -> list[str]:
    """Every engine module but the sandboxed ones, plus `policies` and the libraries they use."""
    names = ["policies", *THIRD_PARTY]
    for info in pkgutil.walk_packages(orchestration.__path__, "orchestration."):
        if not info.name.startswith(SANDBOXED) and not info.ispkg:
            names.append(info.name)
    return names


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*passthrough_modules())
    )


async def connect(engine: EngineConfig) -> Client:
    """A client of the configured Temporal service, or `ConfigError` in one line saying how to fix it."""
    try:
        with anyio.fail_after(15):
            return await Client.connect(engine.address, namespace=engine.namespace)
    except Exception as exc:
        raise ConfigError(
            f"cannot reach Temporal at {engine.address} (namespace {engine.namespace!r}): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; start one with "
            "`concertmaster dev-temporal` or fix [engine] address/namespace in concertmaster.toml"
        ) from None


async def check_namespace(client: Client, engine: EngineConfig) -> None:
    """Fail at start, not at the first run, when the namespace does not exist."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=engine.namespace))
    except Exception as exc:
        raise ConfigError(
            f"Temporal at {engine.address} has no namespace {engine.namespace!r} ({exc}); create it "
            f"(`temporal operator namespace create {engine.namespace}`) or fix [engine] namespace"
        ) from None


def build_worker(
    client: Client,
    engine: EngineConfig,
    activities: WorkerActivities,
    *,
    identity: str | None = None,
    max_concurrent_activities: int | None = None,
) -> Worker:
    """A worker of the run queue: the run workflow plus the model and tool activities."""
    extra: dict[str, Any] = {}
    if identity:
        extra["identity"] = identity
    if max_concurrent_activities:
        extra["max_concurrent_activities"] = max_concurrent_activities
    return Worker(
        client,
        task_queue=engine.task_queue,
        workflows=[RunWorkflow],
        activities=activities.all(),
        workflow_runner=workflow_runner(),
        **extra,
    )


async def run_worker(
    config: TeamConfig,
    *,
    providers: ProviderFactory | None = None,
    ready: anyio.Event | None = None,
    identity: str | None = None,
) -> None:
    """Serve the run queue until cancelled (Ctrl-C): workflows and activities."""
    engine = config.engine
    client = await connect(engine)
    await check_namespace(client, engine)
    activities = WorkerActivities(providers, config.mcp_servers)
    async with anyio.create_task_group() as tg:
        activities.bind(tg)
        worker = build_worker(client, engine, activities, identity=identity)
        async with worker:
            if ready is not None:
                ready.set()
            await anyio.sleep_forever()


def worker_main(config: TeamConfig, argv: Sequence[str] = ()) -> int:
    """The `concertmaster worker` command."""
    import logging
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = config.engine
    print(
        f"concertmaster worker: Temporal {engine.address}, namespace {engine.namespace!r}, "
        f"task queue {engine.task_queue!r} (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        anyio.run(_serve, config)
    except KeyboardInterrupt:
        return 0
    return 0


async def _serve(config: TeamConfig) -> None:
    import sys

    ready = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run_worker(config, ready=ready))
        await ready.wait()
        print("concertmaster worker: ready", file=sys.stderr, flush=True)
