"""What every run-starting tool shares: argument types, member and limit checks, start-then-follow."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from orchestration.errors import InvalidInputError, UnknownAgentError
from orchestration.runtime import Runtime
from orchestration.spec import RunSpec
from policies.limits import Limits
from server.app import state
from server.bridge import sampler_for
from server.follow import MAX_WAIT_SECONDS, follow_run, resume_followed
from server.principals import current_principal, own_run
from server.schemas import RunResult

MAX_TASK_CHARS = 100_000

RUN_STARTER = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)

Task = Annotated[str, Field(min_length=1, max_length=MAX_TASK_CHARS, description="What to do.")]
Members = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(min_length=1, max_length=1000),
    WithJsonSchema(
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Agent or team names."}
    ),
]
WaitSeconds = Annotated[
    float | None,
    Field(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Wait this long, then return (default 20); the run goes on.",
    ),
]
Control = Annotated[
    Literal["centralized", "decentralized", "federated", "hierarchical"] | None,
    Field(
        description="centralized (default), decentralized (agents route), federated (groups see only their "
        "own) or hierarchical (teams in teams)."
    ),
]


def _overrides_of(model: type[BaseModel]) -> type[BaseModel]:
    """`model` with every field optional (None keeps the configured value): the per-call overrides, generated
    from the limits model so a new limit needs no second declaration."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        optional = copy.copy(info)
        optional.default = None
        fields[name] = (info.annotation | None, optional)  # type: ignore[operator]
    return create_model(
        "LimitOverrides",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Guardrails for this run, replacing the configured ones; omitted fields keep the config's value.",
        **fields,
    )


if TYPE_CHECKING:
    LimitOverrides = BaseModel
else:
    LimitOverrides = _overrides_of(Limits)

LIMITS_SCHEMA = {
    "type": "object",
    "description": f"Guardrail overrides, as in config [limits]: {', '.join(Limits.model_fields)}.",
}
# The same limits in six tools were a third of what the host model reads of tools/list: the schema it sees is
# this one line; the arguments are still validated by LimitOverrides (bounds, unknown names).
LimitsArg = Annotated[LimitOverrides | None, WithJsonSchema(LIMITS_SCHEMA)]


def check_task(task: str, field: str = "task") -> str:
    """Refuse a blank task (pydantic already refused an empty or oversize one)."""
    if not task.strip():
        raise InvalidInputError(f"{field} is blank; describe what should be done")
    return task


def check_members(rt: Runtime, names: Sequence[str], field: str = "agents") -> list[str]:
    """Members must be known agents or teams, each once."""
    known = rt.config.member_names()
    for name in names:
        if name not in known:
            raise UnknownAgentError(name, known)
    seen: set[str] = set()
    repeated = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if repeated:
        raise InvalidInputError(
            f"{field} lists {', '.join(sorted(set(repeated)))} more than once; list each once"
        )
    return list(names)


def check_member(rt: Runtime, name: str | None) -> str | None:
    """An optional single member (judge, manager, planner...) must be known."""
    if name is not None and name not in rt.config.member_names():
        raise UnknownAgentError(name, rt.config.member_names())
    return name


def limits_for(rt: Runtime, overrides: LimitOverrides | None) -> Limits:
    """The configured limits with this call's overrides applied."""
    if overrides is None:
        return rt.limits
    return rt.limits.merged(**overrides.model_dump())  # None fields keep the configured values


async def followed_retry(
    ctx: Context[Any, Any], wait_seconds: float | None
) -> RunResult | InputRequiredResult | None:
    """A 2026-07-28 client's retry after `input_required` continues the run it follows (never starts another)."""
    run_id = await resume_followed(ctx)
    if run_id is None:
        return None
    own_run(ctx, run_id)
    return await follow_run(ctx, run_id, _wait(ctx, wait_seconds))


async def start_and_follow(
    ctx: Context[Any, Any],
    spec: RunSpec,
    *,
    wait_seconds: float | None,
    limits: LimitOverrides | None = None,
) -> RunResult | InputRequiredResult:
    """Start the run `spec` describes (with this call's limit overrides) and follow it for up to
    `wait_seconds`."""
    rt = state(ctx).runtime
    run_limits = limits_for(rt, limits)
    run_id = await rt.start(
        spec.with_limits(run_limits),
        sampler=sampler_for(ctx, rt.pending, run_limits.step_timeout_s),
        principal=current_principal().name,
    )
    return await follow_run(ctx, run_id, _wait(ctx, wait_seconds))


def _wait(ctx: Context[Any, Any], wait_seconds: float | None) -> float:
    return state(ctx).settings.default_wait_seconds if wait_seconds is None else wait_seconds
