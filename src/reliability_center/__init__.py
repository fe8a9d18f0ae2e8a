"""reliability-center: a Kopf operator that turns incident runbooks into governed automation.

Layers, bottom to top (checked by import-linter, see pyproject.toml):
``api`` (pydantic models, the single source of the CRDs), ``policy`` and
``engine`` (pure decisions), ``gateway`` (the only code that writes to the
cluster), ``actions`` (one module per action type), ``gitops`` and ``detect``
(the other edges), ``operator`` (thin Kopf glue) and ``cli`` (relctl).
"""

__version__ = "0.1.0"
