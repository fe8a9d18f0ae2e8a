"""Where credentials may go (gitops/trust.py): the Secret's opt-in and the admin's host allow-list."""

from __future__ import annotations

import http.server
import os
import posixpath
import re
import subprocess
import threading
from urllib.parse import unquote

import pytest
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert "not scheme://host/path" in host_refusal("git@git.example.com:t/r.git", ["git.example.com"])


# ------------------------------------------------------------------ normalising before matching
# A Secret for https://git.example.com/team/ must never reach /platform/: git (libcurl) resolves
# dot segments before sending, and servers decode percent-encoding and merge slashes.

TEAM = "https://git.example.com/team/"


ATTACKS = [
    "https://git.example.com/team/../platform/cluster.git",  # the reported escape
    "https://git.example.com/team/./../platform/cluster.git",
    "https://git.example.com/team/x/../../platform/cluster.git",
    "https://git.example.com/team/%2e%2e/platform/cluster.git",  # encoded dots
    "https://git.example.com/team/%2E%2E/platform/cluster.git",
    "https://git.example.com/team/.%2e/platform/cluster.git",
    "https://git.example.com/team/%2e./platform/cluster.git",
    "https://git.example.com/team/..%2fplatform/cluster.git",  # encoded slash
    "https://git.example.com/team/x%2F..%2F..%2Fplatform/cluster.git",
    "https://git.example.com/team/%252e%252e/platform/cluster.git",  # double encoding
    "https://git.example.com/team/x//../../platform/cluster.git",  # curl keeps //, slash-merging servers do not
    "https://git.example.com/team/..;/platform/cluster.git",  # path parameter (Tomcat)
    "https://git.example.com/team\\..\\platform/cluster.git",  # backslash
    "https://git.example.com/team/cluster.git?x=/../../platform",
    "https://git.example.com/team/cluster.git#/../../platform",
    "https://git.example.com/team/cluster.git/../../platform/cluster.git",
    "https://git.example.com/team",  # the prefix itself is not under it
    "https://git.example.com/team/..",
    "https://git.example.com/team/%ff/cluster.git",  # not UTF-8
    "https://git.example.com/team/cluster.git%0a",
    "https://git%2eexample.com/team/cluster.git",
]
SPELLINGS = [
    "https://git.example.com/team/cluster.git",
    "HTTPS://GIT.EXAMPLE.COM/team/cluster.git",  # case of scheme and host
    "https://git.example.com:443/team/cluster.git",  # default port
    "https://git.example.com./team/cluster.git",  # the root label
    "https://user:secret@git.example.com/team/cluster.git",  # userinfo is not where
    "https://git.example.com/team/cluster.git/",  # trailing slash
    "https://git.example.com/team/./cluster.git",
    "https://git.example.com/team/x/../cluster.git",
    "https://git.example.com/platform/../team/cluster.git",
    "https://git.example.com/te%61m/cluster.git",  # encoded unreserved letter
    "https://git.example.com/team/cluster%2Egit",
]


@pytest.mark.parametrize("url", ATTACKS)
def test_no_spelling_of_another_path_matches_a_prefix(url):
    assert url_allowed(TEAM, url) is False


@pytest.mark.parametrize("url", SPELLINGS)
def test_equivalent_spellings_of_a_repository_under_a_prefix_match_it(url):
    assert url_allowed(TEAM, url) is True


def test_a_prefix_secret_is_normalised_too():
    assert url_allowed("https://GIT.example.com:443/platform/../team/", "https://git.example.com/team/r.git")
    assert not url_allowed("https://git.example.com/platform/../team/", "https://git.example.com/platform/r.git")
    assert not url_allowed("https://git.example.com/team%2F/", "https://git.example.com/team/r.git")


def test_an_ambiguous_url_is_refused_with_the_reason():
    why = credentials_refusal("https://git.example.com/team/..%2fplatform/r.git", "shop", "rc", "c", OPT_IN,
                              {"url": TEAM, "namespaces": "*"})
    assert "ambiguous" in why and "encoded '/'" in why
    why = host_refusal("https://git.example.com/team/x//../r.git", ["git.example.com"])
    assert "empty segment" in why


