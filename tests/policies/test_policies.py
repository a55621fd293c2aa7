"""The policy engine, the presets, loading errors and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.engine import Action, evaluate
from policies.load import PolicyError, describe, load_policy, merge
from policies.schema import Policy

READ = {"readOnlyHint": True}
DESTRUCTIVE = {"destructiveHint": True, "readOnlyHint": False}


def act(
    tool: str, annotations: dict | None = None, agent: str = "clerk", group: str | None = None, **arguments
):
    return Action(agent=agent, group=group, tool=tool, annotations=annotations or {}, arguments=arguments)


def policy(**data) -> Policy:
    return Policy.model_validate(data)


def test_first_matching_rule_wins_and_default_applies_otherwise() -> None:
    p = policy(
        default="deny",
        rules=[
            {"name": "first", "decision": "allow", "tools": ["files.*"]},
            {"name": "second", "decision": "require_approval", "tools": ["files.delete*"]},
        ],
    )
    assert evaluate(p, act("files.delete_file")).rule == "first"
    decision = evaluate(p, act("mail.send"))
    assert (decision.outcome, decision.rule) == ("deny", None)


@pytest.mark.parametrize(
    ("condition", "arguments", "expected"),
    [
        ({"equals": "prod"}, {"env": "prod"}, True),
        ({"equals": "prod"}, {"env": "dev"}, False),
        ({"glob": "*.env"}, {"env": "secrets.env"}, True),
        ({"regex": "(?i)drop"}, {"env": "please DROP it"}, True),
        ({"one_of": ["a", "b"]}, {"env": "b"}, True),
        ({"one_of": ["a", "b"]}, {"env": "c"}, False),
        ({"gt": 100}, {"env": 250}, True),
        ({"gt": 100}, {"env": "99"}, False),
        ({"lt": 10}, {"env": 3.5}, True),
        ({"lt": 10}, {"env": "not a number"}, False),
        ({"exists": True}, {}, False),
        ({"exists": False}, {}, True),
        ({"glob": "*"}, {}, False),
    ],
)
def test_argument_matchers(condition: dict, arguments: dict, expected: bool) -> None:
    p = policy(default="allow", rules=[{"name": "r", "decision": "deny", "arguments": {"env": condition}}])
    assert (evaluate(p, act("x.y", **arguments)).outcome == "deny") is expected


def test_agents_groups_annotations_and_unknown_tools() -> None:
    p = policy(
        default="allow",
        rules=[
            {"name": "interns", "decision": "deny", "agents": ["intern-*"]},
            {"name": "finance", "decision": "require_approval", "groups": ["finance"]},
            {"name": "destructive", "decision": "require_approval", "annotations": {"destructiveHint": True}},
            {"name": "unknown", "decision": "deny", "unknown": True},
        ],
    )
    assert evaluate(p, act("a.b", READ, agent="intern-3")).rule == "interns"
    assert evaluate(p, act("a.b", READ, group="finance")).rule == "finance"
    assert evaluate(p, act("a.b", DESTRUCTIVE)).rule == "destructive"
    assert evaluate(p, act("a.b", {})).rule == "unknown"
    assert evaluate(p, act("a.b", READ)).outcome == "allow"


@pytest.mark.parametrize(
    ("preset", "action", "outcome", "human_only"),
    [
        ("default", act("files.read_file", READ), "allow", False),
        ("default", act("files.delete_file", DESTRUCTIVE), "require_approval", False),
        ("default", act("files.write_file"), "require_approval", False),
        ("default", act("shell.run", READ, command="rm -rf /"), "deny", False),
        ("default", act("db.query", READ, sql="drop table users"), "deny", False),
        ("default", act("ops.deploy", {}, environment="production"), "require_approval", False),
        ("default", act("bank.pay_invoice", {}), "require_approval", False),
        ("strict", act("files.read_file", READ), "allow", False),
        ("strict", act("files.delete_file", DESTRUCTIVE), "require_approval", True),
        ("strict", act("ops.deploy", {}, environment="prod"), "require_approval", True),
        ("strict", act("files.write_file"), "deny", False),
    ],
)
def test_presets_behave_as_documented(preset: str, action: Action, outcome: str, human_only: bool) -> None:
    decision = evaluate(load_policy(preset), action)
    assert (decision.outcome, decision.human_only) == (outcome, human_only)


def test_an_override_goes_first_and_replaces_limits(tmp_path: Path) -> None:
    base = load_policy("strict")
    override = policy(
        name="ops",
        rules=[{"name": "ops-may-write", "decision": "allow", "tools": ["files.write*"]}],
        limits={"max_steps": 99},
        on_budget="stop",
    )
    merged = merge(base, override)
    assert merged.rules[0].name == "ops-may-write"
    assert evaluate(merged, act("files.write_file")).outcome == "allow"
    assert merged.limits is not None and merged.limits.max_steps == 99 and merged.limits.max_cost_usd == 1.0
    assert merged.on_budget == "stop" and merged.default == "deny"
    assert "ops-may-write: allow when tools=files.write*" in describe(merged)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[[rules]]\nname = "wipe"\ndecision = "maybe"\n', ["rules[0] (wipe).decision", "'maybe'"]),
        (
            '[[rules]]\nname = "x"\ndecision = "deny"\ncolour = "red"\n',
            ["rules[0] (x).colour", "unknown field"],
        ),
        ('[[rules]]\ndecision = "deny"\n', ["rules[0].name", "required"]),
        (
            '[[rules]]\nname = "x"\ndecision = "deny"\nannotations = { dangerous = true }\n',
            ["unknown annotation"],
        ),
        (
            '[[rules]]\nname = "x"\ndecision = "deny"\narguments = { a = { regex = "(" } }\n',
            ["regular expression"],
        ),
        ('[[rules]]\nname = "x"\ndecision = "deny"\n[[rules]]\nname = "x"\ndecision = "allow"\n', ["unique"]),
        ("rules = [", ["not valid TOML"]),
    ],
)
def test_a_malformed_policy_file_names_file_rule_and_field(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(str(path))
    assert str(path) in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_an_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(PolicyError, match="default, strict"):
        load_policy("lenient")


def test_the_engine_is_pure() -> None:
    p = load_policy("default")
    action = act("files.delete_file", DESTRUCTIVE, name="a.txt")
    assert evaluate(p, action) == evaluate(p, action)
