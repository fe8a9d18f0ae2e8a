"""relctl without a cluster: help, usage errors, completion, the kubeconfig's namespace, describe's layout,
and the approval hint the operator prints being a command relctl accepts as printed."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from reliability_center.api.incident import IncidentStatus
from reliability_center.cli.get import describe_incident
from reliability_center.cli.main import cli, main
from reliability_center.cli.session import Session
from reliability_center.engine.plan import Facts, plan
from reliability_center.engine.progress import AwaitStep, next_decision
from tests.unit.factories import incident, runbook

RELCTL = str(Path(sys.executable).with_name("relctl"))


def commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def relctl(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.parametrize("path", [p for p, _ in commands(cli)], ids=" ".join)
def test_every_command_has_help_with_an_example(path, capsys):
    code, out, err = relctl([*path, "--help"], capsys)
    assert code == 0 and err == ""
    assert "Example" in out and f"relctl {' '.join(path)}" in out.split("Example", 1)[1]


def test_a_usage_error_is_one_line_and_exit_2(capsys):
    for argv in (["get", "incidents", "--bogus"], ["get", "pods"], ["approve", "only-the-incident"], ["nope"]):
        code, out, err = relctl(argv, capsys)
        assert (code, out, len(err.splitlines())) == (2, "", 1), (argv, err)
        assert err.startswith("error: ") and "--help" in err


def test_a_failure_is_one_line_and_exit_1_never_a_traceback(tmp_path, capsys):
    code, out, err = relctl(["--kubeconfig", str(tmp_path / "missing"), "steps", "x", "-n", "y"], capsys)
    assert (code, out, len(err.splitlines())) == (1, "", 1) and err.startswith("error: kubeconfig: ")
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump(kubeconfig({"a": "ns-a"}, current="a")))
    code, _, err = relctl(["--kubeconfig", str(config), "--context", "nope", "gates", "x"], capsys)
    assert (code, len(err.splitlines())) == (1, 1) and err.startswith("error: kubeconfig: ") and "nope" in err
    # Nothing listens on the kubeconfig's server: the client's error, on one line.
    code, out, err = relctl(["--kubeconfig", str(config), "get", "incidents"], capsys)
    assert (code, out, len(err.splitlines())) == (1, "", 1) and err.startswith("error: "), err


def kubeconfig(namespaces: dict[str, str | None], current: str) -> dict:
    return {"apiVersion": "v1", "kind": "Config", "current-context": current,
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": name, "context": {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})}}
                         for name, ns in namespaces.items()]}


@pytest.mark.parametrize(("context", "flag", "expected"), [
    (None, None, "ns-a"),            # the current context's namespace
    ("b", None, "ns-b"),             # --context picks another context, and its namespace
    ("bare", None, "default"),       # a context without one: default, as kubectl
    ("b", "mine", "mine"),           # -n wins
])
def test_the_namespace_is_the_flag_else_the_context_s_else_default(tmp_path, context, flag, expected):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig({"a": "ns-a", "b": "ns-b", "bare": None}, current="a")))
    session = Session()
    session.kubeconfig, session.context, session.namespace = str(path), context, flag
    assert session.ns == expected


def test_completion_scripts_for_bash_and_zsh_complete_commands_and_kinds():
    script = subprocess.run([RELCTL, "completion", "bash"], capture_output=True, text=True, check=True).stdout
    # bash accepts the script and registers the function for relctl.
    registered = subprocess.run(["bash", "-c", f"{script}\ncomplete -p relctl"], capture_output=True, text=True)
    assert registered.returncode == 0 and "_relctl_completion" in registered.stdout, registered.stderr
    assert "#compdef relctl" in subprocess.run([RELCTL, "completion", "zsh"], capture_output=True, text=True,
                                               check=True).stdout
    # What the scripts ask relctl for, by their own protocol.
    env = {**os.environ, "_RELCTL_COMPLETE": "bash_complete", "COMP_WORDS": "relctl get inc", "COMP_CWORD": "2"}
    answer = subprocess.run([RELCTL], env=env, capture_output=True, text=True).stdout.split()
    assert answer == ["plain,inc", "plain,incident", "plain,incidents"]
    env.update(_RELCTL_COMPLETE="zsh_complete", COMP_WORDS="relctl desc", COMP_CWORD="1")
    assert subprocess.run([RELCTL], env=env, capture_output=True, text=True).stdout.splitlines()[:2] == \
        ["plain", "describe"]


def test_the_approval_hint_is_a_command_relctl_accepts_as_printed():
    steps = [{"name": "flags", "level": 1, "action": "feature-flags-off"},
             {"name": "reindex", "level": 2, "action": "run-job", "params": {"cronJob": "r"},
              "approval": {"required": True}}]
    inc, rb = incident(), runbook(steps=steps)
    status = IncidentStatus(steps=plan(inc, rb, Facts(now="2026-11-27T12:00:00Z")))
    status.steps[0].state = "Succeeded"
    decision = next_decision(inc, rb, status, "2026-11-27T12:00:00Z")
    assert isinstance(decision, AwaitStep) and decision.reason == "ApprovalRequired"
    hint = shlex.split(decision.message.rsplit(": ", 1)[1])
    assert hint[0] == "relctl"
    approve = cli.commands[hint[1]]
    ctx = approve.make_context(hint[1], hint[2:], obj=Session())
    assert (ctx.params, ctx.obj.namespace) == ({"name": "inc", "step": "reindex", "comment": "", "digest": None}, "ns")


def test_describe_shows_steps_approvals_plans_with_their_links_and_the_last_entries():
    body = {"metadata": {"name": "slow", "namespace": "shop"},
            "spec": {"category": "perf", "tenant": "acme", "severity": "high"},
            "status": {"phase": "Escalated", "level": 3,
                       "steps": [{"name": "adjust", "level": 2, "action": "feature-flags-off", "state": "Succeeded",
                                  "targets": ["ConfigMap/shop/flags-search"],
                                  "approval": {"planDigest": "sha256:p", "approved": True, "votes": [
                                      {"approval": "a1", "user": "alice", "decision": "Approve", "counted": True},
                                      {"approval": "a2", "user": "carol", "decision": "Approve", "counted": False,
                                       "reason": "created the incident"}]}}],
                       "plans": [{"name": "slow-fix", "phase": "Proposed", "pullRequest": "http://git/pr/7"}],
                       "conditions": [{"type": "Ready", "status": "False", "reason": "Escalated", "message": "m"}],
                       "timeline": [{"time": f"2026-01-01T00:00:{i:02d}Z", "event": f"e{i}"} for i in range(13)]}}
    merged = {"metadata": {"name": "slow-fix", "labels": {}},
              "status": {"phase": "Merged", "pullRequest": {"url": "http://git/pr/7"}}}
    text = describe_incident(body, [merged], last=3)
    rows = {line.split()[1]: line.split() for line in text.splitlines() if line.startswith("  2 ")}
    assert rows["adjust"][2:] == ["feature-flags-off", "Succeeded", "alice", "ConfigMap/shop/flags-search"]
    assert "adjust approval: approved by carol at ? (not counted: created the incident)" in text
    assert ["slow-fix", "fix", "Merged", "http://git/pr/7"] in [line.split() for line in text.splitlines()]
    assert "Timeline (last 3 of 13" in text and "e9" not in text and "e10" in text and "e12" in text
    assert ["Ready", "False", "Escalated", "m"] in [line.split() for line in text.splitlines()]


@pytest.mark.parametrize("argv", [
    ["get", "incidents", "-n", "x", "--as-group", "sre"],
    ["--as-group", "sre", "describe", "incident", "x", "-n", "x"],
    ["approve", "inc", "step", "-n", "x", "--as-group", "sre", "--as-group", "oncall"],
])
def test_as_group_without_as_is_a_usage_error_as_in_kubectl(argv, tmp_path, capsys):
    # Seen before: the groups were dropped silently and the command ran as the kubeconfig's own user.
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump(kubeconfig({"a": "ns-a"}, current="a")))
    code, out, err = relctl(["--kubeconfig", str(config), *argv], capsys)
    assert (code, out, len(err.splitlines())) == (2, "", 1), err
    assert err.startswith("error: --as-group needs --as: groups are impersonated along with a user (see 'relctl ")
