"""The admission check's two server-side dry-run creates; ``engine/admission.py`` judges the answers.

Dry-runs store nothing and no watch sees them: an Approval in someone else's name, and an
Incident naming someone else as its creator, both in the operator's own namespace. A refusal
is an answer (with the apiserver's status and message); an apiserver that does not answer
raises, as everywhere (``transient``).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException

from reliability_center.api.approval import CREATED_BY
from reliability_center.engine import admission
from reliability_center.engine.admission import Answer
from reliability_center.gateway.kube import Conflict, Invalid, Kube, NotFound, transient

#: The digest a dry-run Approval names (any well-formed one: nothing is approved).
PROBE_DIGEST = "sha256:" + "0" * 64
PROBE_NAME = "rc-admission-check"


def probe_approval(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "reliability.center/v1alpha1", "kind": "Approval",
            "metadata": {"name": PROBE_NAME, "namespace": namespace},
            "spec": {"incident": PROBE_NAME, "step": "check", "decision": "Approve", "planDigest": PROBE_DIGEST,
                     "approver": admission.PROBE_USER, "groups": [admission.PROBE_GROUP]}}


def probe_incident(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "reliability.center/v1alpha1", "kind": "Incident",
            "metadata": {"name": PROBE_NAME, "namespace": namespace,
                         "annotations": {CREATED_BY: admission.PROBE_USER}},
            "spec": {"category": "admission-check", "severity": "low", "tenant": "admission-check"}}


def ask(kube: Kube, namespace: str) -> tuple[Answer, Answer]:
    """The apiserver's answers to the Approval and to the Incident, in that order."""
    return _answer(kube, probe_approval(namespace)), _answer(kube, probe_incident(namespace))


def _answer(kube: Kube, obj: dict[str, Any]) -> Answer:
    try:
        return Answer(accepted=kube.create(obj, dry_run=True))
    except ApiException as exc:
        if transient(exc):
            raise
        return Answer(status=exc.status, message=_message(exc))
    except (Invalid, Conflict, NotFound) as exc:  # refused, with the apiserver's message
        return Answer(status={Invalid: 422, Conflict: 409, NotFound: 404}[type(exc)], message=str(exc))


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
