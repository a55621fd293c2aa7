"""Ids of runs, steps and requests."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A short unique id such as `run_5f3a9c0d2b1e`."""
    return f"{prefix}_{secrets.token_hex(6)}"
