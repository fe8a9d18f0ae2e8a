"""Forge webhooks, the pure parts: each forge's authentication, and which pull request a payload names.

Oracles: GitHub's own documented test vector for ``X-Hub-Signature-256`` (docs.github.com, "Validating
webhook deliveries": secret ``It's a Secret to Everybody``, payload ``Hello, World!``), which Gitea's
``X-Gitea-Signature`` is without the ``sha256=`` prefix; recorded payload shapes of GitHub and GitLab
(tests/unit/fixtures/forge_hooks/recorded_*.json, trimmed, their source named inside); and the
repository URL a PatchPlan would carry, reduced by ``gitops.forges.repository_path``. Gitea's real
payloads and signatures are in tests/e2e/test_forge_webhook.py, against a real Gitea.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from reliability_center.api.patchplan import PatchPlanStatus
from reliability_center.gitops import lifecycle as lc
from reliability_center.gitops.forges import repository_path
from reliability_center.intake.forge_hooks import Refusal, TokenBucket, authenticate, pull_request_event

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "forge_hooks"
#: GitHub's documented test vector.
SECRET, BODY = "It's a Secret to Everybody", b"Hello, World!"
HEX = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def refused(forge: str, headers: dict[str, str], body: bytes = BODY, secret: str = SECRET) -> str:
    with pytest.raises(Refusal) as caught:
        authenticate(forge, headers, body, secret)
    assert caught.value.status == 401
    return caught.value.reason


# ------------------------------------------------------------------------------ authentication


def test_github_signature_is_the_documented_sha256_prefixed_hmac_of_the_body():
    authenticate("github", {"X-Hub-Signature-256": f"sha256={HEX}"}, BODY, SECRET)
    authenticate("github", {"X-Hub-Signature-256": f"sha256={HEX.upper()}"}, BODY, SECRET)  # hex either case
    assert refused("github", {"X-Hub-Signature-256": f"sha256={HEX}"}, BODY + b" ") == "InvalidSignature"
    assert refused("github", {"X-Hub-Signature-256": f"sha256={HEX}"}, secret=SECRET + "!") == "InvalidSignature"
    assert refused("github", {"X-Hub-Signature-256": HEX}) == "InvalidSignature"  # Gitea's form is not GitHub's
    assert refused("github", {"X-Gitea-Signature": HEX}) == "Unauthorized"  # another forge's header counts for nothing
    assert refused("github", {}) == "Unauthorized"


def test_gitea_signature_is_the_bare_hex_hmac_of_the_body():
    authenticate("gitea", {"X-Gitea-Signature": HEX}, BODY, SECRET)
    assert refused("gitea", {"X-Gitea-Signature": f"sha256={HEX}"}) == "InvalidSignature"
    assert refused("gitea", {"X-Gitea-Signature": HEX[:-1] + "0"}) == "InvalidSignature"
    assert refused("gitea", {"X-Gitea-Signature": HEX}, b'{"action": "closed"}') == "InvalidSignature"
    assert refused("gitea", {"X-Hub-Signature-256": f"sha256={HEX}"}) == "Unauthorized"
    assert refused("gitea", {"X-Gitea-Signature": "é" + HEX}) == "InvalidSignature"  # not ASCII: not a signature


def test_gitlab_token_is_the_secret_itself_and_nothing_else():
    authenticate("gitlab", {"X-Gitlab-Token": SECRET}, BODY, SECRET)
    assert refused("gitlab", {"X-Gitlab-Token": SECRET + "x"}) == "InvalidToken"
    assert refused("gitlab", {"X-Gitlab-Token": HEX}) == "InvalidToken"  # a signature is not the token
    assert refused("gitlab", {"X-Hub-Signature-256": f"sha256={HEX}"}) == "Unauthorized"
    assert refused("gitlab", {"X-Gitlab-Token": "\udcff" + SECRET}) == "InvalidToken"  # aiohttp's surrogate escape


# ------------------------------------------------------------------------------ which pull request


def test_the_recorded_github_pull_request_event_names_the_plans_repository_and_number():
    event = pull_request_event("github", "pull_request", recorded("recorded_github_pull_request_closed.json"))
    assert event is not None
    assert (event.repository, event.number, event.action) == ("codertocat/hello-world", 2, "closed")
    # What the index holds for a plan on that repository, whichever URL form its spec uses.
    for url in ("https://github.com/Codertocat/Hello-World.git", "git@github.com:codertocat/hello-world.git"):
        assert repository_path(url) == event.repository


def test_the_recorded_gitlab_merge_request_event_names_the_target_project_and_iid():
    event = pull_request_event("gitlab", "Merge Request Hook", recorded("recorded_gitlab_merge_request_merge.json"))
    assert event is not None
    assert (event.repository, event.number, event.action) == ("gitlabhq/gitlab-test", 1, "merge")
    assert repository_path("http://example.com/gitlabhq/gitlab-test.git") == event.repository


def test_other_events_are_ignored_and_a_pull_request_event_without_its_number_is_refused():
    payload = recorded("recorded_github_pull_request_closed.json")
    assert pull_request_event("github", "push", payload) is None
    assert pull_request_event("gitlab", "Push Hook", payload) is None
    assert pull_request_event("github", None, payload) is None
    for broken in ({**payload, "number": None, "pull_request": {}}, {**payload, "repository": None},
                   {**payload, "number": True}, [1, 2]):
        with pytest.raises(Refusal) as caught:
            pull_request_event("github", "pull_request", broken)
        assert (caught.value.status, caught.value.reason) == (400, "InvalidPayload")


def test_a_merge_claimed_by_a_payload_is_not_read_from_it():
    """The event carries no state: what the payload says of the merge cannot reach the reconciler."""
    payload = recorded("recorded_gitlab_merge_request_merge.json")
    event = pull_request_event("gitlab", "Merge Request Hook", payload)
    assert set(vars(event)) == {"forge", "repository", "number", "action"}
    assert payload["object_attributes"]["merge_commit_sha"] not in json.dumps(vars(event))


# ------------------------------------------------------------------------------ limits and polls


def test_the_bucket_admits_its_burst_then_refuses_until_it_refills():
    bucket = TokenBucket(rate=0.001, burst=5)
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2


@pytest.mark.parametrize(("status", "rollback", "waits"), [
    ({"phase": "Proposed"}, False, True),
    ({"phase": "Proposed"}, True, True),
    ({"phase": "RollingBack", "revert": {"number": 4}}, True, True),
    ({"phase": "RollingBack", "revert": {"number": 4, "mergeCommit": "abc"}}, True, False),  # its sync now
    ({"phase": "Merged", "pullRequest": {"number": 3, "mergeCommit": "abc"}}, False, False),
    (None, False, False),  # Pending: proposing
])
def test_only_a_wait_on_a_pull_request_is_left_to_the_slow_poll(status, rollback, waits):
    parsed = PatchPlanStatus.model_validate(status) if status else None
    assert lc.waits_on_pull_request(parsed, rollback) is waits
