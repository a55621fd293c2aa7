"""The team config: the built-in team, and errors that name the file, the field and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.config import load_config
from orchestration.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "concertmaster.toml"
    path.write_text(text)
    return path


def test_without_a_file_the_built_in_team_is_used(monkeypatch) -> None:
    monkeypatch.delenv("CONCERTMASTER_CONFIG", raising=False)
    config = load_config()
    assert {"researcher", "writer", "reviewer", "planner"} <= set(config.agents)
    assert all(agent.model == "auto" for agent in config.agents.values())
    assert config.source == "built-in default team"


def test_the_env_var_names_the_file(tmp_path: Path, monkeypatch) -> None:
    path = write(
        tmp_path, '[agents.solo]\ndescription = "d"\ninstructions = "i"\nmodel = "anthropic:claude-x"\n'
    )
    monkeypatch.setenv("CONCERTMASTER_CONFIG", str(path))
    config = load_config()
    assert list(config.agents) == ["solo"] and config.source == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[agents.a]\ndescription = "d"\ninstructions = "i"\nmodel = "gpt-4"\n',
            ["agents.a.model", "'anthropic:<model id>', 'sampling', 'host', 'scripted' or 'auto'", "'gpt-4'"],
        ),
        ('[agents.a]\ndescription = "d"\n', ["agents.a.instructions", "required field is missing"]),
        (
            '[agents.a]\ndescription = "d"\ninstructions = "i"\ncolour = "red"\n',
            ["agents.a.colour", "unknown field"],
        ),
        ('[agents.A]\ndescription = "d"\ninstructions = "i"\n', ["agent name 'A' must be lowercase"]),
        ("[agents]\n", ["at least one agent"]),
        (
            '[agents.a]\ndescription = "d"\ninstructions = "i"\n[limits]\nmax_turns = 0\n',
            ["limits.max_turns"],
        ),
        ("[agents.a\n", ["not valid TOML"]),
    ],
)
def test_an_invalid_config_names_file_field_and_expectation(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message, message


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
