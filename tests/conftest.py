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
