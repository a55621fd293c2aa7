"""The one error hierarchy of concertmaster.

Every error carries a message written for the person who will read it: what was wrong and how to fix it.
`server/` turns these into MCP tool errors in one place; the CLI prints them as one line.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConcertmasterError(Exception):
    """Base of every error concertmaster raises on purpose."""

    #: a short machine-readable code, stable across releases (shown in tool errors and the audit)
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ConcertmasterError):
    """The config or policy file is missing, unreadable or invalid."""

    code = "config_error"


class InvalidInputError(ConcertmasterError):
    """A tool or CLI argument is wrong; the message names the field and the fix."""

    code = "invalid_input"


class UnknownAgentError(InvalidInputError):
    """An agent name that the team does not have."""

    code = "unknown_agent"

    def __init__(self, name: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known)) or "(none)"
        super().__init__(f"unknown agent {name!r}; known agents: {names}")
        self.name = name


class RunNotFoundError(InvalidInputError):
    """A run id that is not in the audit."""

    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"no run with id {run_id!r}; list_runs (or `concertmaster runs`) shows the ids of recent runs"
        )
        self.run_id = run_id


class ProviderError(ConcertmasterError):
    """A model provider failed: bad key, rate limit, server error, timeout, refused sampling."""

    code = "provider_error"

    def __init__(self, message: str, *, kind: str = "error", retryable: bool = False) -> None:
        super().__init__(message)
        #: auth | rate_limit | server | timeout | refused | unavailable | bad_request | error
        self.kind = kind
        self.retryable = retryable


class ModelUnavailableError(ProviderError):
    """No provider can serve an agent (no API key, client without sampling)."""

    code = "model_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="unavailable")


class AuditError(ConcertmasterError):
    """The audit database could not be written or read. A run that hits this fails loudly."""

    code = "audit_error"


class AuditUnavailable(AuditError):
    """The audit database cannot be written right now (another connection holds the write lock, the disk is
    full, an I/O error): the same write may succeed later, once the fault clears."""


class WriteConflict(ConcertmasterError):
    """A compare-and-set write lost: the row it expected had already changed (someone else decided first)."""

    code = "conflict"


class GuardrailTripped(ConcertmasterError):
    """A limit of the run was reached. Patterns catch it and end the run (or sub-run) cleanly."""

    code = "guardrail_tripped"

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        #: which limit tripped: max_steps, max_turns, max_handoffs, max_depth, timeout, budget_tokens, ...
        self.limit = limit


class RunCancelled(ConcertmasterError):
    """The run was cancelled by a user (cancel_run, CLI)."""

    code = "cancelled"
