"""The rollback rehearsal decides only on the apiserver's answer (``operator/closing.rehearse``), and at the
resolve rehearses every snapshot the cluster has (``operator/restore.rehearse``).

The gateway here is a stand-in that answers each snapshot's dry-run as told; the real
apiserver's 500 is in ``tests/e2e/test_rollback_rehearsal.py``.
"""

from __future__ import annotations

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from reliability_center.gateway.kube import Fenced, Invalid, NotFound
from reliability_center.gateway.writes import RestoreResult
from reliability_center.operator.closing import rehearse
from reliability_center.operator.draft import Draft
from reliability_center.operator.restore import rehearse as rehearse_at_resolve
from reliability_center.operator.workqueue import Echoes
from tests.unit.factories import incident


class Answers:
    """A gateway whose dry-run restore of each snapshot raises or returns what it was given."""

    def __init__(self, **answers):
        self.answers = answers

    def restore(self, write, snapshot, *, action, dry_run=False):
        assert dry_run and action == "rollback-test"
        answer = self.answers[snapshot]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def overloaded(status: int) -> ApiException:
    exc = ApiException(status=status, reason="Too Many Requests" if status == 429 else "Service Unavailable")
    exc.body = '{"message":"try again later"}'
    return exc


@pytest.mark.parametrize("error", [overloaded(429), overloaded(503), overloaded(500),
                                   urllib3.exceptions.ReadTimeoutError(None, "/api", "read timed out"),
                                   Fenced("the lease was lost")], ids=["429", "503", "500", "timeout", "fenced"])
def test_an_apiserver_that_did_not_answer_is_retried_not_taken_for_a_refusal(error):
    gateway = Answers(**{"rc-snap-1": RestoreResult("ConfigMap/shop/flags"), "rc-snap-2": error})
    with pytest.raises(type(error)):
        rehearse(gateway, None, ["rc-snap-1", "rc-snap-2"])


def test_a_refusal_by_the_apiserver_is_the_finding():
    gateway = Answers(**{"rc-snap-1": Invalid("spec.replicas: Invalid value: -1"),
                         "rc-snap-2": NotFound("snapshot rc-snap-2 is gone"),
                         "rc-snap-3": RestoreResult("ConfigMap/shop/flags", conflicts=["/data/x"])})
    ok, message = rehearse(gateway, None, ["rc-snap-1", "rc-snap-2", "rc-snap-3"])
    assert not ok
    assert message == ("3 of 3 inverses would not apply: rc-snap-1: Invalid: spec.replicas: Invalid value: -1; "
                       "rc-snap-2: NotFound: snapshot rc-snap-2 is gone; "
                       "ConfigMap/shop/flags/data/x: changed by someone else since")


def test_inverses_that_all_apply_pass():
    gateway = Answers(**{"rc-snap-1": RestoreResult("ConfigMap/shop/flags", restored=["/data/x"])})
    assert rehearse(gateway, None, ["rc-snap-1"]) == (True, "1 inverses dry-run on the apiserver: all apply")


class Rehearsals(Answers):
    def __init__(self, **answers):
        super().__init__(**answers)
        self.asked: list[str] = []

    def restore(self, write, snapshot, *, action, dry_run=False):
        self.asked.append(snapshot)
        return super().restore(write, snapshot, action=action, dry_run=dry_run)


def test_at_the_resolve_the_snapshots_found_in_the_cluster_are_rehearsed_even_when_no_status_listed_them():
    # A turn cut off after its writes and before its status (then resolved) never listed its snapshots.
    body = incident().model_dump(by_alias=True, exclude_none=True, mode="json")
    draft = Draft(None, Echoes(), body)  # type: ignore[arg-type] - nothing here talks to the apiserver
    draft.status.mode = "enforce"
    assert not draft.status.snapshots
    gateway = Rehearsals(**{"rc-snap-1": RestoreResult("ConfigMap/shop/flags", restored=["/data/x"])})
    rehearse_at_resolve(draft, gateway, {"flags": ["rc-snap-1"]}, again=True)  # type: ignore[arg-type]
    assert gateway.asked == ["rc-snap-1"]
    tested = next(c for c in draft.status.conditions if c.type == "RollbackTested")
    assert (tested.status, tested.reason) == ("True", "DryRunApplies")
