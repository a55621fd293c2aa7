"""Ids of runs, steps and requests."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextvars import ContextVar

ID_SOURCE: ContextVar[Callable[[], str] | None] = ContextVar("concertmaster_id_source", default=None)
"""Where ids come from in this context: an engine that replays a run's code (Temporal) sets a deterministic
source so that the replayed run makes the same step and request ids; None: random."""


def new_id(prefix: str) -> str:
    """A short unique id such as `run_5f3a9c0d2b1e`."""
    source = ID_SOURCE.get()
    return f"{prefix}_{source() if source is not None else secrets.token_hex(6)}"
