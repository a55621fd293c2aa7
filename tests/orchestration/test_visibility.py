"""Federated scoping: own group in full, other groups only what is declared with SHARE:."""

from __future__ import annotations

import pytest

from orchestration.visibility import placeholder, shared_part, visible_text

MESSAGE = "internal: the budget is 42k\nSHARE: we propose Nova\nand ship in May"


def test_the_own_group_sees_the_whole_message() -> None:
    assert visible_text(MESSAGE, "red", "red", "federated") == MESSAGE


def test_another_group_sees_only_what_follows_the_share_line() -> None:
    shown = visible_text(MESSAGE, "red", "blue", "federated")
    assert shown == "we propose Nova\nand ship in May" and "42k" not in shown


def test_a_message_sharing_nothing_is_a_placeholder_across_groups() -> None:
    assert visible_text("salaries are...", "red", "blue", "federated") == "[private message of group red]"
    assert visible_text("x\nSHARE:   ", "red", "blue", "federated") == placeholder("red")


def test_agents_without_a_group_are_a_group_of_their_own() -> None:
    assert visible_text("x", None, None, "federated") == "x"
    assert visible_text("x", "red", None, "federated") == "[private message of group red]"
    assert visible_text("x", None, "red", "federated") == "[private message of group none]"


def test_the_orchestrator_sees_everything() -> None:
    assert visible_text(MESSAGE, "red", None, "federated", orchestrator=True) == MESSAGE


@pytest.mark.parametrize("control", ["centralized", "decentralized", "hierarchical"])
def test_other_models_of_control_share_all_context(control: str) -> None:
    assert visible_text(MESSAGE, "red", "blue", control) == MESSAGE


def test_share_must_start_a_line() -> None:
    assert shared_part("I will not SHARE: the budget") is None
    assert shared_part("  SHARE: indented is fine") == "indented is fine"
    assert shared_part("SHARE: first\nSHARE: second") == "first\nSHARE: second"
    assert shared_part("share: lowercase is not the marker") is None
