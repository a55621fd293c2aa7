"""How long one policy decision takes: 100,000 tool calls against the `default` preset.

Measures, never asserts. Run: `python bench/policy_check.py [N]`. The actions cycle through a realistic
mix (reads, writes, destructive, production deploys, denied shell commands, unknown tools), so every rule of
the preset is reached and some actions fall through to the default.
"""

from __future__ import annotations

import sys
import time

from policies.engine import Action, compile_policy, evaluate
from policies.load import load_policy

READ = {"readOnlyHint": True}
WRITE = {"readOnlyHint": False}
DESTRUCTIVE = {"readOnlyHint": False, "destructiveHint": True}

SAMPLES = (
    Action("clerk", "ops", "files.read_file", READ, {"path": "notes/today.md"}),
    Action("clerk", "ops", "files.list_directory", READ, {"path": "notes"}),
    Action("clerk", "ops", "files.write_file", WRITE, {"path": "notes/x.md", "content": "hello " * 50}),
    Action("clerk", "ops", "files.delete_file", DESTRUCTIVE, {"path": "notes/old.md"}),
    Action("deployer", "ops", "ci.deploy_service", {}, {"service": "api", "environment": "production"}),
    Action("banker", "finance", "bank.pay_invoice", {}, {"invoice": "INV-1", "amount": 120.5}),
    Action("shell", None, "shell.run", WRITE, {"command": "rm -rf / --no-preserve-root"}),
    Action("shell", None, "shell.run", WRITE, {"command": "ls -la /tmp"}),
    Action("analyst", "research", "db.query", READ, {"sql": "select * from users limit 10"}),
    Action("analyst", "research", "web.fetch", {}, {"url": "https://example.org"}),
)


def main(n: int = 100_000) -> None:
    policy = load_policy("default")
    actions = [SAMPLES[i % len(SAMPLES)] for i in range(n)]

    start = time.perf_counter()
    compiled = compile_policy(policy)
    compile_us = (time.perf_counter() - start) * 1e6

    # Through `evaluate(policy, action)`: what callers use; it looks up the policy's compiled form.
    start = time.perf_counter()
    for action in actions:
        evaluate(policy, action)
    via_evaluate = (time.perf_counter() - start) / n * 1e6

    # Straight on the compiled policy: the floor.
    start = time.perf_counter()
    for action in actions:
        compiled.evaluate(action)
    via_compiled = (time.perf_counter() - start) / n * 1e6

    outcomes: dict[str, int] = {}
    for action in SAMPLES:
        outcome = compiled.evaluate(action).outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"policy 'default': {len(policy.rules)} rules, compiled once in {compile_us:.0f} µs")
    print(f"{n} checks; sample mix outcomes: {outcomes}")
    print(f"evaluate(policy, action): {via_evaluate:.2f} µs per check")
    print(f"CompiledPolicy.evaluate:  {via_compiled:.2f} µs per check")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
