"""`concertmaster serve --http`: streamable HTTP on 127.0.0.1, driven by the `mcp` client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "team.toml"
    config.write_text('[agents.solo]\ndescription = "d"\ninstructions = "i"\nmodel = "scripted"\n')
    port = free_port()
    env = {**os.environ, "CONCERTMASTER_DB": str(tmp_path / "audit.db"), "CONCERTMASTER_CONFIG": str(config)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--http", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_delegate_over_streamable_http(http_server: str, mode: str) -> None:
    async with Client(http_server, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        run = (await client.call_tool("delegate_task", {"agent": "solo", "task": "hello"})).structured_content
    assert "delegate_task" in names
    assert run["status"] == "succeeded" and run["output"] == "[scripted solo] Done: hello"
