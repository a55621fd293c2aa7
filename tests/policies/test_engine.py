"""The engine: first match wins, every matcher, argument conditions, unknown tools, purity."""

from __future__ import annotations

import copy
import gc
from typing import Any

import pytest

from policies.engine import CompiledPolicy, Decision, compile_policy, evaluate, matches
from policies.schema import Rule
from tests.policies.support import DESTRUCTIVE, READ, WRITE, act, policy


def test_first_matching_rule_wins_and_the_default_applies_otherwise() -> None:
    p = policy(
        default="deny",
        default_reason="nothing allows it",
        rules=[
            {"name": "first", "decision": "allow", "tools": ["files.*"]},
            {"name": "second", "decision": "require_approval", "tools": ["files.delete*"]},
        ],
    )
    assert evaluate(p, act("files.delete_file")).rule == "first"
    assert evaluate(p, act("mail.send")) == Decision("deny", None, "nothing allows it")


def test_a_decision_carries_the_rules_reason_human_only_and_ttl() -> None:
    p = policy(
        rules=[
            {
                "name": "careful",
                "decision": "require_approval",
                "reason": "prod",
                "human_only": True,
                "approval_ttl_s": 60,
            },
        ]
    )
    assert evaluate(p, act("a.b")) == Decision("require_approval", "careful", "prod", True, 60.0)


def test_a_rule_without_a_reason_names_itself() -> None:
    p = policy(rules=[{"name": "plain", "decision": "deny"}])
    assert evaluate(p, act("a.b")).reason == "rule plain"


def test_a_rule_matches_only_when_all_its_matchers_match() -> None:
    p = policy(
        default="allow",
        rules=[{"name": "both", "decision": "deny", "agents": ["intern-*"], "tools": ["*.delete_*"]}],
    )
    assert evaluate(p, act("files.delete_file", agent="intern-1")).outcome == "deny"
    assert evaluate(p, act("files.read_file", agent="intern-1")).outcome == "allow"
    assert evaluate(p, act("files.delete_file", agent="senior")).outcome == "allow"


@pytest.mark.parametrize(
    ("rule", "action", "expected"),
    [
        ({"agents": ["intern-*"]}, act("a.b", agent="intern-3"), True),
        ({"agents": ["intern-*"]}, act("a.b", agent="internal"), False),
        ({"agents": ["writer", "editor"]}, act("a.b", agent="editor"), True),
        ({"groups": ["fin*"]}, act("a.b", group="finance"), True),
        ({"groups": ["fin*"]}, act("a.b", group="research"), False),
        ({"groups": ["*"]}, act("a.b", group=None), False),  # no group never matches a group glob
        ({"tools": ["files.*"]}, act("files.read_file"), True),
        ({"tools": ["files.*"]}, act("filesystem.read_file"), False),
        ({"tools": ["*.delete_*"]}, act("files.delete_file"), True),
        ({"tools": ["*.delete_*"]}, act("files.undelete"), False),
        ({"tools": ["db.query"]}, act("db.query"), True),
        ({"tools": ["db.query"]}, act("db.query_all"), False),  # globs match the whole name
        ({"annotations": {"destructiveHint": True}}, act("a.b", DESTRUCTIVE), True),
        ({"annotations": {"destructiveHint": True}}, act("a.b", READ), False),  # missing: no match
        ({"annotations": {"readOnlyHint": False}}, act("a.b", WRITE), True),
        ({"annotations": {"readOnlyHint": False}}, act("a.b", {}), False),  # missing is not false
        (
            {"annotations": {"openWorldHint": True, "idempotentHint": True}},
            act("a.b", {"openWorldHint": True}),
            False,
        ),
        ({"unknown": True}, act("a.b", {}), True),
        ({"unknown": True}, act("a.b", {"openWorldHint": True, "idempotentHint": True}), True),
        ({"unknown": True}, act("a.b", READ), False),
        ({"unknown": True}, act("a.b", {"destructiveHint": False}), False),
        ({"unknown": False}, act("a.b", WRITE), True),
        ({"unknown": False}, act("a.b", {}), False),
        ({}, act("anything.at_all"), True),  # no matchers: a catch-all
    ],
)
def test_each_matcher(rule: dict[str, Any], action: Any, expected: bool) -> None:
    assert matches(Rule.model_validate({"name": "r", "decision": "deny", **rule}), action) is expected
    p = policy(default="allow", rules=[{"name": "r", "decision": "deny", **rule}])
    assert (evaluate(p, action).outcome == "deny") is expected


