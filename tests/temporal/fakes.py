"""A local fake of the Anthropic Messages API that counts calls and can hold one until the test lets it go."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeAPI:
    """Answers each request with `<system> did: <first line of the last user message>`."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        """The prompt of every request, in arrival order."""
        self.hold_call: int | None = None
        """1-based index of a call to hold until `release` (the test kills its worker meanwhile)."""
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        last = body["messages"][-1]["content"]
        text = last if isinstance(last, str) else " ".join(b.get("text", "") for b in last)
        prompt = f"{body.get('system', '')}|{text.splitlines()[0] if text else ''}"
        with self.lock:
            self.seen.append(prompt)
            index = len(self.seen)
        if index == self.hold_call:
            self.held.set()
            self.release.wait(120)
        return {
            "id": f"msg_{index}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": f"{body.get('system', '')} did: {text[:40]}"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }


@contextmanager
def fake_api() -> Iterator[tuple[str, FakeAPI]]:
    api = FakeAPI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            data = json.dumps(api.answer(body)).encode()
            try:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the worker that asked was killed

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", api
    finally:
        api.release.set()
        server.shutdown()
