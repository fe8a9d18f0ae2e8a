"""``relctl`` as an engineer runs it (the console script, and ``kubectl relctl``) against the real apiserver.

Oracles: the CRD files' printer columns, ``kubectl get`` on the same objects, the specs this test
wrote, and the kubeconfig this test wrote. No operator acts on these objects: what is printed is
what was created.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import BIN, ROOT, TEST_LABELS, apply_docs, kubectl
from tests.support.incidents import create, incident, patch_plan as plan, wait_phase

#: The console script pip installed beside this interpreter: the command an engineer runs.
RELCTL = str(Path(sys.executable).with_name("relctl"))


def run(*args: str, env: dict[str, str] | None = None, cmd: tuple[str, ...] = (RELCTL,)) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, env=env)


def ok(*args: str, **kw) -> str:
    result = run(*args, **kw)
    assert result.returncode == 0, result.stderr
    return result.stdout


def printer_columns(plural: str, wide: bool = False) -> list[str]:
    """The header kubectl prints, read from the generated CRD file."""
    crd = yaml.safe_load((ROOT / "crds" / f"reliability.center_{plural}.yaml").read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    return ["NAME"] + [c["name"].upper() for c in columns if wide or not c.get("priority")]


@pytest.fixture
def two(namespace: str, kube) -> str:
    create(namespace, incident("slow", category="perf", module="search", labels={"team": "search"}))
    create(namespace, incident("bill", category="billing", module="billing", severity="critical"))
    for name in ("slow", "bill"):  # settled: the tables below are read one after the other
        wait_phase(namespace, name, {"Mitigated", "Escalated", "Failed"})
    return namespace


def test_get_prints_every_output_format(two):
    ns = two
    table = ok("get", "incidents", "-n", ns).splitlines()
    assert table[0].split() == printer_columns("incidents")
    # The same table kubectl prints (AGE aside: a second may tick between the two calls).
    theirs = kubectl("get", "incidents", "-n", ns).stdout.splitlines()
    assert [line.split()[:-1] for line in table] == [line.split()[:-1] for line in theirs]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["bill"][1:4] == ["billing", "acme", "critical"]

    wide = ok("get", "inc", "-n", ns, "-o", "wide").splitlines()
    assert wide[0].split() == printer_columns("incidents", wide=True)
    assert "RUNBOOK" in wide[0] and "RUNBOOK" not in table[0]

    listed = json.loads(ok("get", "incidents", "-n", ns, "-o", "json"))
    assert listed["kind"] == "List" and {i["metadata"]["name"] for i in listed["items"]} == {"slow", "bill"}
    one = yaml.safe_load(ok("get", "incident", "slow", "-n", ns, "-o", "yaml"))
    assert one["kind"] == "Incident" and one["spec"]["module"] == "search"
    assert ok("get", "incidents", "-n", ns, "-o", "name").split() == \
        ["incident.reliability.center/bill", "incident.reliability.center/slow"]

    assert ok("get", "incidents", "-n", ns, "-l", "team=search", "-o", "name").split() == \
        ["incident.reliability.center/slow"]
    everywhere = ok("get", "incidents", "-A").splitlines()
    assert everywhere[0].split() == ["NAMESPACE", *printer_columns("incidents")]
    assert [ns, "slow"] in [line.split()[:2] for line in everywhere[1:]]

    apply_docs(ns, [plan("slow-fix", "slow")])
    plans = ok("get", "patchplans", "-n", ns).splitlines()
    assert plans[0].split() == printer_columns("patchplans") and plans[1].split()[:2] == ["slow-fix", "slow"]
    runbook = {"apiVersion": "reliability.center/v1alpha1", "kind": "Runbook",
               "metadata": {"name": f"rb-{ns}", "labels": TEST_LABELS},
               "spec": {"match": {"category": f"c-{ns}"[:63]},
                        "steps": [{"name": "flags", "level": 1, "action": "feature-flags-off"}]}}
    apply_docs(None, [runbook])
    try:  # cluster-scoped: -n is ignored, the runbook is listed wherever the command runs
        runbooks = ok("get", "runbooks", "-o", "wide", "-n", ns).splitlines()
    finally:
        kubectl("delete", "runbook", f"rb-{ns}", "--wait=false")
    assert runbooks[0].split() == printer_columns("runbooks", wide=True)
    assert f"rb-{ns}" in {line.split()[0] for line in runbooks[1:]}

    described = ok("describe", "incident", "slow", "-n", ns)
    assert "Name:       slow" in described and "Steps:" in described and "Conditions:" in described
    assert "slow-fix" in described  # its PatchPlan, found by label


def test_watch_prints_a_line_when_an_incident_changes(two):
    ns = two
    proc = subprocess.Popen([RELCTL, "get", "incidents", "-n", ns, "-w"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()

    def next_line(deadline: float) -> str:
        try:
            return lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("relctl -w printed no new line in time") from None

    try:
        deadline = time.monotonic() + 30
        assert next_line(deadline).split() == printer_columns("incidents")
        assert {next_line(deadline).split()[0] for _ in range(2)} == {"bill", "slow"}
        kubectl("patch", "incident", "slow", "-n", ns, "--type=merge", "-p", '{"spec":{"severity":"low"}}')
        while True:  # the change comes as one line with the new value
            cells = next_line(deadline).split()
            if cells[0] == "slow" and cells[3] == "low":
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_namespace_and_context_come_from_the_kubeconfig(two, tmp_path):
    ns = two
    config = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    config["contexts"].append({"name": "on-call", "context": {**current["context"], "namespace": ns}})
    plain = tmp_path / "kubeconfig"
    plain.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}

    # --context picks the context, and its namespace is the default one.
    assert ok("--kubeconfig", str(plain), "--context", "on-call", "get", "inc", "-o", "name", env=env).split() == \
        ["incident.reliability.center/bill", "incident.reliability.center/slow"]
    # The current context's namespace, when the kubeconfig makes that context current.
    config["current-context"] = "on-call"
    (tmp_path / "current").write_text(yaml.safe_dump(config))
    assert "slow" in ok("get", "incidents", "--kubeconfig", str(tmp_path / "current"), env=env)
    # A context without a namespace: "default", as kubectl does.
    result = run("describe", "incident", "slow", "--kubeconfig", str(plain), env=env)
    assert result.stderr.splitlines() == ['error: incident "slow" not found in namespace "default"']


def test_the_kubectl_plugin_takes_kubectl_flags(two):
    ns = two
    env = {**os.environ, "PATH": os.pathsep.join([str(ROOT / "bin"), str(Path(RELCTL).parent), str(BIN),
                                                 os.environ["PATH"]])}
    kube = (str(BIN / "kubectl"), "relctl")
    assert ok("get", "incidents", "-n", ns, env=env, cmd=kube).splitlines()[0].split() == \
        printer_columns("incidents")
    context = kubectl("config", "current-context").stdout.strip()
    assert ok("--context", context, "get", "incident", "slow", "--namespace", ns, "-o", "name",
              "--kubeconfig", os.environ["KUBECONFIG"], env=env, cmd=kube).strip() == \
        "incident.reliability.center/slow"


def test_a_missing_object_is_one_line_and_exit_1(namespace, kube):
    ns = namespace
    wanted = f'error: incident "nope" not found in namespace "{ns}"'
    for args in (["get", "incident", "nope"], ["describe", "incident", "nope"], ["resolve", "nope"],
                 ["approve", "nope", "some-step"], ["gates", "nope"], ["timeline", "nope"], ["steps", "nope"],
                 ["postmortem", "nope"]):
        result = run(*args, "-n", ns)
        assert (result.returncode, result.stderr.splitlines(), result.stdout) == (1, [wanted], ""), args
    result = run("rollback", f"{ns}/nope")
    assert (result.returncode, result.stderr.splitlines()) == (1, [f"error: PatchPlan {ns}/nope not found"])


def test_a_bad_flag_or_argument_is_a_usage_error_exit_2(namespace):
    for args in (["get", "incidents", "--bogus"], ["get", "pods"], ["describe", "incident"], ["frobnicate"]):
        result = run(*args, "-n", namespace)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, (args, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_get_and_its_watch_ask_the_apiserver_as_the_user_and_groups_named_by_as(namespace):
    # Seen before: get and get -w sent raw requests with the kubeconfig's own (admin) credentials, whatever
    # --as said. The oracle is the apiserver's RBAC: a group that may list incidents here, but not watch them.
    ns = namespace
    apply_docs(ns, [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "incident-lister"},
         "rules": [{"apiGroups": ["reliability.center"], "resources": ["incidents"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "incident-lister"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "incident-lister"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "listers"}]}])
    create(ns, incident("seen", category="c-none", module="search"))

    nobody = run("get", "incidents", "-n", ns, "--as", "nobody")
    assert nobody.returncode == 1 and 'User "nobody" cannot list resource "incidents"' in nobody.stderr, nobody
    listed = ok("get", "incidents", "-n", ns, "--as", "carol", "--as-group", "listers")
    assert listed.splitlines()[1].split()[0] == "seen"
    try:  # the list is allowed, the watch is not: it must end with the apiserver's refusal, not stream
        watched = subprocess.run([RELCTL, "get", "incidents", "-n", ns, "-w", "--as", "carol", "--as-group", "listers"],
                                 capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("relctl get -w kept watching: it did not ask as carol") from None
    assert watched.returncode == 1 and 'User "carol" cannot watch resource "incidents"' in watched.stderr, watched
    assert watched.stdout.splitlines()[1].split()[0] == "seen"  # listed first, as carol
