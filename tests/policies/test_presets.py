"""The built-in presets behave as their comments say, on a table of sample actions."""

from __future__ import annotations

import pytest

from policies.engine import Action, evaluate
from policies.load import load_policy, preset_names
from tests.policies.support import DESTRUCTIVE, READ, WRITE, act

# (action, default preset's outcome, strict preset's outcome, strict human_only)
TABLE: list[tuple[str, Action, str, str, bool]] = [
    ("read a file", act("files.read_file", READ, path="notes.md"), "allow", "allow", False),
    ("list a folder", act("files.list_directory", READ, path="."), "allow", "allow", False),
    (
        "delete a file",
        act("files.delete_file", DESTRUCTIVE, path="a.txt"),
        "require_approval",
        "require_approval",
        True,
    ),
    (
        "write a file",
        act("files.write_file", WRITE, path="a.txt"),
        "require_approval",
        "require_approval",
        False,
    ),
    ("unknown tool", act("web.fetch", {}, url="https://example.org"), "require_approval", "deny", False),
    ("only openWorld hint", act("web.search", {"openWorldHint": True}), "require_approval", "deny", False),
    (
        "deploy to prod",
        act("ci.deploy", {}, environment="production"),
        "require_approval",
        "require_approval",
        True,
    ),
    (
        "deploy to PROD",
        act("ci.run", WRITE, environment="PROD"),
        "require_approval",
        "require_approval",
        True,
    ),
    (
        "read prod",
        act("db.query", READ, environment="prod", sql="select 1"),
        "require_approval",
        "require_approval",
        True,
    ),
    (
        "deploy to staging",
        act("ci.deploy_service", {}, environment="staging"),
        "require_approval",
        "require_approval",
        True,
    ),
    ("pay an invoice", act("bank.pay_invoice", {}, amount=120), "require_approval", "require_approval", True),
    ("transfer money", act("bank.transfer", WRITE, amount=5), "require_approval", "require_approval", True),
    ("rm -rf / tool", act("shell.rm_rf", READ, path="/"), "deny", "deny", False),
    ("rm -rf / command", act("shell.run", READ, command="rm -rf /"), "deny", "deny", False),
    ("rm -rf / as words", act("shell.exec", WRITE, argv=["sudo", "rm", "-rf", "/"]), "deny", "deny", False),
    (
        "rm -rf a folder",
        act("shell.run", WRITE, command="rm -rf ./build"),
        "require_approval",
        "require_approval",
        False,
    ),
    ("drop database", act("db.execute", READ, sql="DROP DATABASE shop"), "deny", "deny", False),
    (
        "drop table after ;",
        act("db.execute", WRITE, query="select 1; drop table users"),
        "deny",
        "deny",
        False,
    ),
    ("select", act("db.query", READ, sql="select * from users"), "allow", "allow", False),
]
IDS = [row[0] for row in TABLE]


@pytest.mark.parametrize(("what", "action", "outcome", "_s", "_h"), TABLE, ids=IDS)
def test_the_default_preset(what: str, action: Action, outcome: str, _s: str, _h: bool) -> None:
    decision = evaluate(load_policy("default"), action)
    assert decision.outcome == outcome, (what, decision)
    assert not decision.human_only  # the default preset lets the assistant relay approvals


@pytest.mark.parametrize(("what", "action", "_d", "outcome", "human_only"), TABLE, ids=IDS)
def test_the_strict_preset(what: str, action: Action, _d: str, outcome: str, human_only: bool) -> None:
    decision = evaluate(load_policy("strict"), action)
    assert (decision.outcome, decision.human_only) == (outcome, human_only), (what, decision)


def test_destructive_actions_need_approval_with_the_documented_reason() -> None:
    decision = evaluate(load_policy("default"), act("files.delete_file", DESTRUCTIVE))
    assert (decision.rule, decision.reason) == ("destructive-needs-approval", "destructive action")


def test_preset_settings_are_as_documented() -> None:
    default, strict = load_policy("default"), load_policy("strict")
    assert (default.default, default.on_budget, default.on_denied) == ("require_approval", "stop", "continue")
    assert default.limits is None  # the team's limits apply
    assert (strict.default, strict.on_budget, strict.on_denied) == ("deny", "ask", "continue")
    assert strict.limits is not None
    assert (strict.limits.max_steps, strict.limits.max_cost_usd) == (30, 1.0)


def test_every_preset_loads_and_every_rule_says_why() -> None:
    assert preset_names() == ["default", "strict"]
    for name in preset_names():
        p = load_policy(name)
        assert p.name == name and p.description
        assert all(rule.reason for rule in p.rules), name