@pytest.mark.parametrize(
    ("condition", "arguments", "expected"),
    [
        ({"equals": "prod"}, {"env": "prod"}, True),
        ({"equals": "prod"}, {"env": "Prod"}, False),  # exact, case included
        ({"equals": 3}, {"env": 3.0}, True),
        ({"equals": True}, {"env": 1}, False),  # true is not the number 1
        ({"equals": 1}, {"env": True}, False),
        ({"equals": "x"}, {}, False),
        ({"glob": "*.env"}, {"env": "secrets.env"}, True),
        ({"glob": "*.env"}, {"env": "secrets.env.bak"}, False),
        ({"glob": "/etc/*"}, {"env": ["/etc/passwd"]}, True),
        ({"regex": "(?i)drop"}, {"env": "please DROP it"}, True),
        ({"regex": "^rm -rf /$"}, {"env": ["rm", "-rf", "/"]}, True),  # a list of words reads as a line
        ({"regex": "secret"}, {"env": {"nested": "top secret"}}, True),  # other values as JSON
        ({"regex": "^42$"}, {"env": 42}, True),
        ({"one_of": ["a", "b"]}, {"env": "b"}, True),
        ({"one_of": ["a", "b"]}, {"env": "c"}, False),
        ({"one_of": [1, 2]}, {"env": True}, False),
        ({"gt": 100}, {"env": 250}, True),
        ({"gt": 100}, {"env": 100}, False),
        ({"gt": 100}, {"env": "250"}, True),  # numeric strings count as numbers
        ({"gt": 100}, {"env": "99"}, False),
        ({"gt": 0}, {"env": True}, False),  # a bool is not a number
        ({"lt": 10}, {"env": 3.5}, True),
        ({"lt": 10}, {"env": "not a number"}, False),
        ({"lt": 10}, {"env": None}, False),
        ({"gt": 1, "lt": 10}, {"env": 5}, True),  # several conditions: all must hold
        ({"gt": 1, "lt": 10}, {"env": 50}, False),
        ({"exists": True}, {"env": None}, True),
        ({"exists": True}, {}, False),
        ({"exists": False}, {}, True),
        ({"exists": False}, {"env": "x"}, False),
        ({"exists": True, "equals": "x"}, {"env": "y"}, False),
        ({"glob": "*"}, {}, False),  # a value condition never matches an absent argument
    ],
)
def test_argument_matchers(condition: dict[str, Any], arguments: dict[str, Any], expected: bool) -> None:
    p = policy(default="allow", rules=[{"name": "r", "decision": "deny", "arguments": {"env": condition}}])
    assert (evaluate(p, act("x.y", **arguments)).outcome == "deny") is expected


@pytest.mark.parametrize(
    ("name", "condition", "arguments", "expected"),
    [
        ("*", {"regex": "rm -rf"}, {"cmd": "ls", "script": "rm -rf /"}, True),
        ("*", {"regex": "rm -rf"}, {"cmd": "ls"}, False),
        ("*path*", {"glob": "/etc/*"}, {"src_path": "/etc/shadow"}, True),
        ("*path*", {"glob": "/etc/*"}, {"name": "/etc/shadow"}, False),
        ("*", {"exists": True}, {}, False),
        ("*", {"exists": False}, {}, True),
        ("*", {"exists": False}, {"a": 1}, False),
    ],
)
def test_a_glob_argument_name_matches_any_argument_it_names(
    name: str, condition: dict[str, Any], arguments: dict[str, Any], expected: bool
) -> None:
    p = policy(default="allow", rules=[{"name": "r", "decision": "deny", "arguments": {name: condition}}])
    assert (evaluate(p, act("x.y", **arguments)).outcome == "deny") is expected


