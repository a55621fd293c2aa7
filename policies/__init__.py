"""Rules and limits: what agents may do, and when a run must stop. Imports nothing of concertmaster."""

from policies.limits import Limits
from policies.redaction import Redactor

__all__ = ["Limits", "Redactor"]
