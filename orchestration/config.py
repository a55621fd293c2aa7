"""The team config file (`concertmaster.toml`): agents and run limits, validated with pydantic.

Path from `--config` or `CONCERTMASTER_CONFIG`; without one, the built-in default team (`default_team.toml`).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestration.errors import ConfigError, InvalidInputError
from policies.limits import Limits

AGENT_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
MODEL_FORMS = "'anthropic:<model id>', 'sampling', 'host', 'scripted' or 'auto'"
DEFAULT_TEAM_FILE = Path(__file__).with_name("default_team.toml")


class ScriptedReply(BaseModel):
    """One canned reply of a scripted agent: text and, optionally, tool calls."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field("", description="The reply's text.")
    tool_calls: list[dict[str, Any]] = Field(
        default_factory=list, description="Tool calls, each `{name = '...', arguments = {...}}`."
    )


class ScriptedSettings(BaseModel):
    """How a `model = "scripted"` agent answers (tests and the offline demo)."""

    model_config = ConfigDict(extra="forbid")

    replies: list[str | ScriptedReply] = Field(
        default_factory=list,
        description="Replies in order; when they run out the agent answers with a deterministic summary.",
    )
    latency_ms: float = Field(0.0, ge=0, le=600_000, description="Simulated latency of each call.")
    input_tokens: int = Field(40, ge=0, description="Reported input tokens per call.")
    output_tokens: int = Field(60, ge=0, description="Reported output tokens per call.")


class AgentConfig(BaseModel):
    """One agent of the team (`[agents.NAME]`)."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(..., min_length=1, description="What the agent is for; shown to the conductor.")
    instructions: str = Field(..., min_length=1, description="The agent's system prompt.")
    model: str = Field("auto", description=f"Which model runs the agent: {MODEL_FORMS}.")
    tools: list[str] = Field(default_factory=list, description="Tools the agent may use (globs).")
    group: str | None = Field(None, description="Group, for federated runs: context is isolated per group.")
    policy: str | None = Field(
        None, description="Policy preset or file overriding the team's for this agent."
    )
    routes: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Agents (or `group:NAME`) this agent may hand off or delegate to; `*` is anyone.",
    )
    max_tokens: int = Field(2048, ge=1, le=128_000, description="Longest reply of one model call, in tokens.")
    scripted: ScriptedSettings | None = Field(
        None, description="Replies and latency when `model = 'scripted'`."
    )

    @field_validator("model")
    @classmethod
    def _model_form(cls, value: str) -> str:
        if value in ("auto", "sampling", "host", "scripted"):
            return value
        if value.startswith("anthropic:") and len(value) > len("anthropic:"):
            return value
        raise ValueError(f"expected {MODEL_FORMS} (got {value!r})")


class McpServerConfig(BaseModel):
    """A downstream MCP server whose tools agents may use (`[mcp_servers.NAME]`), started lazily."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = Field(None, description="Executable to start (stdio transport).")
    args: list[str] = Field(default_factory=list, description="Arguments of `command`.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables set for `command`.")
    inherit_env: list[str] = Field(
        default_factory=list,
        description="Names of concertmaster's own environment variables passed on to `command`. Nothing else "
        "is inherited except the MCP SDK's safe list (PATH, HOME, USER, LOGNAME, SHELL, TERM; on Windows its "
        "equivalents): secrets such as ANTHROPIC_API_KEY never reach a tool server unless named here.",
    )
    cwd: str | None = Field(None, description="Working directory of `command`.")
    url: str | None = Field(None, description="Streamable HTTP endpoint, instead of `command`.")
    timeout_s: float = Field(30.0, gt=0, le=3600, description="Seconds one tool call may take.")
    startup_timeout_s: float = Field(20.0, gt=0, le=600, description="Seconds the server may take to start.")

    @field_validator("inherit_env")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not name or "=" in name or "\0" in name]
        if bad:
            raise ValueError(f"not environment variable names: {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of `command` (stdio) or `url` (streamable HTTP)")
        return self


PATTERN_NAMES = ("sequential", "concurrent", "handoff", "group_chat", "magentic", "plan")


class TeamSpec(BaseModel):
    """A sub-team (`[teams.NAME]`): a pattern over agents, usable wherever an agent name is (hierarchical)."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(..., min_length=1, description="What the team is for.")
    pattern: str = Field(
        ..., description=f"How its members work together: one of {', '.join(PATTERN_NAMES)}."
    )
    agents: list[str] = Field(..., min_length=1, description="Members: agent names or other teams' names.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the pattern.")
    group: str | None = Field(None, description="Group of the team as a whole, for federated runs.")
    routes: list[str] = Field(default_factory=lambda: ["*"], description="Who the team may hand off to.")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if value not in PATTERN_NAMES:
            raise ValueError(f"expected one of {', '.join(PATTERN_NAMES)} (got {value!r})")
        return value


class RunsConfig(BaseModel):
    """`[runs]`: what happens to runs when the server that ran them stops or dies."""

    model_config = ConfigDict(extra="forbid")

    resume: Literal["auto", "manual"] = Field(
        "auto",
        description="auto: a live server continues a run whose server stopped or died; manual: such a run is "
        "marked interrupted until you resume it (resume_run tool or `concertmaster resume RUN_ID`).",
    )
    max_auto_resumes: int = Field(
        3,
        ge=0,
        le=100,
        description="Automatic resumes of one run before it is left interrupted for a manual resume (a run "
        "that crashed the server this often is not started again by itself).",
    )
    lease_s: float = Field(
        15.0,
        ge=1,
        le=3600,
        description="Seconds a server's claim on a run lasts without renewal; after that another server may "
        "take the run over. Renewed every third of it.",
    )


class EngineConfig(BaseModel):
    """`[engine]`: where runs execute. `embedded` (default): in the serving process, durable through the audit;
    `temporal`: as Temporal workflows run by `concertmaster worker` processes on any machine."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["embedded", "temporal"] = Field(
        "embedded", description="embedded: runs execute in the server process; temporal: on Temporal workers."
    )
    address: str = Field(
        "127.0.0.1:7233",
        min_length=3,
        pattern=r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$",
        description="host:port of the Temporal frontend (kind = 'temporal').",
    )
    namespace: str = Field(
        "default", min_length=1, max_length=200, description="Temporal namespace the runs live in."
    )
    task_queue: str = Field(
        "concertmaster",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9._\-]+$",
        description="Task queue the workers poll for runs (workflows), model calls and tool calls.",
    )
    heartbeat_s: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="A worker running a model or tool call reports every quarter of this; a call not heard of "
        "for this long (its worker died) is given to another worker (model calls, read-only or idempotent tools) "
        "or reported as lost (other tools).",
    )


