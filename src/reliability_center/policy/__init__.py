"""Guardrails as pure functions: what may be written, and when. Their state is read from the cluster."""
