"""Rules and limits: what agents may do, and when a run must stop. Imports nothing of concertmaster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies.limits import Limits
    from policies.redaction import Redactor

__all__ = ["Limits", "Redactor"]


def __getattr__(name: str) -> Any:
    # resolved on first use (PEP 562): importing `policies.redaction` for the audit reader must not load
    # pydantic through `policies.limits` (~90 ms of every `concertmaster runs`)
    if name == "Limits":
        from policies.limits import Limits

        return Limits
    if name == "Redactor":
        from policies.redaction import Redactor

        return Redactor
    raise AttributeError(f"module 'policies' has no attribute {name!r}")
