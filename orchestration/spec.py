"""The one description of a run: `RunSpec`.

A run is fully described by one validated value, stored with the run (`runs.spec`). Tools, the Python library,
resume after a restart and sub-teams build a run from it and from nothing else, so adding a pattern touches
the pattern module and its tool only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestration.errors import InvalidInputError, UnknownAgentError
from orchestration.patterns.registry import build
from policies.limits import Limits

if TYPE_CHECKING:
    from orchestration.config import TeamConfig
    from orchestration.context import RunBody

SPEC_VERSION = 1
"""Bumped when the stored form changes; `RunSpec.load` migrates older forms or refuses them clearly."""

Control = Literal["centralized", "decentralized", "federated", "hierarchical"]


class RunSpec(BaseModel):
    """Everything needed to (re)build a run: pattern, members, task, options, limits, control."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(SPEC_VERSION, description="Schema version of this description.")
    pattern: str = Field(..., min_length=1, description="The pattern's name (see `patterns.registry`).")
    members: tuple[str, ...] = Field(..., description="Agent or team names, in pattern order.")
    task: str = Field(..., min_length=1, description="What the run is asked to do.")
    options: dict[str, Any] = Field(default_factory=dict, description="The pattern's own options.")
    limits: Limits | None = Field(
        None, description="Guardrails of this run, whole; None: the configured limits when it starts."
    )
    control: Control = Field("centralized", description="The model of control.")

    def build(self) -> RunBody:
        """The run body of this spec (validates the pattern's options)."""
        return build(self.pattern, list(self.members), self.task, self.options)

    def with_limits(self, limits: Limits) -> RunSpec:
        """This spec with its limits resolved (what is stored with the run)."""
        return self.model_copy(update={"limits": limits})

    def dump(self) -> str:
        """The stored form (JSON)."""
        return self.model_dump_json()

    @classmethod
    def load(cls, raw: str | dict[str, Any]) -> RunSpec:
        """A stored spec, migrated from older versions; `InvalidInputError` saying why when it can't be."""
        try:
            data = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"the stored run description is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InvalidInputError("the stored run description is not an object")
        version = data.get("version", 0)
        if version == 0:  # a pre-RunSpec `recipe` (pattern, members, options), migrated by `from_recipe`
            raise InvalidInputError("a version-0 run description needs its run row; use RunSpec.from_legacy")
        if version != SPEC_VERSION:
            raise InvalidInputError(
                f"the run was recorded by a newer concertmaster (run description version {version}; "
                f"this one reads {SPEC_VERSION}); resume it with that version"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidInputError(
                f"the stored run description is invalid: {exc.errors()[0]['msg']}"
            ) from None

    @classmethod
    def from_legacy(cls, row: dict[str, Any]) -> RunSpec | None:
        """The spec of a run recorded before run descriptions existed (its `options` held a `recipe`)."""
        try:
            options = json.loads(row.get("options") or "{}")
        except ValueError:
            return None
        recipe = options.get("recipe") if isinstance(options, dict) else None
        if not isinstance(recipe, dict) or "pattern" not in recipe:
            return None
        try:
            return cls(
                pattern=recipe["pattern"],
                members=tuple(recipe.get("members") or ()),
                task=row["input"],
                options=recipe.get("options") or {},
                control=row.get("control") or "centralized",
            )
        except ValidationError:
            return None


def check_members(config: TeamConfig, spec: RunSpec) -> None:
    """Every member the spec names must be in the team config (a resumed run whose agent was removed from the
    config fails with the name and the fix)."""
    known = config.member_names()
    for name in spec.members:
        if name not in known:
            raise UnknownAgentError(name, known)
