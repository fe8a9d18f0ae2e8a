"""Group commit's shared read (gateway/batch.GroupCommit.read): the writers of a busy object plan on the
apiserver's last answer about it, not on a read each, and a stale answer never makes a wrong write.

The apiserver here is a stand-in for one object that applies JSON patches as the apiserver does (the
``jsonpatch`` library, tests/unit/test_holds.py's ``apply``: a failed ``test`` refuses the whole patch) and
counts its reads; the batches are the real send loop, the parts the real holds planners.
"""

from __future__ import annotations

import copy

import pytest

from reliability_center.gateway.batch import GroupCommit
from reliability_center.gateway.holds import Edit
from reliability_center.gateway.kube import Conflict, Ref
from tests.unit.test_batch import write_part
from tests.unit.test_holds import PatchTestFailed, flags, records  # noqa: F401  (records: the autouse fixture)
from tests.unit.test_holds import apply as apply_alone

STORE = Ref("ConfigMap", "shop", "flags")


class Apiserver:
    """One object: reads counted, JSON patches applied whole or refused (a failed test: Conflict)."""

    def __init__(self, obj: dict):
        self.obj, self.reads, self.patches = obj, 0, 0

    def get(self, ref: Ref) -> dict:
        self.reads += 1
        return copy.deepcopy(self.obj)

    def json_patch(self, ref: Ref, ops: list[dict], *, dry_run: bool = False) -> dict:
        self.patches += 1
        try:
            after = apply_alone(self.obj, ops)
        except PatchTestFailed:
            raise Conflict("a JSON patch test failed: the object changed since it was read") from None
        if not dry_run:
            self.obj = after
        return copy.deepcopy(after)


def write(commits: GroupCommit, tenant: str, *, dry_run: bool = False) -> dict:
    """One writer's pass, as the gateway makes it: set out, read, plan, send."""
    with commits.writing(STORE, dry_run=dry_run) as writer:
        seen = commits.read(STORE, writer)
        commits.send(writer, write_part(seen, tenant, Edit(f"/data/search.tenant.{tenant}", "false")), seen)
    return seen


def test_the_writers_of_an_object_plan_on_the_last_patchs_response_not_a_read_each():
    apiserver = Apiserver(flags(search="true"))
    commits = GroupCommit(apiserver, fresh=60)
    write(commits, "acme")
    assert (apiserver.reads, apiserver.patches) == (1, 1)
    seen = write(commits, "globex")
    assert seen["data"] == {"search": "true", "search.tenant.acme": "false"}, "not the first patch's response"
    assert (apiserver.reads, apiserver.patches) == (1, 2)
    assert apiserver.obj["data"] == {"search": "true", "search.tenant.acme": "false", "search.tenant.globex": "false"}


def test_an_answer_older_than_fresh_is_read_again():
    apiserver = Apiserver(flags(search="true"))
    commits = GroupCommit(apiserver, fresh=0)
    write(commits, "acme")
    write(commits, "globex")
    assert (apiserver.reads, apiserver.patches) == (2, 2)


def test_a_dry_runs_answer_is_never_taken_for_the_object():
    apiserver = Apiserver(flags(search="true"))
    commits = GroupCommit(apiserver, fresh=60)
    write(commits, "acme", dry_run=True)
    assert commits.read(STORE)["data"] == {"search": "true"}
    assert apiserver.obj["data"] == {"search": "true"}


def test_a_stale_answer_costs_a_refused_patch_and_a_fresh_read_never_a_wrong_write():
    apiserver = Apiserver(flags(search="true"))
    commits = GroupCommit(apiserver, fresh=60)
    write(commits, "acme")
    # Someone else (kubectl) sets globex's key after that answer: the gateway's copy does not show it.
    apiserver.obj = {**apiserver.obj, "data": {**apiserver.obj["data"], "search.tenant.globex": "paused-by-oncall"}}
    with pytest.raises(Conflict):  # its writer plans again on a fresh read (WriteGateway.apply)
        write(commits, "globex")
    assert apiserver.obj["data"]["search.tenant.globex"] == "paused-by-oncall"
    assert apiserver.reads == 2, "the refused patch was not followed by a fresh read"
    assert commits.read(STORE)["data"]["search.tenant.globex"] == "paused-by-oncall", "the fresh read not kept"
