"""Where credentials may go (gitops/trust.py): the Secret's opt-in and the admin's host allow-list."""

from __future__ import annotations

import pytest

from reliability_center.gitops.trust import credentials_refusal, host_refusal, url_allowed

OPT_IN = {"reliability.center/secret-type": "repository"}


@pytest.mark.parametrize("pattern, url, allowed", [
    ("https://git.example.com/team/gitops.git", "https://git.example.com/team/gitops.git", True),
    ("https://git.example.com/team/gitops", "https://git.example.com/team/gitops.git", True),
    ("https://git.example.com/team/", "https://git.example.com/team/gitops.git", True),
    ("https://git.example.com/team/", "https://git.example.com/team-b/gitops.git", False),  # segment boundary
    ("https://git.example.com/team", "https://git.example.com/team/gitops.git", False),  # no slash: one repo
    ("https://git.example.com/team/", "http://git.example.com/team/gitops.git", False),  # scheme
    ("https://git.example.com/team/", "https://git.example.com:8443/team/gitops.git", False),  # port
    ("https://git.example.com:443/team/", "https://GIT.example.com/team/gitops.git", True),  # default port, case
    ("https://git.example.com/team/", "https://git.example.com.evil.io/team/gitops.git", False),
    ("https://git.example.com/team/", "https://evil.io/git.example.com/team/gitops.git", False),
    ("https://git.example.com/team/", "git@git.example.com:team/gitops.git", False),  # ssh: no token
])
def test_a_url_pattern_names_one_repository_or_a_prefix_on_a_segment_boundary(pattern, url, allowed):
    assert url_allowed(pattern, url) is allowed


def test_a_secret_that_did_not_opt_in_names_the_missing_label():
    why = credentials_refusal("https://git.example.com/t/r.git", "shop", "rc", "creds", {},
                              {"url": "https://git.example.com/t/r.git"})
    assert "does not opt in" in why and "reliability.center/secret-type=repository" in why


def test_a_secret_without_a_url_goes_nowhere():
    assert "names no 'url'" in credentials_refusal("https://h/t/r", "shop", "rc", "creds", OPT_IN, {"token": "x"})


def test_a_secret_serves_only_the_namespaces_it_names_or_its_own():
    url = "https://h/t/r.git"
    assert credentials_refusal(url, "shop", "rc", "c", OPT_IN, {"url": url, "namespaces": "shop, billing"}) is None
    assert "billing only" in credentials_refusal(url, "shop", "rc", "c", OPT_IN, {"url": url, "namespaces": "billing"})
    assert credentials_refusal(url, "any", "rc", "c", OPT_IN, {"url": url, "namespaces": "*"}) is None
    assert credentials_refusal(url, "rc", "rc", "c", OPT_IN, {"url": url}) is None  # absent: its own namespace
    assert "rc only" in credentials_refusal(url, "shop", "rc", "c", OPT_IN, {"url": url})


def test_a_refusal_never_shows_userinfo_from_a_url():
    why = credentials_refusal("https://user:pw@evil.io/t/r.git", "shop", "rc", "c", OPT_IN,
                              {"url": "https://h/t/", "namespaces": "*"})
    assert "pw" not in why and "***@evil.io" in why


def test_the_host_allow_list_bounds_every_repository():
    assert host_refusal("https://anything/t/r.git", []) is None  # no list: no bound
    assert host_refusal("https://git.example.com/t/r.git", ["git.example.com"]) is None
    assert host_refusal("https://git.corp.example/t/r.git", ["*.corp.example"]) is None
    assert host_refusal("http://127.0.0.1:3000/t/r.git", ["127.0.0.1:3000"]) is None
    assert "127.0.0.1:3001 is not in" in host_refusal("http://127.0.0.1:3001/t/r.git", ["127.0.0.1:3000"])
    assert "must be http(s)" in host_refusal("git@git.example.com:t/r.git", ["git.example.com"])