# Property: whatever a drawn URL spells, when the Secret's prefix matches it, every reading of its
# path that a client or server is known to make lands under the prefix. The readings come from
# code other than gitops/trust.py: yarl (RFC 3986 resolution, as libcurl sends it), and
# posixpath.normpath over once- and twice-decoded text (servers that decode, merge slashes, clean).

SEGMENTS = ["team", "platform", "x", "r.git", "..", ".", "", "%2e%2e", "%2E.", ".%2e", "%2e", "%2f", "%2F..%2F",
            "%252e%252e", "..;", "te%61m", "%5C..", "%00"]


def readings(url: str) -> list[str]:
    path = url.split("git.example.com", 1)[1]
    return [yarl.URL(url).path,
            posixpath.normpath(unquote(path)),
            posixpath.normpath(unquote(unquote(path))),
            posixpath.normpath(unquote(path).replace("\\", "/"))]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=8), st.booleans())
def test_a_matched_url_lands_under_the_prefix_however_it_is_read(segments, trailing_slash):
    url = "https://git.example.com/" + "/".join(segments) + ("/" if trailing_slash else "")
    if url_allowed(TEAM, url):
        for reading in readings(url):
            assert reading.startswith("/team/"), (url, reading)


NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)


@st.composite
def spelled(draw, path: list[str]) -> str:
    """``path`` under git.example.com, spelled any of the ways that name the same repository."""
    host = "".join(c.upper() if draw(st.booleans()) else c for c in "git.example.com")
    scheme = draw(st.sampled_from(["https", "HTTPS", "Https"]))
    port = draw(st.sampled_from(["", ":443"]))
    userinfo = draw(st.sampled_from(["", "user@", "user:pw@"]))
    out: list[str] = []
    for segment in path:
        out += draw(st.sampled_from([[], ["."], [draw(NAME), ".."]]))  # detours that come back
        out.append("".join(f"%{ord(c):02x}" if draw(st.booleans()) else c for c in segment))
    return f"{scheme}://{userinfo}{host}{port}/" + "/".join(out) + draw(st.sampled_from(["", ".git", "/", ".git/"]))


@settings(max_examples=300, deadline=None)
@given(st.data(), st.lists(NAME, min_size=1, max_size=3))
def test_every_spelling_of_a_repository_is_judged_as_its_plain_form(data, rest):
    assert url_allowed(TEAM, data.draw(spelled(["team", *rest])))
    assert not url_allowed(TEAM, data.draw(spelled(["platform", *rest])))


# Real git as the oracle: what it requests (libcurl resolves the URL before sending), read the
# ways servers read paths, lands under the prefix whenever the prefix matched, for every URL of
# the two tables above (served on 127.0.0.1 instead of git.example.com; git over plain http).


@pytest.fixture(scope="module")
def recorder():
    requested: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requested.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], requested
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url", [u for u in ATTACKS + SPELLINGS if "%2eexample" not in u])  # a host git can reach
def test_what_git_requests_for_a_matched_url_is_under_the_prefix(recorder, url, tmp_path):
    port, requested = recorder
    local = re.sub(r"^https://(?:[^@/]*@)?git\.example\.com\.?(?::443)?", f"http://127.0.0.1:{port}", url,
                   flags=re.IGNORECASE)
    assert local != url
    requested.clear()
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path),
           "GIT_TERMINAL_PROMPT": "0", "PATH": os.environ["PATH"]}
    subprocess.run(["git", "ls-remote", local], env=env, capture_output=True, timeout=30)
    if not url_allowed(f"http://127.0.0.1:{port}/team/", local):
        return
    assert requested, f"git requested nothing for {local}"
    sent = requested[0].split("?", 1)[0]
    # Servers decode (RFC 3986 2.3: %61 is "a"), some twice, and some merge slashes and clean dots.
    for reading in (posixpath.normpath(unquote(sent)), posixpath.normpath(unquote(unquote(sent)))):
        assert reading.startswith("/team/"), (url, requested[0])