class TeamConfig(BaseModel):
    """The whole config file."""

    model_config = ConfigDict(extra="forbid")

    agents: dict[str, AgentConfig] = Field(..., description="The team, by name.")
    teams: dict[str, TeamSpec] = Field(
        default_factory=dict, description="Sub-teams usable as agents by a parent pattern (hierarchical)."
    )
    mcp_servers: dict[str, McpServerConfig] = Field(
        default_factory=dict, description="Downstream MCP servers whose tools agents may be granted."
    )
    policy: str = Field(
        "default", description="Policy preset (`default`, `strict`) or path to a policy file."
    )
    group_policies: dict[str, str] = Field(
        default_factory=dict, description="Policy overriding the team's for the agents of a group."
    )
    limits: Limits = Field(default_factory=Limits, description="Default guardrail limits of every run.")
    runs: RunsConfig = Field(default_factory=RunsConfig, description="Resuming runs after a restart.")
    engine: EngineConfig = Field(
        default_factory=EngineConfig, description="Where runs execute: embedded (default) or temporal."
    )
    default_model: str = Field(
        "claude-sonnet-4-5", description="Anthropic model used by `auto` agents when an API key is set."
    )
    source: str = Field("built-in default team", exclude=True, description="Where this config came from.")

    @model_validator(mode="after")
    def _names(self) -> TeamConfig:
        if not self.agents:
            raise ValueError("at least one agent is needed under [agents.NAME]")
        for name in [*self.agents, *self.teams]:
            if not AGENT_NAME.match(name):
                raise ValueError(
                    f"agent name {name!r} must be lowercase letters, digits, '-' or '_', starting with a letter"
                )
        clash = sorted(set(self.agents) & set(self.teams))
        if clash:
            raise ValueError(f"{', '.join(clash)}: a name cannot be both an agent and a team")
        members = {**self.agents, **self.teams}
        for name, spec in self.teams.items():
            unknown = [m for m in spec.agents if m not in members]
            if unknown:
                raise ValueError(
                    f"team {name!r} has unknown members {', '.join(unknown)}; known: {', '.join(sorted(members))}"
                )
        for name in self.teams:
            self._check_no_cycle(name, [])
        return self

    def _check_no_cycle(self, name: str, path: list[str]) -> None:
        if name in path:
            raise ValueError(f"teams contain each other in a cycle: {' -> '.join([*path, name])}")
        for member in self.teams[name].agents if name in self.teams else ():
            self._check_no_cycle(member, [*path, name])

    def member_names(self) -> list[str]:
        """Every name a pattern may use: agents and teams."""
        return [*self.agents, *self.teams]

    def routes(self) -> dict[str, list[str]]:
        return {
            **{n: a.routes for n, a in self.agents.items()},
            **{n: t.routes for n, t in self.teams.items()},
        }

    def groups(self) -> dict[str, str | None]:
        return {**{n: a.group for n, a in self.agents.items()}, **{n: t.group for n, t in self.teams.items()}}


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use: `--config`, else `CONCERTMASTER_CONFIG`, else None (built-in team)."""
    value = explicit or os.environ.get("CONCERTMASTER_CONFIG")
    return Path(value).expanduser() if value else None


def load_config(path: str | os.PathLike[str] | None = None) -> TeamConfig:
    """Read and validate the team config, or the built-in default team when no path is given."""
    file = config_path(path)
    source = file if file is not None else DEFAULT_TEAM_FILE
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"config file {source} does not exist; fix --config / CONCERTMASTER_CONFIG"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {source} cannot be read: it is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except RecursionError:
        raise ConfigError(f"config file {source} nests tables or arrays too deeply to read") from None
    except OSError as exc:
        raise ConfigError(f"config file {source} cannot be read: {exc.strerror}") from None
    try:
        config = TeamConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"config file {source}: {describe_validation_error(exc)}") from None
    except RecursionError:
        raise ConfigError(f"config file {source} nests values too deeply to validate") from None
    return config.model_copy(update={"source": str(file) if file else "built-in default team"})


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Any, what: str = "") -> M:
    """`data` as a `model`, or `InvalidInputError` naming each bad field and what it expects."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message = describe_validation_error(exc)
        raise InvalidInputError(f"{what}: {message}" if what else message) from None


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """One line per problem: the field path, what is expected, what was given."""
    lines = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        elif err["type"] == "missing":
            msg = "required field is missing"
        given = err.get("input")
        shown = "" if err["type"] in ("missing",) or isinstance(given, dict) else f" (got {given!r:.80})"
        lines.append(f"{where}: {msg}{shown}")
    more = len(exc.errors()) - limit
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)
