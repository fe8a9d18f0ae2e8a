"""Pure decisions: which runbook, which step next, what the status says. No I/O here."""
