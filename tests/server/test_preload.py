"""The Anthropic SDK is imported off the event loop: the first Anthropic-backed run must not freeze clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import anyio
    from orchestration.providers import preload
    from tests.conftest import team

    async def main():
        before_import = "anthropic" in sys.modules
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.sleep(0)
            start = ticks
            await preload(team(a={"model": "anthropic:claude-sonnet-4-5"}))
            during = ticks - start
            tg.cancel_scope.cancel()
        print(json.dumps({"before": before_import, "after": "anthropic" in sys.modules, "ticks": during}))

    anyio.run(main)
    """
)


def test_the_sdk_is_imported_in_a_thread_while_the_event_loop_keeps_running() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["before"] is False and result["after"] is True
    # imported on the loop, the ticker could not run at all while it lasted (0 or 1 tick)
    assert result["ticks"] >= 2, result
