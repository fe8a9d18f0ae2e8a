"""The Kopf operator: thin handlers (one module per kind) over the runner, engine and gateway."""
