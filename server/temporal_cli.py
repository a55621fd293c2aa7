"""`concertmaster worker` and `concertmaster dev-temporal` (the Temporal engine; needs the temporal extra)."""

from __future__ import annotations

import argparse

from orchestration.config import load_config
from orchestration.engines import TEMPORAL_MISSING
from orchestration.errors import ConfigError
from server.settings import Settings


def worker(settings: Settings) -> int:
    """Serve the configured task queue: runs (workflows), model and tool calls (activities)."""
    config = load_config(settings.config)
    if config.engine.kind != "temporal":
        raise ConfigError(
            f'{config.source} has [engine] kind = "{config.engine.kind}"; a worker serves runs on Temporal: set '
            'kind = "temporal" (with address, namespace, task_queue) in the same config the server uses'
        )
    try:
        from orchestration.temporal.worker import worker_main
    except ImportError:
        raise ConfigError(TEMPORAL_MISSING) from None
    return worker_main(config)


def dev_temporal(args: argparse.Namespace) -> int:
    """A local Temporal dev server, in the foreground."""
    from pathlib import Path

    from orchestration.temporal.dev import dev_main

    return dev_main(args.port, args.ui_port, Path(args.db_filename) if args.db_filename else None)
