"""Which provider runs an agent: the `model` field of its config, resolved per run.

`anthropic:<id>` uses the Anthropic API; `sampling` the client's model through MCP sampling; `host` the calling
assistant's own model, one `submit_step` per model call; `scripted` the offline model; `auto` picks Anthropic
when `ANTHROPIC_API_KEY` is set, else sampling when the client offers it, else the host.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

import anyio

from orchestration.config import AgentConfig, TeamConfig
from orchestration.errors import ModelUnavailableError
from orchestration.models.base import ModelProvider, Usage
from orchestration.models.host import HostProvider
from orchestration.models.sampling import SamplingProvider
from orchestration.models.scripted import Reply, ScriptedModel

if TYPE_CHECKING:
    from orchestration.context import RunContext
    from orchestration.models.anthropic import AnthropicProvider

NO_MODEL_HELP = (
    "set ANTHROPIC_API_KEY in the server's environment (e.g. the `env` block of your client's MCP config), "
    'use a client that offers MCP sampling, or set `model = "scripted"` for an offline test'
)


def has_api_key() -> bool:
    """True when the Anthropic API can be used."""
    return bool(os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN"))


ANTHROPIC_MODULE = "orchestration.models.anthropic"


def may_use_anthropic(config: TeamConfig) -> bool:
    """Could an agent of `config` run on the Anthropic API (an `anthropic:` model, or `auto` with a key)?"""
    models = [agent.model for agent in config.agents.values()]
    return any(m.startswith("anthropic:") for m in models) or (has_api_key() and "auto" in models)


async def preload(config: TeamConfig) -> None:
    """Import the Anthropic SDK in a worker thread, once, when the team may use it.

    The import takes seconds; done lazily by the first run it would freeze every client on the event loop.
    """
    if ANTHROPIC_MODULE not in sys.modules and may_use_anthropic(config):
        await anyio.to_thread.run_sync(importlib.import_module, ANTHROPIC_MODULE)


def scripted_from_config(agent: AgentConfig) -> ScriptedModel:
    """A scripted model answering as the agent's `scripted` settings say."""
    settings = agent.scripted
    if settings is None:
        return ScriptedModel()
    replies = [
        r
        if isinstance(r, str)
        else Reply(r.text, tuple((c["name"], c.get("arguments", {})) for c in r.tool_calls))
        for r in settings.replies
    ]
    return ScriptedModel(
        replies,
        latency=settings.latency_ms / 1000,
        usage=Usage(input_tokens=settings.input_tokens, output_tokens=settings.output_tokens),
    )


class DefaultProviders:
    """The provider factory used by the server: one Anthropic client per model id, shared by runs."""

    def __init__(self) -> None:
        self._anthropic: dict[str, AnthropicProvider] = {}

    def anthropic(self, model: str) -> AnthropicProvider:
        if not has_api_key():
            raise ModelUnavailableError(f"model 'anthropic:{model}' needs ANTHROPIC_API_KEY; {NO_MODEL_HELP}")
        if model not in self._anthropic:
            from orchestration.models.anthropic import AnthropicProvider

            self._anthropic[model] = AnthropicProvider(model)
        return self._anthropic[model]

    def __call__(self, name: str, agent: AgentConfig, ctx: RunContext) -> ModelProvider:
        model = agent.model
        if model == "scripted":
            return scripted_from_config(agent)
        if model.startswith("anthropic:"):
            return self.anthropic(model.removeprefix("anthropic:"))
        if model == "sampling":
            if ctx.engine.sampler is None:
                raise ModelUnavailableError(
                    f"agent {name!r} uses model 'sampling' but the client did not offer MCP sampling; "
                    + NO_MODEL_HELP
                )
            return SamplingProvider(ctx.engine.sampler)
        if model == "host":
            return HostProvider(ctx.engine.pending, journal=ctx.engine.journal)
        # auto
        if has_api_key():
            return self.anthropic(ctx.config.default_model)
        if ctx.engine.sampler is not None:
            return SamplingProvider(ctx.engine.sampler)
        return HostProvider(ctx.engine.pending, journal=ctx.engine.journal)
