"""delegate_task on an `anthropic:` agent over stdio, the Messages API answered by a local fake server."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio
KEY = "sk-ant-e2e-" + "q" * 30


class FakeMessagesAPI(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        FakeMessagesAPI.seen.append(body)
        answer = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": "Claude says hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 2000, "output_tokens": 100},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def database_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


@pytest.fixture
def fake_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeMessagesAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_auto_agent_runs_on_the_anthropic_api_when_a_key_is_set(tmp_path: Path, fake_api: str) -> None:
    db = tmp_path / "audit.db"
    env = {
        **os.environ,
        "CONCERTMASTER_DB": str(db),
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": fake_api,
    }
    env.pop("CONCERTMASTER_CONFIG", None)
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env)
    async with Client(params, mode="legacy") as client:
        run = (
            await client.call_tool("delegate_task", {"agent": "researcher", "task": "say hi"})
        ).structured_content
    assert run["status"] == "succeeded" and run["output"] == "Claude says hi"
    assert run["usage"]["input_tokens"] == 2000 and run["usage"]["output_tokens"] == 100
    assert run["usage"]["cost_usd"] == pytest.approx((2000 * 3 + 100 * 15) / 1e6)
    assert FakeMessagesAPI.seen[-1]["model"] == "claude-sonnet-4-5"
    conn = sqlite3.connect(db)
    (provider, model, cost) = conn.execute("select provider, model, cost_usd from steps").fetchone()
    raw = database_bytes(db)
    conn.close()
    assert (provider, model) == ("anthropic", "claude-sonnet-4-5") and cost == pytest.approx(0.0075)
    assert KEY.encode() not in raw
