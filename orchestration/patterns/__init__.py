"""One module per orchestration pattern; each composes the shared step runner, guard and audit."""
