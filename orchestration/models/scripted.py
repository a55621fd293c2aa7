"""The scripted model: deterministic, offline, a real provider for tests, benchmarks and the demo.

Every reply it gives is labelled `scripted` in the audit (provider and model name), so nobody mistakes it for a
real model. It answers from a list of canned replies, or from a function, or with a deterministic summary.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from orchestration.models.base import ModelRequest, ModelResponse, ToolCall, Usage

SCRIPTED_MODEL_NAME = "scripted"
DEFAULT_USAGE = Usage(input_tokens=40, output_tokens=60)


@dataclass(frozen=True)
class Reply:
    """A canned reply: text and, optionally, tool calls as `(name, arguments)` pairs."""

    text: str = ""
    tool_calls: tuple[tuple[str, dict], ...] = ()


ReplyLike = str | Reply
Respond = Callable[[ModelRequest], ReplyLike | Awaitable[ReplyLike]]


def default_reply(request: ModelRequest) -> str:
    """A deterministic answer built from the request: who answers, and the first line of the task."""
    last = request.messages[-1].text if request.messages else ""
    first_line = next((line.strip() for line in last.splitlines() if line.strip()), "(empty task)")
    if len(first_line) > 160:
        first_line = first_line[:157] + "..."
    who = request.agent or "agent"
    return f"[scripted {who}] Done: {first_line}"


class ScriptedModel:
    """Answers from `replies` in order, then from `respond` (or the default reply) when they run out.

    `latency` seconds are slept per call (checkpointing cancellation), and `usage` is reported per call.
    """

    name = "scripted"

    def __init__(
        self,
        replies: Sequence[ReplyLike] = (),
        *,
        respond: Respond | None = None,
        latency: float = 0.0,
        usage: Usage = DEFAULT_USAGE,
        model: str = SCRIPTED_MODEL_NAME,
    ) -> None:
        self._replies = list(replies)
        self._next = itertools.count()
        self._respond = respond
        self.latency = latency
        self.usage = usage
        self.model = model
        self.requests: list[ModelRequest] = []
        """Every request received, oldest first (tests inspect what each call actually saw)."""

    def replayed(self, response: ModelResponse) -> None:
        """A reply was replayed from the audit after a restart: the next call gets the reply after it."""
        next(self._next)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if self.latency:
            await anyio.sleep(self.latency)
        else:
            await anyio.lowlevel.checkpoint()
        index = next(self._next)
        reply: ReplyLike
        if index < len(self._replies):
            reply = self._replies[index]
        elif self._respond is not None:
            produced = self._respond(request)
            reply = await produced if isinstance(produced, Awaitable) else produced
        else:
            reply = default_reply(request)
        if isinstance(reply, str):
            reply = Reply(text=reply)
        calls = tuple(
            ToolCall(id=f"call_{index}_{i}", name=name, arguments=dict(args))
            for i, (name, args) in enumerate(reply.tool_calls)
        )
        return ModelResponse(
            text=reply.text,
            model=self.model,
            provider=self.name,
            usage=self.usage,
            cost_usd=0.0,
            tool_calls=calls,
            stop_reason="tool_use" if calls else "end_turn",
        )
