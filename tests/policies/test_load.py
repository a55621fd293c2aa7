"""Loading presets and files, errors that name file / rule / field, overrides, and `describe`."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.engine import evaluate
from policies.load import PolicyError, describe, load_policy, merge
from tests.policies.support import DESTRUCTIVE, READ, WRITE, act, policy


def test_a_file_is_loaded_by_path_and_named_after_itself(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text(
        'default = "deny"\n[[rules]]\nname = "reads"\ndecision = "allow"\ntools = ["files.read*"]\n'
    )
    for ref in (path, str(path)):
        p = load_policy(ref)
        assert p.name == "ops" and p.default == "deny"
        assert evaluate(p, act("files.read_file")).outcome == "allow"


def test_the_example_error_message(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        "".join(f'[[rules]]\nname = "r{i}"\ndecision = "deny"\n' for i in range(2))
        + '[[rules]]\nname = "delete-anything"\ndecision = "maybe"\n'
    )
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == (
        f"policy file {path}: rules[2] (delete-anything).decision: "
        "expected 'allow', 'require_approval' or 'deny' (got 'maybe')"
    )


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
            ["rules[0] (x).annotations", "unknown annotation(s) dangerous", "destructiveHint"],
        ),
        (
            '[[rules]]\nname = "x"\ndecision = "deny"\narguments = { a = { regex = "(" } }\n',
            ["rules[0] (x).arguments.a.regex", "regular expression"],
        ),
        (
            '[[rules]]\nname = "x"\ndecision = "deny"\narguments = { a = {} }\n',
            ["rules[0] (x).arguments.a", "at least one of equals"],
        ),
        (
            '[[rules]]\nname = "x"\ndecision = "deny"\narguments = { a = { like = "b" } }\n',
            ["rules[0] (x).arguments.a.like", "unknown field"],
        ),
        (
            '[[rules]]\nname = "x"\ndecision = "deny"\ntools = ["delete_file"]\n',
            ["rules[0] (x).tools", "'*.delete_file'"],
        ),
        (
            '[[rules]]\nname = "x"\ndecision = "deny"\napproval_ttl_s = -1\n',
            ["rules[0] (x).approval_ttl_s", "greater than 0"],
        ),
        (
            '[[rules]]\nname = "x"\ndecision = "deny"\n[[rules]]\nname = "x"\ndecision = "allow"\n',
            ["rules: ", "rules[1] is named 'x' like rules[0]", "unique"],
        ),
        ('default = "yes"\n', ["default: expected 'allow', 'require_approval' or 'deny'", "'yes'"]),
        ('on_budget = "extend"\n', ["on_budget: expected 'stop' or 'ask'"]),
        ('on_denied = "ignore"\n', ["on_denied: expected 'continue' or 'stop'"]),
        ("[limits]\nmax_steps = 0\n", ["limits.max_steps", "greater than or equal to 1"]),
        ("[limits]\nmax_stepz = 3\n", ["limits.max_stepz", "unknown field"]),
        ('[redaction]\npatterns = ["["]\n', ["redaction.patterns", "regular expression"]),
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
    message = str(info.value)
    assert message.startswith(f"policy file {path}"), message
    for fragment in fragments:
        assert fragment in message, message


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


def test_an_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(PolicyError, match=r"no policy 'lenient': not a preset \(default, strict\)"):
        load_policy("lenient")


def test_a_file_that_cannot_be_read_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path)  # a directory
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(binary)


def test_overrides_go_first_and_their_limits_replace_the_bases() -> None:
    team = load_policy("strict")
    group = policy(
        name="ops",
        rules=[{"name": "ops-may-write", "decision": "allow", "tools": ["files.write*"]}],
        limits={"max_steps": 99},
        on_budget="stop",
    )
    agent = policy(
        name="clerk",
        rules=[{"name": "clerk-no-writes", "decision": "deny", "tools": ["files.write_*"]}],
        limits={"max_cost_usd": 0.25},
    )
    for_group = merge(team, group)
    assert evaluate(for_group, act("files.write_file", WRITE)).outcome == "allow"
    assert for_group.limits is not None
    assert (for_group.limits.max_steps, for_group.limits.max_cost_usd) == (99, 1.0)
    assert (for_group.on_budget, for_group.default, for_group.on_denied) == ("stop", "deny", "continue")

    for_agent = merge(for_group, agent)  # team, then group, then agent: the agent's rules come first
    assert [r.name for r in for_agent.rules[:2]] == ["clerk-no-writes", "ops-may-write"]
    assert [r.name for r in for_agent.rules[2:]] == [r.name for r in team.rules]
    assert evaluate(for_agent, act("files.write_file", WRITE)).rule == "clerk-no-writes"
    assert evaluate(for_agent, act("files.read_file", READ)).rule == "read-only-allowed"
    assert for_agent.limits is not None
    assert (for_agent.limits.max_steps, for_agent.limits.max_cost_usd, for_agent.limits.max_handoffs) == (
        99,
        0.25,
        4,
    )
    assert for_agent.name == "strict+ops+clerk" and for_agent.on_budget == "stop"


def test_an_override_rule_replaces_the_base_rule_of_the_same_name() -> None:
    base = load_policy("default")
    override = policy(rules=[{"name": "destructive-needs-approval", "decision": "deny", "reason": "no"}])
    merged = merge(base, override)
    assert [r.name for r in merged.rules].count("destructive-needs-approval") == 1
    assert evaluate(merged, act("files.delete_file", DESTRUCTIVE)).outcome == "deny"


def test_an_override_without_limits_keeps_the_bases_and_redaction_adds_up() -> None:
    base = policy(limits={"max_steps": 7}, redaction={"patterns": ["a+"], "secret_env": ["A"]})
    merged = merge(base, policy(redaction={"patterns": ["b+", "a+"], "secret_env": ["B"]}))
    assert merged.limits == base.limits
    assert merged.redaction.patterns == ("a+", "b+") and merged.redaction.secret_env == ("A", "B")
    assert merged.default == base.default == "require_approval"


def test_describe_prints_each_rule_in_order_and_the_limits() -> None:
    text = describe(
        merge(
            load_policy("strict"),
            policy(
                name="ops", rules=[{"name": "ops-may-write", "decision": "allow", "tools": ["files.write*"]}]
            ),
        )
    )
    lines = text.splitlines()
    assert lines[0] == "policy strict+ops: default deny; on_budget=ask, on_denied=continue"
    assert lines[1] == "  ops-may-write: allow when tools=files.write*"
    assert "  destructive-human-only: require_approval (human only) when destructiveHint=true" in lines
    assert (
        r"  production-human-only: require_approval (human only) when environment =~ /(?i)^\s*prod(uction)?\s*$/"
        in lines
    )
    assert "  otherwise: deny (the strict policy denies what it does not explicitly allow)" in lines
    assert lines[-1] == "  limits: max_steps=30, max_handoffs=4, max_tool_calls=8, max_cost_usd=1.0"
    assert describe(load_policy("default")).splitlines()[-1] == "  limits: the team's"


def test_describe_words_each_argument_condition() -> None:
    p = policy(
        rules=[
            {
                "name": "r",
                "decision": "deny",
                "arguments": {
                    "a": {"equals": "x"},
                    "b": {"one_of": [1, 2]},
                    "c": {"glob": "*.env"},
                    "*": {"regex": "rm -rf"},
                    "d": {"gt": 1, "lt": 10.5},
                    "e": {"exists": False},
                },
            }
        ]
    )
    assert describe(p).splitlines()[1] == (
        "  r: deny when a == 'x' and b in [1, 2] and c like *.env and any argument =~ /rm -rf/ "
        "and d > 1 and d < 10.5 and e absent"
    )
