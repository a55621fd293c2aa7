"""Shared fixtures: anyio on asyncio, a temporary audit database, a scripted team."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from orchestration.config import TeamConfig

warnings.filterwarnings("ignore", message=".*deprecated as of 2026-07-28.*")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


def team(**agents: dict) -> TeamConfig:
    """A team config from keyword arguments: `team(writer={"model": "scripted"})`."""
    return TeamConfig.model_validate(
        {
            "agents": {
                name: {"description": f"{name} agent", "instructions": f"You are {name}.", **spec}
                for name, spec in agents.items()
            }
        }
    )


@pytest.fixture(scope="session")
def audit_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A read-only audit with one finished run of every pattern and one with gated tool calls (tests/audit_world.py).

    Returns the database and `{scenario: run_id}` (scenario `tools` is the tool-call run). Tests must not write to it.
    """
    import anyio

    from tests.audit_world import populate, populate_tools

    tmp = tmp_path_factory.mktemp("audit_world")
    db = tmp / "audit.db"
    runs = anyio.run(populate, db)
    runs["tools"] = anyio.run(populate_tools, db, tmp)
    return db, runs
