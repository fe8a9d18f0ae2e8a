"""Whether the apiserver vouches for approvals, as the operator last found it.

``gateway/admission.py`` asks (two server-side dry-runs), ``engine/admission.py`` judges. Asked
at startup (a Kopf startup handler), again whenever the last verdict is older than ``every``
seconds and a step's votes are weighed or ``/healthz`` is read (a Kopf probe), and afresh
before a step is approved. Approvals made until a check last found admission off never count,
even once it is back. A policy removed and put back between two checks is not seen: an Approval
made in that gap would count, which is why the checks are frequent.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from collections.abc import Callable

from reliability_center.engine import admission
from reliability_center.engine.admission import Verdict
from reliability_center.gateway import Kube
from reliability_center.gateway import admission as ask
from reliability_center.gateway.kube import describe, transient

log = logging.getLogger("reliability_center.admission")


class AdmissionCheck:
    """The last verdict, asked again when older than ``every`` seconds (thread-safe)."""

    def __init__(self, kube: Kube, namespace: str, operator: Callable[[], str], every: float,
                 clock: Callable[[], float] = time.monotonic):
        self.kube, self.namespace, self.operator, self.every, self.clock = kube, namespace, operator, every, clock
        self._lock = threading.Lock()
        self._verdict: Verdict = admission.NOT_CHECKED
        self._at: float | None = None
        self.unvouched_until: str | None = None
        """The last time (UTC, a second late for the apiserver's clock) a check found admission not in
        force: Approvals made until then never count. Memory only: a restarted operator forgets it."""

    def verdict(self, max_age: float | None = None) -> Verdict:
        with self._lock:
            age = None if self._at is None else self.clock() - self._at
            if age is None or age > (self.every if max_age is None else max_age):
                self._ask()
            return self._verdict

    def _ask(self) -> None:
        try:
            verdict = admission.judge(*ask.ask(self.kube, self.namespace), self.operator())
        except Exception as exc:
            if not transient(exc):
                raise
            # The apiserver did not answer: the last verdict stands (nothing is approved meanwhile anyway).
            log.warning("could not check the admission policies: %s", describe(exc))
            return
        if verdict != self._verdict:
            (log.info if verdict.in_force else log.error)("admission %s: %s", verdict.reason, verdict.message)
        self._verdict, self._at = verdict, self.clock()
        if not verdict.in_force:
            later = datetime.now(timezone.utc) + timedelta(seconds=1)
            self.unvouched_until = later.strftime("%Y-%m-%dT%H:%M:%SZ")
