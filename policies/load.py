"""Loading policies: presets by name or files by path; merging overrides; describing the effective policy."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from policies.limits import Limits
from policies.schema import ArgMatch, Policy, Redaction

PRESETS = Path(__file__).with_name("presets")


class PolicyError(ValueError):
    """A policy that cannot be loaded; the message names the file, the rule and the field."""


def preset_names() -> list[str]:
    """Names of the built-in policies (`policies/presets/*.toml`)."""
    return sorted(p.stem for p in PRESETS.glob("*.toml"))


def load_policy(name_or_path: str | Path) -> Policy:
    """A preset by name (`default`, `strict`) or a policy TOML file by path; raises `PolicyError`."""
    ref = str(name_or_path)
    path = PRESETS / f"{ref}.toml" if ref in preset_names() else Path(ref).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(
            f"no policy {ref!r}: not a preset ({', '.join(preset_names())}) and no file at {path}"
        ) from None
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"policy file {path} cannot be read: it is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise PolicyError(f"policy file {path} nests tables or arrays too deeply to read") from None
    data.setdefault("name", path.stem)  # a file without a name is called after itself
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"policy file {path}: {_describe(exc, data)}") from None
    except RecursionError:
        raise PolicyError(f"policy file {path} nests values too deeply to validate") from None


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    """Pydantic's errors as `rules[2] (name).field: what is wrong (got …)`, the first five."""
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
    """`override` on top of `base` (a group's or an agent's policy over the team's).

    Override rules go first, then base rules (a base rule named like an override rule is replaced by it);
    the limits fields the override sets replace the base's; `default`, `on_budget`, `on_denied` come from
    the override only when it sets them; redaction patterns and secret env vars add up.
    """
    limits = base.limits
    if override.limits is not None:
        # Only the fields each file sets, so an unset override field never resets a base value to a default.
        limits = Limits.model_validate(
            {
                **(base.limits.model_dump(exclude_unset=True) if base.limits else {}),
                **override.limits.model_dump(exclude_unset=True),
            }
        )
    names = {r.name for r in override.rules}

    def pick(name: str) -> Any:
        return getattr(override if name in override.model_fields_set else base, name)

    return Policy(
        name=f"{base.name}+{override.name}",
        description=override.description or base.description,
        default=pick("default"),
        default_reason=pick("default_reason"),
        rules=(*override.rules, *(r for r in base.rules if r.name not in names)),
        limits=limits,
        on_budget=pick("on_budget"),
        on_denied=pick("on_denied"),
        redaction=Redaction(
            patterns=tuple(dict.fromkeys((*base.redaction.patterns, *override.redaction.patterns))),
            secret_env=tuple(dict.fromkeys((*base.redaction.secret_env, *override.redaction.secret_env))),
        ),
    )


def _condition(name: str, cond: ArgMatch) -> str:
    """One argument condition in words, e.g. `amount > 100`, `any argument =~ /rm -rf/`."""
    who = "any argument" if name == "*" else name
    parts = []
    if cond.exists is not None:
        parts.append(f"{who} {'present' if cond.exists else 'absent'}")
    if cond.equals is not None:
        parts.append(f"{who} == {cond.equals!r}")
    if cond.one_of is not None:
        parts.append(f"{who} in {list(cond.one_of)!r}")
    if cond.glob is not None:
        parts.append(f"{who} like {cond.glob}")
    if cond.regex is not None:
        parts.append(f"{who} =~ /{cond.regex}/")  # as written in the file, not re-escaped
    if cond.gt is not None:
        parts.append(f"{who} > {cond.gt:g}")
    if cond.lt is not None:
        parts.append(f"{who} < {cond.lt:g}")
    return " and ".join(parts)


def describe(policy: Policy) -> str:
    """The effective policy, for `concertmaster config check`: one line per rule in order, then the limits."""
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
        for name, cond in (rule.arguments or {}).items():
            what.append(_condition(name, cond))
        human = " (human only)" if rule.human_only else ""
        lines.append(f"  {rule.name}: {rule.decision}{human} when {' and '.join(what) or 'always'}")
    lines.append(f"  otherwise: {policy.default} ({policy.default_reason})")
    if policy.limits is not None:
        lines.append(
            "  limits: "
            + ", ".join(f"{k}={v}" for k, v in policy.limits.model_dump(exclude_unset=True).items())
        )
    else:
        lines.append("  limits: the team's")
    return "\n".join(lines)
