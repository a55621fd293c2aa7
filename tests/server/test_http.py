"""`concertmaster serve --http`: streamable HTTP on 127.0.0.1, driven by the `mcp` client with a bearer token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from server.http_auth import read_tokens

pytestmark = pytest.mark.anyio

SOLO = '[agents.solo]\ndescription = "d"\ninstructions = "i"\nmodel = "scripted"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HttpServer:
    url: str
    token: str
    """The local user's token, generated on first use next to the database."""
    tokens: Path


def client(url: str, token: str | None, mode: str = "auto") -> Client:
    """An MCP client over streamable HTTP that sends `token` as a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    http = create_mcp_http_client(headers=headers)
    return Client(streamable_http_client(url, http_client=http), mode=mode)  # type: ignore[arg-type]


def serve(tmp: Path, config_text: str, *extra: str) -> Iterator[HttpServer]:
    config = tmp / "team.toml"
    config.write_text(config_text)
    port = free_port()
    env = {**os.environ, "CONCERTMASTER_DB": str(tmp / "audit.db"), "CONCERTMASTER_CONFIG": str(config)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--http", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    tokens = tmp / "http-tokens"
    try:
        token = read_tokens(tokens)[0].token if "--no-auth" not in extra else ""
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", token, tokens)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    yield from serve(tmp_path, SOLO)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_delegate_over_streamable_http(http_server: HttpServer, mode: str) -> None:
    async with client(http_server.url, http_server.token, mode) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        run = (await c.call_tool("delegate_task", {"agent": "solo", "task": "hello"})).structured_content
    assert "delegate_task" in names
    assert run["status"] == "succeeded" and run["output"] == "[scripted solo] Done: hello"
