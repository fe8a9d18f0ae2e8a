"""The rollback rehearsal decides only on the apiserver's answer (``operator/closing.rehearse``).

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
