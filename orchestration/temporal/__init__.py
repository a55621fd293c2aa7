"""The Temporal engine: the same runs as Temporal workflows, run by workers on any machine.

Nothing here is imported by the embedded engine; the modules that import `temporalio` (the optional extra
`concertmaster[temporal]`) are loaded only when `[engine] kind = "temporal"` or a worker asks for them.

- `codec`: the plain data that crosses the wire (model requests and replies, audit writes), no temporalio;
- `workflow`: the run as workflow code: the pattern's body in a `RunContext` whose effects are Temporal's;
- `effects`: those effects on the workflow side (audit buffer, model and tool calls as activities, waits);
- `activities`: model and tool calls, executed by workers;
- `audit_sink`: the audit writes, executed by the server that owns the SQLite file;
- `runtime`: the server's `Runtime` on Temporal (start, wait, cancel, approvals as signals);
- `worker` and `dev`: `concertmaster worker` and `concertmaster dev-temporal`.
"""
