"""The orchestration core: agents, model providers, patterns, runs, pending requests and the audit.

Usable as a library without MCP:

    async with Runtime(load_config(), AuditLog("audit.db")) as rt:
        run_id = await rt.start_run("delegate", task, delegate("researcher", task))
        run = await rt.wait(run_id, 30)
"""
