"""The Helm chart as an operator's users expect it: values checked by values.schema.json, an opt-in
ServiceMonitor and Grafana dashboard, readiness distinct from liveness, a bounded git cache, and CRDs
that upgrade from the previous chart version (git a7362df) by the README's documented step.

Oracles: helm and the real apiserver for what is accepted, real operator processes for the probes,
the operator's real /metrics and a real Prometheus (2.42) for the dashboard's queries."""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import METRICS_PORT, start_operator, stop_operator
from tests.support.cluster import BIN, ROOT, apply_docs, get_json, kubectl, load_yaml, wait_established, wait_for

HELM = BIN / "helm"
CHART = ROOT / "charts" / "reliability-center"
PREVIOUS = "a7362df"  # the chart before values.schema.json, the ServiceMonitor and the dashboard
RELEASE = "reliability-center"

Doc = dict[str, Any]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"helm is not built at {HELM}: run `bash hack/build-tools.sh`", pytrace=False)
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def render(*extra: str) -> list[Doc]:
    out = helm("template", RELEASE, str(CHART), "--namespace", "rc", *extra).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(rendered: list[Doc], kind: str) -> Doc:
    matches = [d for d in rendered if d["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def metrics_service(rendered: list[Doc]) -> Doc:
    """The metrics Service (the chart also renders the -webhooks one, for posts to the leader)."""
    return one([d for d in rendered if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "metrics"],
               "Service")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ values.schema.json


def test_helm_lint_strict_passes_with_the_schema(cluster: str) -> None:
    assert (CHART / "values.schema.json").is_file()
    for extra in ([], ["--set", "serviceMonitor.enabled=true", "--set", "dashboard.enabled=true",
                       "--set", "detectionRules.enabled=true"]):
        out = helm("lint", "--strict", str(CHART), *extra).stdout
        assert "0 chart(s) failed" in out, out


def test_the_schema_describes_every_value() -> None:
    """Every key of values.yaml has its place in the schema: none is left to pass unchecked."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: Doc, path: str) -> None:
        assert "type" in node or "enum" in node, f"{path or '/'}: no type in the schema"
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '/'}: a typo below it would pass"
            for name, child in value.items():
                assert name in node["properties"], f"{path}/{name} is not in values.schema.json"
                walk(child, node["properties"][name], f"{path}/{name}")

    walk(values, schema, "")


BAD_VALUES = {
    "a typo at the top": ({"replcas": 3}, "additional properties 'replcas' not allowed"),
    "a typo one level down": ({"metrics": {"prot": 9100}}, "additional properties 'prot' not allowed"),
    "a mode that does not exist": ({"mode": "enforcing"}, "/mode"),
    "a number as a string": ({"replicas": "two"}, "/replicas"),
    "a port out of range": ({"health": {"port": 70000}}, "/health/port"),
    "a size that is not a quantity": ({"gitCache": {"sizeLimit": "lots"}}, "/gitCache/sizeLimit"),
    "an interval Prometheus would refuse": ({"serviceMonitor": {"enabled": True, "interval": "30"}},
                                            "/serviceMonitor/interval"),
    "a URL without a scheme": ({"gates": {"prometheusURL": "prometheus:9090"}}, "/gates/prometheusURL"),
    "a pull policy that does not exist": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_values_that_break_the_schema_are_refused(case: str, tmp_path: pathlib.Path, cluster: str) -> None:
    values, says = BAD_VALUES[case]
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    for command in (["lint", "--strict", str(CHART)], ["template", RELEASE, str(CHART)]):
        result = helm(*command, "-f", str(path), check=False)
        assert result.returncode != 0, f"helm {command[0]} accepted {values}"
        assert says in result.stdout + result.stderr, result.stdout + result.stderr


# ------------------------------------------------------------------------------ ServiceMonitor


def test_the_service_monitor_is_opt_in_and_scrapes_the_metrics_service(cluster: str) -> None:
    assert "ServiceMonitor" not in {d["kind"] for d in render()}
    rendered = render("--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.interval=15s",
                      "--set", "serviceMonitor.labels.release=kube-prometheus-stack")
    monitor, service = one(rendered, "ServiceMonitor"), metrics_service(rendered)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")
    # Another release's metrics Service is not scraped as this one's.
    other = metrics_service(render("--set", "serviceMonitor.enabled=true"))
    other["metadata"]["labels"]["app.kubernetes.io/instance"] = "another"
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= other["metadata"]["labels"].items()
    # Without the metrics Service there is nothing to scrape: refused, not rendered dangling.
    refused = helm("template", RELEASE, str(CHART), "--set", "serviceMonitor.enabled=true",
                   "--set", "metrics.enabled=false", check=False)
    assert refused.returncode != 0 and "needs metrics.enabled" in refused.stderr


def test_the_kustomize_example_service_monitor_matches_the_chart(cluster: str) -> None:
    text = (ROOT / "manifests" / "prometheus" / "servicemonitor.example.yaml").read_text()
    commented = text.split("\n#\n", 1)[1]  # the object, after the explanation and a bare "#"
    example = yaml.safe_load("\n".join(line.removeprefix("#").removeprefix(" ") for line in commented.splitlines()))
    kustomize = [d for d in yaml.safe_load_all(kubectl("kustomize", str(ROOT / "manifests" / "default")).stdout) if d]
    service = next(d for d in kustomize if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics"))
    assert example["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert example["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    chart = one(render("--set", "serviceMonitor.enabled=true"), "ServiceMonitor")
    assert example["spec"]["endpoints"] == chart["spec"]["endpoints"]
    assert {k: v for k, v in chart["spec"]["selector"]["matchLabels"].items()
            if k != "app.kubernetes.io/instance"} == example["spec"]["selector"]["matchLabels"]


# ------------------------------------------------------------------------------ the intake: TLS and who may reach it


def test_the_intake_serves_tls_from_a_secret_and_only_alertmanager_reaches_its_port(cluster: str,
                                                                                  solo_namespace: str) -> None:
    rendered = render("--set", "intake.networkPolicy.alertmanagerNamespaceSelector.matchLabels"
                               ".kubernetes\\.io/metadata\\.name=observability",
                      "--set", "intake.networkPolicy.alertmanagerPodSelector.matchLabels.app\\.kubernetes\\.io/name=am")
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert env["RC_INTAKE_ALLOW_PLAIN_HTTP"] == "false"
    assert mounts["/etc/reliability-center/intake-tls"] == "intake-tls"
    assert secrets["intake-tls"] == f"{RELEASE}-intake-tls"
    assert env["RC_INTAKE_TLS_CERT_FILE"] == "/etc/reliability-center/intake-tls/tls.crt"
    assert env["RC_INTAKE_TLS_KEY_FILE"] == "/etc/reliability-center/intake-tls/tls.key"
    policy = one(rendered, "NetworkPolicy")
    selected = one(rendered, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == selected
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    to_intake, to_the_rest = policy["spec"]["ingress"]
    assert to_intake["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "am"}}}]
    assert to_intake["ports"] == [{"port": 9443, "protocol": "TCP"}]
    # The other rule opens the metrics and health ports only, never the intake's.
    assert "from" not in to_the_rest and {p["port"] for p in to_the_rest["ports"]} == {9090, 8080}
    # The apiserver takes it as rendered (a server-side dry run in a scratch namespace).
    policy["metadata"]["namespace"] = solo_namespace
    kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(policy))
    # Opting out drops it; plain HTTP is a value said outright.
    assert not [d for d in render("--set", "intake.networkPolicy.enabled=false") if d["kind"] == "NetworkPolicy"]
    plain = one(render("--set", "intake.allowPlainHTTP=true"), "Deployment")["spec"]["template"]["spec"]
    assert {e["name"]: e.get("value") for e in plain["containers"][0]["env"]}["RC_INTAKE_ALLOW_PLAIN_HTTP"] == "true"


# ------------------------------------------------------------------------------ the pod


def test_the_pod_is_bounded_and_probed_two_ways(cluster: str) -> None:
    rendered = render("--set", "gitCache.sizeLimit=2Gi",
                      "--set", "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                               ".nodeSelectorTerms[0].matchExpressions[0].key=pool",
                      "--set", "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                               ".nodeSelectorTerms[0].matchExpressions[0].operator=Exists")
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["livenessProbe"] != c["readinessProbe"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and "exec" in c["readinessProbe"]
    cache = next(v for v in pod["volumes"] if v["name"] == "cache")
    assert cache["emptyDir"] == {"sizeLimit": "2Gi"}
    assert pod["terminationGracePeriodSeconds"] == 30
    # affinity replaces the default spreading (it was rendered as a second affinity key before).
    assert list(pod["affinity"]) == ["nodeAffinity"]
    assert "podAntiAffinity" in one(render(), "Deployment")["spec"]["template"]["spec"]["affinity"]


def probes(port: int) -> tuple[str, list[str]]:
    """The chart's liveness URL and readiness command for a health endpoint on this port."""
    (c,) = one(render("--set", f"health.port={port}"), "Deployment")["spec"]["template"]["spec"]["containers"]
    command = c["readinessProbe"]["exec"]["command"]
    assert command[0] == "python"
    return f"http://127.0.0.1:{port}{c['livenessProbe']['httpGet']['path']}", [sys.executable, *command[1:]]


def ready(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, timeout=10).returncode == 0


def alive(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def dead_kubeconfig(tmp_path: pathlib.Path) -> pathlib.Path:
    """An apiserver nobody serves: the operator runs, but can reach nothing."""
    path = tmp_path / "dead-kubeconfig.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "dead", "user": {"token": "none"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "dead"}}]}))
    return path


def test_readiness_is_the_apiserver_probe_and_liveness_the_endpoint(solo_namespace: str, dead_kubeconfig: pathlib.Path,
                                                                    tmp_path: pathlib.Path) -> None:
    """Real operators: one on the real cluster is alive and ready; one whose apiserver is gone stays
    alive (a restart would not help) but is not ready; no process at all is neither."""
    nobody_url, nobody = probes(free_port())
    assert not alive(nobody_url) and not ready(nobody)
    started = []
    try:
        for name, env in (("up", {}), ("cut-off", {"KUBECONFIG": str(dead_kubeconfig)})):
            url, command = probes(free_port())
            started.append((name, url, command, start_operator(
                tmp_path / f"operator-{name}.log",
                {**env, "RC_NAMESPACES": solo_namespace, "RC_HEALTH_URL": url.replace("127.0.0.1", "0.0.0.0")})))
        for name, url, command, proc in started:
            wait_for(lambda: alive(url) or proc.poll() is not None, timeout=60, what=f"the {name} operator's endpoint")
            assert proc.poll() is None, (tmp_path / f"operator-{name}.log").read_text()[-3000:]
        (_, _, up, _), (_, cut_url, cut, _) = started
        wait_for(lambda: ready(up), timeout=30, what="the operator on the real cluster to be ready")
        body = httpx.get(cut_url, timeout=5).json()
        assert body["apiserver"].startswith("unreachable"), body
        assert alive(cut_url) and not ready(cut)
    finally:
        for *_, proc in started:
            stop_operator(proc)


# ------------------------------------------------------------------------------ the dashboard

DASHBOARD = CHART / "files" / "dashboard.json"
#: What the dashboard must show (issue 13), by the metric that shows it.
REQUIRED = {"reliability_center_incidents", "reliability_center_step_results_total",
            "reliability_center_gateway_refusals_total", "reliability_center_time_to_mitigate_seconds_bucket",
            "reliability_center_intake_requests_total"}
METRIC = re.compile(r"\b(reliability_center_[a-z_]+)\b")


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def exported(metrics_text: str) -> dict[str, str]:
    """Every series name /metrics can carry, with its family's type. From the # TYPE lines, which
    prometheus_client prints for every registered metric, also a labelled one never incremented
    (a counter's line names its _total series; a histogram's, the family of _bucket/_count/_sum)."""
    names: dict[str, str] = {}
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            suffixes = ["_bucket", "_count", "_sum"] if kind == "histogram" else [""]
            names.update({family + suffix: kind for suffix in suffixes})
    return names


def test_the_dashboard_is_opt_in_and_shipped_for_grafanas_sidecar(cluster: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert "ConfigMap" not in {d["kind"] for d in render()}
    config_map = one(render("--set", "dashboard.enabled=true", "--set", "dashboard.namespace=monitoring"), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    (shipped,) = config_map["data"].values()
    assert json.loads(shipped) == dashboard


# ------------------------------------------------------------------------------ detection rules


def test_the_detection_rules_are_opt_in_and_shipped_as_the_plain_rules_file(cluster: str) -> None:
    """The PrometheusRule holds exactly the groups of manifests/prometheus/detection-rules.yaml, their
    Prometheus templates ({{ $labels.tenant }}) untouched by Helm."""
    plain = yaml.safe_load((ROOT / "manifests" / "prometheus" / "detection-rules.yaml").read_text())
    assert not [d for d in render() if d["kind"] == "PrometheusRule"]
    rendered = render("--set", "detectionRules.enabled=true", "--set", "detectionRules.namespace=monitoring",
                      "--set", "detectionRules.labels.release=kube-prometheus-stack")
    (rule,) = [d for d in rendered if d["kind"] == "PrometheusRule" and d["metadata"]["name"].endswith("-detection")]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert (rule["metadata"]["namespace"], rule["metadata"]["labels"]["release"]) == ("monitoring",
                                                                                       "kube-prometheus-stack")
    assert rule["spec"] == plain
    assert "{{ $labels.tenant }}" in rule["spec"]["groups"][0]["rules"][-1]["annotations"]["summary"]


def test_the_dashboards_queries_name_metrics_the_operator_exports(operator: subprocess.Popen[bytes]) -> None:
    used = {name for q in queries() for name in METRIC.findall(q)}
    assert REQUIRED <= used, f"the dashboard does not show {REQUIRED - used}"
    names = exported(httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text)
    assert not used - names.keys(), f"not exported by the operator: {sorted(used - names.keys())}"
    for q in queries():  # rate() and increase() over counters (and histogram buckets) only
        for name in re.findall(r"(?:rate|increase)\((reliability_center_[a-z_]+)", q):
            assert names[name] in {"counter", "histogram"}, f"{name} is a {names[name]}: {q}"


@pytest.fixture
def prometheus(operator: subprocess.Popen[bytes], tmp_path: pathlib.Path) -> Iterator[str]:
    """A real Prometheus scraping the session operator every second; yields its URL."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": "reliability-center", "static_configs": [{"targets": [f"127.0.0.1:{METRICS_PORT}"]}]}]}))
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(["/usr/bin/prometheus", f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or query(url, 'up{job="reliability-center"} == 1'),
                 timeout=60, what="Prometheus to scrape the operator")
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def query(url: str, promql: str) -> list[Doc] | None:
    try:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    assert answer["status"] == "success", f"Prometheus refused {promql!r}: {answer}"
    return answer["data"]["result"]


def test_the_dashboards_queries_run_in_prometheus(prometheus: str, namespace: str) -> None:
    """Each panel's query, with Grafana's variables as Grafana would fill them, is valid PromQL; the
    incidents-by-phase panel shows an incident once there is one."""
    apply_docs(namespace, load_yaml("examples/incidents/perf.yaml"))
    grafana = {"$__rate_interval": "1m", "$job": ".*"}
    for q in queries():
        for variable, value in grafana.items():
            q = q.replace(variable, value)
        assert query(prometheus, q) is not None, q
    phases = wait_for(lambda: query(prometheus, queries()[0].replace("$job", ".*")), timeout=30,
                      what="the incidents-by-phase panel to show the incident")
    assert all(series["metric"].keys() == {"phase"} for series in phases), phases


# ------------------------------------------------------------------------------ upgrading the CRDs


def crd_schema(crd: Doc) -> Doc:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def gate_fields(crd: Doc) -> set[str]:
    return set(crd_schema(crd)["properties"]["status"]["properties"]["gates"]["items"]["properties"])


def runbook_fields(crd: Doc) -> set[str]:
    return set(crd_schema(crd)["properties"]["spec"]["properties"])


@pytest.fixture
def previous_chart(tmp_path: pathlib.Path) -> pathlib.Path:
    """The chart as of git PREVIOUS, with the files its symlinks point to (crds/, manifests/rbac)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS, "charts", "crds", "manifests/rbac"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    return tmp_path / "charts" / "reliability-center"


def apply_crds_as_documented() -> None:
    """The README's step before `helm upgrade` ("Install / upgrade"), as printed there."""
    readme = (ROOT / "README.md").read_text()
    step = "kubectl apply --server-side --force-conflicts -f charts/reliability-center/crds/"
    assert step in readme, "the README no longer documents the CRD step this test runs"
    kubectl(*step.split()[1:-1], str(CHART / "crds"))
    wait_established(CHART / "crds")


def test_the_crds_upgrade_from_the_previous_chart(previous_chart: pathlib.Path, solo_namespace: str) -> None:
    """The previous chart installed, an Incident made, then the README's path: the CRDs applied, then
    `helm upgrade`. The CRDs are cluster-wide and other tests use them now: the previous chart is
    installed with --skip-crds (the CRDs in place are a superset of its own, shown below), so the
    cluster never goes back to the old schema; what is tested is that the documented step converges
    on the new schema, is idempotent, and keeps the Incident."""
    ns, release = solo_namespace, f"rc-old-{uuid.uuid4().hex[:6]}"  # a solo-* namespace: no operator acts in it
    new = {d["metadata"]["name"]: d for p in sorted((CHART / "crds").glob("*.yaml")) for d in load_yaml(p)}
    old = {d["metadata"]["name"]: d for p in sorted((previous_chart / "crds").glob("*.yaml")) for d in load_yaml(p)}
    assert new.keys() - old.keys() == {"approvals.reliability.center"}  # a new kind comes with the upgrade
    # What the upgrade brings: fields the previous chart's CRDs did not have.
    assert {"reason", "missing"} <= gate_fields(new["incidents.reliability.center"]) - gate_fields(
        old["incidents.reliability.center"])
    assert "slo" in runbook_fields(new["runbooks.reliability.center"]) - runbook_fields(
        old["runbooks.reliability.center"])
    values = ["--set", "replicas=1", "--set", f"namespaces={{{ns}}}"]
    try:
        helm("install", release, str(previous_chart), "-n", ns, "--skip-crds", "--wait", "--timeout", "90s", *values)
        apply_docs(ns, load_yaml("examples/incidents/perf.yaml"))
        before = get_json("incident", "search-latency", "-n", ns)

        apply_crds_as_documented()
        # The admission policies are cluster-wide and named once per cluster: the session installed them.
        helm("upgrade", release, str(CHART), "-n", ns, "--wait", "--timeout", "90s", *values,
             "--set", "admission.enabled=false")

        history = json.loads(helm("history", release, "-n", ns, "-o", "json").stdout)
        versions = [chart_version(previous_chart), chart_version(CHART)]
        assert versions[0] != versions[1], "the chart changed: its version must too"
        assert [(h["chart"], h["status"]) for h in history] == [
            (f"reliability-center-{versions[0]}", "superseded"), (f"reliability-center-{versions[1]}", "deployed")]
        # The cluster's CRDs are the chart's, generation for generation; applying again changes nothing.
        served = {name: get_json("crd", name) for name in new}
        for name, crd in new.items():
            assert crd_schema(served[name]) == crd_schema(crd), f"{name}: the cluster's schema is not the chart's"
        apply_crds_as_documented()
        for name in new:
            assert get_json("crd", name)["metadata"]["generation"] == served[name]["metadata"]["generation"], \
                f"{name}: applying the same CRDs again changed them"
        # The Incident survived, untouched, and takes the new fields (an old schema would prune them).
        after = get_json("incident", "search-latency", "-n", ns)
        assert (after["metadata"]["uid"], after["spec"]) == (before["metadata"]["uid"], before["spec"])
        gate = {"name": "slo-normal", "passed": False, "reason": "SloBreached", "missing": ["p99 under 0.8s"]}
        kubectl("patch", "incident", "search-latency", "-n", ns, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"gates": [gate]}}))
        assert get_json("incident", "search-latency", "-n", ns)["status"]["gates"] == [gate]
        (runbook,) = load_yaml("runbooks/perf.yaml")
        assert "slo" in runbook["spec"]
        runbook["metadata"] = {"name": f"upgrade-check-{uuid.uuid4().hex[:6]}"}
        kept = json.loads(kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                                  input=json.dumps(runbook)).stdout)
        assert kept["spec"]["slo"] == runbook["spec"]["slo"]
        deployment = get_json("deployment", "-n", ns, "-l", f"app.kubernetes.io/instance={release}")["items"][0]
        assert "exec" in deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    finally:
        helm("uninstall", release, "-n", ns, "--wait", "--timeout", "60s", check=False)


def chart_version(chart: pathlib.Path) -> str:
    return yaml.safe_load((chart / "Chart.yaml").read_text())["version"]


def test_the_console_is_opt_in_and_holds_no_rights_of_its_own(cluster: str) -> None:
    """The in-cluster console (README "The web console"): off by default; when on, its pods mount no
    ServiceAccount token and no binding names them, so the only rights it ever uses are the bearer tokens
    people's requests bring (tests/e2e/test_console.py drives that mode)."""
    assert "console" not in {(d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") for d in render()}
    rendered = render("--set", "console.enabled=true", "--set", "console.origin=https://rc.example.com")
    consoles = [d for d in rendered if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "console"]
    assert sorted(d["kind"] for d in consoles) == ["Deployment", "Service"]
    deployment = next(d for d in consoles if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    (container,) = pod["containers"]
    assert container["command"][:3] == ["relctl", "console", "--bearer"]
    assert container["command"][-2:] == ["--origin", "https://rc.example.com"]
    assert not container.get("env") and not container.get("envFrom")  # no credentials handed to it
    assert {v["configMap"]["name"] for v in pod["volumes"]} == {"kube-root-ca.crt"}  # the apiserver's CA, no token
    bound = [s for d in rendered if d["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in d.get("subjects") or []]
    assert all(s.get("name") != "default" for s in bound)  # the pods' (default) ServiceAccount gets nothing
    service = next(d for d in consoles if d["kind"] == "Service")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "console"