def test_several_arguments_must_all_match() -> None:
    p = policy(
        default="allow",
        rules=[
            {
                "name": "big-prod-payment",
                "decision": "deny",
                "arguments": {"amount": {"gt": 1000}, "currency": {"one_of": ["USD", "EUR"]}},
            }
        ],
    )
    assert evaluate(p, act("bank.pay", amount=5000, currency="EUR")).outcome == "deny"
    assert evaluate(p, act("bank.pay", amount=5000, currency="JPY")).outcome == "allow"
    assert evaluate(p, act("bank.pay", amount=5, currency="EUR")).outcome == "allow"


def test_the_engine_is_pure_and_deterministic() -> None:
    p = policy(
        rules=[
            {"name": "args", "decision": "deny", "arguments": {"path": {"glob": "/etc/*"}}},
            {"name": "reads", "decision": "allow", "annotations": {"readOnlyHint": True}},
        ]
    )
    actions = [
        act("files.read_file", READ, path="/etc/passwd"),
        act("files.read_file", READ, path="notes.md"),
        act("files.delete_file", DESTRUCTIVE, path="notes.md"),
    ]
    before = (p.model_dump(), copy.deepcopy(actions))
    first = [evaluate(p, a) for a in actions]
    for _ in range(3):
        assert [evaluate(p, a) for a in reversed(actions)] == first[::-1]
    # The same policy content in a fresh object decides the same, and nothing was changed.
    fresh = type(p).model_validate(p.model_dump())
    assert [evaluate(fresh, a) for a in actions] == first
    assert (p.model_dump(), actions) == before
    assert [d.outcome for d in first] == ["deny", "allow", "require_approval"]


def test_a_policy_is_compiled_once_and_its_compiled_form_leaves_with_it() -> None:
    p = policy(rules=[{"name": "r", "decision": "allow", "tools": ["a.*"]}])
    compiled = compile_policy(p)
    assert isinstance(compiled, CompiledPolicy) and compile_policy(p) is compiled
    assert compiled.compiled_from(p)
    other = policy(rules=[{"name": "r", "decision": "deny", "tools": ["a.*"]}])
    assert compile_policy(other) is not compiled and evaluate(other, act("a.b")).outcome == "deny"
    del p
    gc.collect()
    assert not compiled.compiled_from(other)


def test_a_loaded_policy_cannot_be_changed_under_its_compiled_form() -> None:
    p = policy(rules=[{"name": "r", "decision": "allow"}])
    with pytest.raises(ValueError, match="frozen"):
        p.default = "allow"  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        p.rules[0].decision = "deny"  # type: ignore[misc]


def test_remembered_rules_per_tool_never_change_a_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    import policies.engine

    monkeypatch.setattr(policies.engine, "_MAX_REMEMBERED", 2)  # forgets often: decisions must not change
    p = policy(
        default="allow",
        rules=[
            {"name": "interns", "decision": "deny", "agents": ["intern-*"], "tools": ["files.*"]},
            {
                "name": "big",
                "decision": "require_approval",
                "tools": ["files.*"],
                "arguments": {"n": {"gt": 5}},
            },
            {"name": "destructive", "decision": "require_approval", "annotations": {"destructiveHint": True}},
        ],
    )
    cases = [
        (act("files.write", agent="intern-1"), "interns"),
        (act("files.write", agent="clerk", n=9), "big"),
        (act("files.write", agent="clerk", n=1), None),
        (act("files.write", DESTRUCTIVE, agent="clerk", n=1), "destructive"),
        (act("mail.send", DESTRUCTIVE, agent="intern-1", n=9), "destructive"),
        (act("mail.send", agent="intern-1", n=9), None),
    ]
    for _ in range(3):
        assert [evaluate(p, a).rule for a, _ in cases] == [rule for _, rule in cases]
