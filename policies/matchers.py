"""Matchers compiled from a rule: globs over names, conditions over arguments and annotations.

Two kinds, so the engine can remember the first: name checks depend only on (agent, group, tool); call
checks look at the call's annotations and arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from policies import linear
from policies.schema import GLOB_CHARS, ArgMatch, Rule

if TYPE_CHECKING:
    from policies.engine import Action

Check = Callable[["Action"], bool]
"""A check over one tool call."""


def _globs(patterns: Iterable[str]) -> linear.LinearPattern:
    """One pattern matching a whole name when any of the globs does (linear time: names can be hostile)."""
    return linear.globs(patterns)


def _same(a: object, b: object) -> bool:
    # Python says True == 1; a policy must not: `equals = true` is not the number 1.
    return (type(a) is bool) == (type(b) is bool) and a == b


def _text(value: Any) -> str:
    """An argument as text for glob and regex conditions."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)  # true / false / null, as the model wrote them
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        # A command given as a list of words reads as the command line: ["rm", "-rf", "/"] -> "rm -rf /".
        return " ".join(_text(v) for v in value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _value_check(cond: ArgMatch) -> Callable[[Any], bool] | None:
    """A predicate over an argument's value, or None when the condition only asks about presence."""
    tests: list[Callable[[Any], bool]] = []
    if cond.equals is not None:
        equals = cond.equals
        tests.append(lambda v: _same(v, equals))
    if cond.one_of is not None:
        one_of = cond.one_of
        tests.append(lambda v: any(_same(v, o) for o in one_of))
    if cond.glob is not None:
        glob = _globs([cond.glob])
        tests.append(lambda v: glob.fullmatch(_text(v)))
    if cond.regex is not None:
        regex = linear.compile_pattern(cond.regex)  # RE2: linear in the (model-written) argument
        tests.append(lambda v: regex.search(_text(v)))
    if cond.gt is not None:
        gt = cond.gt
        tests.append(lambda v: (n := _number(v)) is not None and n > gt)
    if cond.lt is not None:
        lt = cond.lt
        tests.append(lambda v: (n := _number(v)) is not None and n < lt)
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda v: all(t(v) for t in tests)


def argument_check(name: str, cond: ArgMatch) -> Check:
    value_ok = _value_check(cond)
    exists = cond.exists
    if not GLOB_CHARS & set(name):  # the common case: one named argument, a dict lookup

        def named(action: Action) -> bool:
            present = name in action.arguments
            if exists is not None and exists != present:
                return False
            return value_ok is None or (present and value_ok(action.arguments[name]))

        return named

    if name == "*" and exists is None and value_ok is not None:  # "any argument": the presets' deny rules

        def any_value(action: Action) -> bool:
            return any(value_ok(v) for v in action.arguments.values())

        return any_value

    names = _globs([name])

    def any_named(action: Action) -> bool:
        values = [v for k, v in action.arguments.items() if names.fullmatch(k)]
        if exists is not None and exists != bool(values):
            return False
        return value_ok is None or any(value_ok(v) for v in values)

    return any_named


NameCheck = Callable[[str, "str | None", str], bool]
"""A check over (agent, group, tool) alone."""


def name_check(rule: Rule) -> NameCheck | None:
    """The rule's agents / groups / tools globs as one check over (agent, group, tool); None if it has none."""
    tools = None if rule.tools is None else _globs(rule.tools)
    agents = None if rule.agents is None else _globs(rule.agents)
    groups = None if rule.groups is None else _globs(rule.groups)
    if tools is None and agents is None and groups is None:
        return None

    def check(agent: str, group: str | None, tool: str) -> bool:
        return (
            (tools is None or tools.fullmatch(tool))
            and (agents is None or agents.fullmatch(agent))
            and (groups is None or (group is not None and groups.fullmatch(group)))
        )

    return check


def call_checks(rule: Rule) -> tuple[Check, ...]:
    """One check per annotation / unknown / argument matcher; cheap ones first (the first failure ends it)."""
    checks: list[Check] = []
    if rule.annotations:
        wanted = tuple(rule.annotations.items())
        # `is`: an annotation must be declared with exactly this bool; absent (None) never matches.
        if len(wanted) == 1:
            ((hint, value),) = wanted
            checks.append(lambda a: a.annotations.get(hint) is value)
        else:
            checks.append(lambda a: all(a.annotations.get(k) is v for k, v in wanted))
    if rule.unknown is not None:
        unknown = rule.unknown

        def declares(a: Action) -> bool:
            hints = a.annotations
            is_unknown = hints.get("readOnlyHint") is None and hints.get("destructiveHint") is None
            return is_unknown == unknown

        checks.append(declares)
    for name, cond in (rule.arguments or {}).items():
        checks.append(argument_check(name, cond))
    return tuple(checks)
