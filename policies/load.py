"""Loading policies: presets by name or files by path; merging overrides; describing the effective policy."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from policies.schema import Policy

PRESETS = Path(__file__).with_name("presets")


class PolicyError(ValueError):
    """A policy that cannot be loaded; the message names the file, the rule and the field."""


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.toml"))


def load_policy(ref: str) -> Policy:
    """A preset (`default`, `strict`) or a TOML file path."""
    path = PRESETS / f"{ref}.toml" if ref in preset_names() else Path(ref).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(
            f"no policy {ref!r}: not a preset ({', '.join(preset_names())}) and no file at {path}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path} is not valid TOML: {exc}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"policy file {path}: {_describe(exc, data)}") from None


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            rules = data.get("rules") or []
            name = (
                rules[loc[1]].get("name") if loc[1] < len(rules) and isinstance(rules[loc[1]], dict) else None
            )
            rest = ".".join(str(p) for p in loc[2:])
            where = f"rules[{loc[1]}]" + (f" ({name})" if name else "") + (f".{rest}" if rest else "")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "literal_error":
            msg = f"expected {err['ctx']['expected']}"
        given = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(given, dict) else f" (got {given!r:.60})"
        parts.append(f"{where}: {msg}{shown}")
    return "; ".join(parts)


def merge(base: Policy, override: Policy) -> Policy:
    """`override` on top of `base`: its rules first, then base's; its limits fields replace base's."""
    limits = base.limits
    if override.limits is not None:
        limits = (
            override.limits
            if base.limits is None
            else base.limits.merged(**override.limits.model_dump(exclude_unset=True))
        )
    names = {r.name for r in override.rules}
    return Policy(
        name=f"{base.name}+{override.name}",
        description=override.description or base.description,
        default=override.default if "default" in override.model_fields_set else base.default,
        default_reason=override.default_reason
        if "default_reason" in override.model_fields_set
        else base.default_reason,
        rules=[*override.rules, *(r for r in base.rules if r.name not in names)],
        limits=limits,
        on_budget=override.on_budget if "on_budget" in override.model_fields_set else base.on_budget,
        on_denied=override.on_denied if "on_denied" in override.model_fields_set else base.on_denied,
        redaction=type(base.redaction)(
            patterns=[*base.redaction.patterns, *override.redaction.patterns],
            secret_env=[*base.redaction.secret_env, *override.redaction.secret_env],
        ),
    )


def describe(policy: Policy) -> str:
    """The effective policy in a few lines, for `concertmaster config check`."""
    lines = [
        f"policy {policy.name}: default {policy.default}; on_budget={policy.on_budget}, "
        f"on_denied={policy.on_denied}"
    ]
    for rule in policy.rules:
        what = []
        for field in ("agents", "groups", "tools"):
            value = getattr(rule, field)
            if value is not None:
                what.append(f"{field}={','.join(value)}")
        if rule.annotations:
            what.append(" ".join(f"{k}={str(v).lower()}" for k, v in rule.annotations.items()))
        if rule.unknown is not None:
            what.append(f"unknown={str(rule.unknown).lower()}")
        if rule.arguments:
            what.append("arguments: " + ", ".join(rule.arguments))
        human = " (human only)" if rule.human_only else ""
        lines.append(f"  {rule.name}: {rule.decision}{human} when {' and '.join(what) or 'always'}")
    if policy.limits is not None:
        lines.append(
            "  limits: "
            + ", ".join(f"{k}={v}" for k, v in policy.limits.model_dump(exclude_unset=True).items())
        )
    return "\n".join(lines)
