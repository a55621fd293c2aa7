"""`concertmaster resume RUN_ID`: continue an interrupted run in this terminal until it ends.

Useful with `[runs] resume = "manual"`, for a run that crashed its server too often, or with no server running.
Approvals it asks for are answered from another terminal (`concertmaster approvals`, `approve ID`).
"""

from __future__ import annotations

from orchestration.audit.log import AuditLog
from orchestration.config import load_config
from orchestration.governance import PolicyBook
from orchestration.runtime import TERMINAL, Runtime
from server.settings import Settings

POLL_SECONDS = 30.0


async def resume_here(settings: Settings, run_id: str) -> int:
    config = load_config(settings.config)
    audit = AuditLog(settings.db, PolicyBook(config).redactor())
    async with Runtime(config, audit, adopt=False) as rt:
        run = await rt.resume_run(run_id)
        print(
            f"resumed {run_id} ({run['pattern']}); Ctrl-C stops here and leaves it for a server to take over"
        )
        reported: set[str] = set()
        while run["status"] not in TERMINAL:
            for request in rt.pending.open_for(run_id):
                if request.id not in reported and request.kind == "approval":
                    reported.add(request.id)
                    print(f"waiting for a decision on {request.id}: {request.payload.get('question', '')}")
                    print(f"  decide from another terminal: concertmaster approve {request.id}  (or deny)")
            run = await rt.wait(
                run_id, POLL_SECONDS, wake_on_pending=("approval",), known=frozenset(reported)
            )
    print(f"run {run_id} {run['status']}" + (f": {run['error']}" if run.get("error") else ""))
    if run.get("output"):
        print(run["output"])
    return 0 if run["status"] == "succeeded" else 1 if run["status"] in ("failed", "cancelled") else 0


__all__ = ["resume_here"]
