"""Writes that must land: retried with backoff while the database cannot be written.

Most audit writes fail loudly and at once (`AuditError`), which fails the run that made them. The write that
ends a run is different: if it is lost, the run stays `running` forever. So it is retried while the failure
is one that clears by itself (`AuditUnavailable`: another connection holds the write lock, the disk is full),
and the run's row says how it ended as soon as the database can be written again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from orchestration.errors import AuditUnavailable

log = logging.getLogger("concertmaster.audit")

T = TypeVar("T")

FIRST_DELAY_S = 0.05
MAX_DELAY_S = 5.0


async def until_written(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int | None = None,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> T:
    """Await `attempt()` until it does not raise `AuditUnavailable`, sleeping with exponential backoff between
    tries; other errors (and cancellation) go through at once. `attempts` bounds the tries (None: until the
    database is writable again); past it the last `AuditUnavailable` is raised."""
    delay, tries = first_delay_s, 0
    while True:
        tries += 1
        try:
            return await attempt()
        except AuditUnavailable as exc:
            if attempts is not None and tries >= attempts:
                raise
            log.warning("could not record %s (%s); retrying in %.2f s", what, exc.message, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
