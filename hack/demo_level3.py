"""The demo's Level 3 walk against a local Gitea (called by hack/demo.sh; the operator is running).

A cross-tenant Incident in its own namespace, whose settings name a GitOps repository on Gitea:
the operator proposes the mandatory PatchPlan as a pull request (URL and diff printed), a second
Gitea user merges it as the reviewer, the operator sees the merge (Merged -> Synced -> Verified),
``relctl rollback`` asks for the revert, the reviewer merges the revert pull request and the plan
ends RolledBack. Gitea keeps running afterwards so every pull request can be opened in a browser.

When Argo CD is built (``hack/build-tools.sh argocd``; ``make demo`` does not build it), a real Argo CD
(tests/support/argocd.py's processes, in namespace argocd-demo, left running like Gitea) syncs the
namespace from the repository through an automated Application that the settings name
(``argoApplication``): the plan's Synced/Verified and RolledBack come from that Application's status.
Without it, the demo applies the merged manifests itself, says so, and the operator checks the live
objects instead.

Then all three levels to Closed: a billing incident in the same namespace whose Level 2 step a second identity
approves (``relctl approve --as``), whose Level 3 correction the reviewer merges, that ``relctl resolve`` restores,
and whose postmortem pull request the reviewer merges: Closed, with its five gates.

Every wait is a poll with a deadline. Environment: RC_CACHE, DEMO_L3_NAMESPACE (default shop-gitops),
DEMO_GITEA_DIR (default $RC_CACHE/gitea-demo).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = Path(os.environ.get("RC_CACHE", Path.home() / ".cache" / "reliability-center"))
GITEA_DIR = Path(os.environ.get("DEMO_GITEA_DIR") or CACHE / "gitea-demo")  # CI gives each run its own
NS = os.environ.get("DEMO_L3_NAMESPACE", "shop-gitops")
INCIDENT = "export-without-tenant-id"
REPO = "shop-gitops"
REVIEWER = "reviewer"
#: What the cross-tenant runbook's Level 3 change adds under the app path (tenant globex).
FIX_OBJECT = "isolate-globex"
ARGOCD_NS = "argocd-demo"
ARGOCD_DIR = CACHE / ARGOCD_NS
#: What Level 1 writes on objects the Application syncs (flags, the tenants' shared allow policies):
#: Argo CD leaves the fields the operator holds alone (README, "Level 1 under Argo CD self-heal").
IGNORE_OURS = [{"kind": "ConfigMap", "managedFieldsManagers": ["reliability-center"]},
               {"group": "networking.k8s.io", "kind": "NetworkPolicy", "managedFieldsManagers": ["reliability-center"]},
               {"group": "rbac.authorization.k8s.io", "kind": "RoleBinding",
                "managedFieldsManagers": ["reliability-center"]}]
T = TypeVar("T")


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline, delay = time.monotonic() + timeout, 0.05
    while True:
        if value := probe():
            return value
        if time.monotonic() > deadline:
            sys.exit(f"demo_level3: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120)
    if done.returncode:
        sys.exit(f"demo_level3: {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return done.stdout


def kubectl(*args: str, stdin: str | None = None) -> str:
    return run("kubectl", *args, stdin=stdin)


# --- Gitea ------------------------------------------------------------------------------------------

def gitea_env() -> dict[str, str] | None:
    """The running demo Gitea's env file, or None when it is not running (or not answering)."""
    env_file = GITEA_DIR / "env"
    if not env_file.exists():
        return None
    env = dict(line.split("=", 1) for line in env_file.read_text().split())
    try:
        os.kill(int(env["GITEA_PID"]), 0)
        httpx.get(f"{env['GITEA_URL']}/api/v1/version", timeout=2).raise_for_status()
    except (OSError, httpx.HTTPError, KeyError, ValueError):
        return None
    return env


def start_gitea() -> dict[str, str]:
    if env := gitea_env():
        print(f"reusing the demo Gitea at {env['GITEA_URL']} (pid {env['GITEA_PID']})")
        return env
    # A dead or half-made one is replaced whole: the demo recreates its repository anyway.
    subprocess.run(["bash", str(HERE / "gitea.sh"), "stop", str(GITEA_DIR)], capture_output=True, check=False)
    subprocess.run(["rm", "-rf", str(GITEA_DIR)], check=True)
    subprocess.run(["bash", str(HERE / "gitea.sh"), "start", str(GITEA_DIR)], stdout=subprocess.DEVNULL, check=True)
    env = gitea_env()
    if env is None:
        sys.exit(f"demo_level3: Gitea did not start; see {GITEA_DIR}/log")
    print(f"started Gitea at {env['GITEA_URL']} (data and logs in {GITEA_DIR})")
    return env


def ok(r: httpx.Response, *codes: int) -> httpx.Response:
    if r.status_code not in (codes or (200, 201, 204)):
        sys.exit(f"demo_level3: Gitea {r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}")
    return r


def reviewer_client(admin: httpx.Client, base: str) -> httpx.Client:
    """A second Gitea user who reviews and merges; its password is kept beside the admin's (mode 0600)."""
    creds = GITEA_DIR / "reviewer.env"
    if admin.get(f"/users/{REVIEWER}").status_code == 404 or not creds.exists():
        password = secrets.token_urlsafe(18)
        if admin.get(f"/users/{REVIEWER}").status_code == 404:
            ok(admin.post("/admin/users", json={"username": REVIEWER, "password": password,
                                                "email": f"{REVIEWER}@example.invalid",
                                                "must_change_password": False}))
        else:
            ok(admin.patch(f"/admin/users/{REVIEWER}", json={"login_name": REVIEWER, "source_id": 0,
                                                             "password": password, "must_change_password": False}))
        creds.write_text(f"GITEA_REVIEWER={REVIEWER}\nGITEA_REVIEWER_PASSWORD={password}\n")
        creds.chmod(0o600)
    password = dict(line.split("=", 1) for line in creds.read_text().split())["GITEA_REVIEWER_PASSWORD"]
    token = ok(httpx.post(f"{base}/api/v1/users/{REVIEWER}/tokens", auth=(REVIEWER, password), timeout=30,
                          json={"name": f"demo-{secrets.token_hex(4)}", "scopes": ["write:repository", "read:user"]}))
    return httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"token {token.json()['sha1']}"},
                        timeout=30)


def fresh_repo(admin: httpx.Client, owner: str) -> str:
    """The GitOps repository, recreated on each run: the sample app's manifests on main."""
    if admin.get(f"/repos/{owner}/{REPO}").status_code == 200:
        ok(admin.delete(f"/repos/{owner}/{REPO}"))
    ok(admin.post("/user/repos", json={"name": REPO, "default_branch": "main", "auto_init": True,
                                       "readme": "Default", "description": "GitOps repository of the demo shop"}))
    # A new repository's first commit is indexed asynchronously: poll until main is served.
    wait_for(lambda: admin.get(f"/repos/{owner}/{REPO}/branches/main").status_code == 200, 30, f"{REPO}@main")
    # One file per object, <kind>-<name>.yaml, as the seed runbooks' Level 3 paths expect; one commit.
    import yaml

    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / "protected-app" / "app.yaml").read_text()) if d]
    files = [{"operation": "create", "path": f"apps/{NS}/{d['kind'].lower()}-{d['metadata']['name']}.yaml",
              "content": base64.b64encode(yaml.safe_dump(d, sort_keys=False).encode()).decode()} for d in docs]
    ok(admin.post(f"/repos/{owner}/{REPO}/contents", json={"files": files, "branch": "main",
                                                            "message": "the shop's manifests"}))
    ok(admin.put(f"/repos/{owner}/{REPO}/collaborators/{REVIEWER}", json={"permission": "write"}))
    return f"{admin.base_url.scheme}://{admin.base_url.netloc.decode()}/{owner}/{REPO}"


def merge(reviewer: httpx.Client, owner: str, number: int) -> dict[str, Any]:
    def attempt() -> httpx.Response | None:
        r = reviewer.post(f"/repos/{owner}/{REPO}/pulls/{number}/merge", json={"Do": "merge"})
        # 405 "try again later" while Gitea still checks the pull request: a reviewer clicks again.
        return None if r.status_code == 405 and "try again later" in r.text or r.status_code == 409 else r
    ok(wait_for(attempt, 60, f"pull request #{number} to become mergeable"))
    return ok(reviewer.get(f"/repos/{owner}/{REPO}/pulls/{number}")).json()


def play_argo_cd(client: httpx.Client, owner: str, number: int, before: str) -> None:
    """No Argo CD here: the demo syncs the manifests the merged pull request changed, as Argo CD would
    (applies what main now holds, deletes what it removed, read at ``before``)."""
    for changed in ok(client.get(f"/repos/{owner}/{REPO}/pulls/{number}/files")).json():
        path = changed["filename"]
        if not path.startswith(f"apps/{NS}/") or not path.endswith((".yaml", ".yml")):
            continue
        gone = changed["status"] in ("deleted", "removed")
        text = ok(client.get(f"/repos/{owner}/{REPO}/raw/{path}", params={"ref": before if gone else "main"})).text
        if gone:
            kubectl("delete", "--ignore-not-found", "-n", NS, "-f", "-", stdin=text)
        else:
            kubectl("apply", "--server-side", "-n", NS, "-f", "-", stdin=text)  # the Application's destination
        where = f"{path}@{before[:12]}" if gone else f"{path}@main"
        print(f"  (playing Argo CD) kubectl {'delete' if gone else 'apply'} -f {where}")


def show_diff(client: httpx.Client, owner: str, number: int) -> None:
    diff = ok(client.get(f"/repos/{owner}/{REPO}/pulls/{number}.diff")).text
    print("  " + "\n  ".join(diff.rstrip().splitlines()))


# --- Argo CD ------------------------------------------------------------------------------------------

def argocd_built() -> bool:
    return (CACHE / "bin" / "argocd").exists()


def stop_argocd() -> None:
    """Stops the previous demo's Argo CD, by the pids it recorded (each checked to still be that program)."""
    pids = ARGOCD_DIR / "pids"
    if not pids.exists():
        return
    alive = []
    for line in pids.read_text().splitlines():
        program, pid = line.split()
        try:
            if program in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(pid), signal.SIGTERM)
                alive.append(int(pid))
        except OSError:
            pass  # already gone
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in alive), 20, "the previous demo's Argo CD to stop")
    pids.unlink()


def start_argocd() -> Any:
    """A fresh Argo CD in ARGOCD_NS, left running after the demo (its pids recorded for the next run)."""
    sys.path.insert(0, str(ROOT))  # the tests' Argo CD runner: one way to run it, shared
    from tests.support.argocd import ArgoCD

    stop_argocd()
    argocd = ArgoCD(namespace=ARGOCD_NS, directory=ARGOCD_DIR)
    try:
        argocd.start()
    except (RuntimeError, AssertionError) as error:
        sys.exit(f"demo_level3: Argo CD did not start: {error}")
    (ARGOCD_DIR / "pids").write_text("".join(f"{Path(p.args[0]).name} {p.pid}\n" for p in argocd._procs.values()))
    print(f"started Argo CD (redis, argocd-repo-server, argocd-application-controller) for namespace {ARGOCD_NS}; "
          f"logs in {ARGOCD_DIR}")
    return argocd


def create_application(argocd: Any, repo_url: str, user: str, token: str) -> None:
    """Automated, self-healing and pruning: a merged commit reaches the cluster through Argo CD alone, and the
    revert removes what the fix added (without prune the removed object keeps the Application OutOfSync)."""
    from tests.support.cluster import apply_docs

    argocd.add_repository(repo_url, user, token)  # the repo-server clones as the operator's Gitea user
    app = argocd.application(NS, repo_url, f"apps/{NS}", NS, self_heal=True, ignore_differences=IGNORE_OURS,
                             sync_options=["RespectIgnoreDifferences=true"])
    app["spec"]["syncPolicy"]["automated"]["prune"] = True
    apply_docs(ARGOCD_NS, [app])


def app_synced(argocd: Any, revision: str, timeout: float) -> dict[str, Any]:
    """Argo CD's own word: the Application synced ``revision`` (operation Succeeded) and is Healthy."""
    from tests.support.argocd import synced

    def probe(app: dict[str, Any]) -> dict[str, Any] | None:
        status = synced(app, revision)
        return status if status and (status.get("health") or {}).get("status") == "Healthy" else None
    try:
        return argocd.wait(NS, probe, f"Argo CD to sync {revision[:12]}", timeout=timeout)
    except AssertionError as error:
        sys.exit(f"demo_level3: {error}")


def show_app(status: dict[str, Any]) -> None:
    op = status["operationState"]
    print(f"  Argo CD {ARGOCD_NS}/{NS}: {status['sync']['status']} at {status['sync']['revision'][:12]}, "
          f"{status['health']['status']}; sync operation {op['phase']} ({op['startedAt']} → {op['finishedAt']})")


# --- the cluster --------------------------------------------------------------------------------------

def plan(incident: str = INCIDENT, purpose: str = "fix") -> dict[str, Any] | None:
    """The incident's PatchPlan for its fix, or for its postmortem (named <incident>-postmortem)."""
    items = json.loads(kubectl("get", "patchplans", "-n", NS, "-o", "json",
                               "-l", f"reliability.center/incident={incident}"))["items"]
    items = [p for p in items if p["metadata"]["name"].endswith("-postmortem") == (purpose == "postmortem")]
    return items[0] if items else None


class Phases:
    """Prints each phase the PatchPlan passes through (with its Ready condition's reason), once."""

    def __init__(self, incident: str = INCIDENT, purpose: str = "fix") -> None:
        self.seen: set[tuple[str, str]] = set()
        self.t0 = time.monotonic()
        self.incident, self.purpose = incident, purpose

    def until(self, wanted: set[str], timeout: float,
              also: Callable[[dict[str, Any]], Any] = lambda status: True) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            p = plan(self.incident, self.purpose)
            if not p:
                return None
            status = p.get("status") or {}
            phase = status.get("phase") or "Pending"
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            if (phase, ready.get("reason", "")) not in self.seen:
                self.seen.add((phase, ready.get("reason", "")))
                print(f"  +{time.monotonic() - self.t0:5.1f}s  {p['metadata']['name']}: {phase:<11} "
                      f"{ready.get('reason', '')}: {' '.join(str(ready.get('message', '')).split())[:110]}")
            return p if phase in wanted and also(status) else None
        return wait_for(probe, timeout, f"{self.purpose} PatchPlan of {self.incident} in {'/'.join(sorted(wanted))}")


def main() -> None:
    step("Level 3 against a local Gitea: start (or reuse) it")
    env = start_gitea()
    base, owner = env["GITEA_URL"], env["GITEA_USER"]
    admin = httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"token {env['GITEA_TOKEN']}"},
                         timeout=30)
    reviewer = reviewer_client(admin, base)
    repo_url = fresh_repo(admin, owner)
    print(f"GitOps repository {repo_url} (the operator opens pull requests as {owner}; "
          f"'{REVIEWER}' reviews and merges)")
    if argocd_built():
        step(f"Argo CD (built by hack/build-tools.sh argocd): a fresh one for namespace {ARGOCD_NS}")
        argocd = start_argocd()
    else:
        argocd = None
        stop_argocd()  # one a former run left: its Application would sync the namespace behind the demo's back
        step("no Argo CD: ~/.cache/reliability-center/bin/argocd is not built (hack/build-tools.sh argocd "
             "builds it); the demo applies each merged change itself, as Argo CD would")

    step(f"namespace {NS}: the sample app, and settings naming the GitOps repository"
         + (f" and the Argo CD Application {ARGOCD_NS}/{NS}" if argocd else ""))
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true")
    kubectl("create", "namespace", NS)
    kubectl("apply", "--server-side", "-n", NS, "-f", str(ROOT / "examples" / "protected-app" / "app.yaml"))
    # The credentials Secret names where its token may be sent (gitops/trust.py).
    settings = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gitops-credentials",
                                                            "labels": {"reliability.center/secret-type": "repository"}},
         "stringData": {"url": f"{repo_url}.git", "token": env["GITEA_TOKEN"]}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reliability-center-settings"},
         "data": {"gitopsRepoURL": f"{repo_url}.git", "gitopsProvider": "gitea",
                  "gitopsCredentialsSecret": "gitops-credentials",
                  # The plan's Synced/Verified then come from this Application's status, not from the objects.
                  **({"argoApplication": f"{ARGOCD_NS}/{NS}"} if argocd else {})}},
    ]
    # Server-side, under a manager of its own: the app's manifests (in Git) hold this ConfigMap too, and
    # Argo CD's kubectl apply deletes keys a client-side apply recorded but Git lacks (these keys, here).
    kubectl("apply", "--server-side", "--field-manager=demo-settings", "-n", NS, "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": settings}))
    for deployment in kubectl("get", "deployments", "-n", NS, "-o", "name").split():
        kubectl("rollout", "status", "-n", NS, deployment, "--timeout=60s")
    print(kubectl("get", "configmap", "reliability-center-settings", "-n", NS, "-o", "jsonpath={.data}"))
    if argocd:
        create_application(argocd, f"{repo_url}.git", owner, env["GITEA_TOKEN"])
        head = ok(admin.get(f"/repos/{owner}/{REPO}/branches/main")).json()["commit"]["id"]
        print(f"Application {ARGOCD_NS}/{NS}: automated (selfHeal, prune) sync of apps/{NS} at main; "
              f"it adopts the sample app")
        show_app(app_synced(argocd, head, 120))

    step(f"incident {INCIDENT}: level 1 blocks and isolates, level 3 proposes the mandatory PatchPlan")
    kubectl("apply", "-n", NS, "-f", str(ROOT / "examples" / "incidents" / "cross-tenant.yaml"))
    phases = Phases()
    proposed = phases.until({"Proposed"}, 120)
    name, pr = proposed["metadata"]["name"], proposed["status"]["pullRequest"]
    print(f"\npull request #{pr['number']}: {pr['url']}\ndiff:")
    show_diff(admin, owner, pr["number"])
    if argocd:  # Level 1 wrote on objects the Application syncs: the operator checks Argo CD will not undo it
        warning = kubectl("get", "incident", INCIDENT, "-n", NS, "-o",
                          'jsonpath={.status.conditions[?(@.type=="SelfHealSafe")].message}')
        print(f"  SelfHealSafe=False: {warning}" if warning else
              "  Level 1 under self-heal: no SelfHealSafe=False (the Application ignores the fields the operator holds)")

    step(f"the reviewer ('{REVIEWER}') merges #{pr['number']} in Gitea; the operator sees the merge")
    merged = merge(reviewer, owner, pr["number"])
    print(f"  merged by {merged['merged_by']['login']} as {merged['merge_commit_sha'][:12]}")
    fix_commit = merged["merge_commit_sha"]
    merged_at = time.monotonic()
    if not argocd:
        phases.until({"Merged"}, 60)
        play_argo_cd(admin, owner, pr["number"], fix_commit)
    verified = phases.until({"Verified"}, 120)
    print(f"  merge → Verified in {time.monotonic() - merged_at:.1f}s; the plan's observed sync: "
          f"{json.dumps(verified['status'].get('sync') or {})}")
    if argocd:  # Argo CD's own status, read apart from the operator
        show_app(app_synced(argocd, fix_commit, 10))
    print(f"  live: NetworkPolicy {FIX_OBJECT} " + kubectl(
        "get", "networkpolicy", FIX_OBJECT, "-n", NS, "-o", r"jsonpath=argocd-tracking-id="
        r"{.metadata.annotations.argocd\.argoproj\.io/tracking-id} policyTypes={.spec.policyTypes}"))
    record = f"/repos/{owner}/{REPO}/contents/incidents/{NS}/{INCIDENT}.md"
    ok(admin.get(record), 200)  # Gitea's own word, not the operator's: main has the fix
    print(f"  main now holds incidents/{NS}/{INCIDENT}.md")

    step(f"relctl rollback {name} -n {NS}: the operator opens the revert pull request")
    print(run("relctl", "rollback", name, "-n", NS).rstrip())
    rolling = phases.until({"RollingBack"}, 120, also=lambda status: (status.get("revert") or {}).get("number"))
    revert = rolling["status"]["revert"]
    print(f"\nrevert pull request #{revert['number']}: {revert.get('url') or ''}\ndiff:")
    show_diff(admin, owner, revert["number"])

    step(f"the reviewer merges the revert #{revert['number']}; the plan ends RolledBack")
    merged = merge(reviewer, owner, revert["number"])
    print(f"  merged by {merged['merged_by']['login']} as {merged['merge_commit_sha'][:12]}")
    merged_at = time.monotonic()
    phases.until({"RollingBack", "RolledBack"}, 60,
                 also=lambda status: (status.get("revert") or {}).get("mergeCommit"))
    if not argocd:
        play_argo_cd(admin, owner, revert["number"], fix_commit)
    phases.until({"RolledBack"}, 120)
    print(f"  revert merge → RolledBack in {time.monotonic() - merged_at:.1f}s")
    if argocd:
        show_app(app_synced(argocd, merged["merge_commit_sha"], 10))
    gone = not kubectl("get", "networkpolicy", FIX_OBJECT, "-n", NS, "--ignore-not-found", "-o", "name").strip()
    print(f"  live: NetworkPolicy {FIX_OBJECT} {'deleted' if gone else 'STILL PRESENT'}")
    ok(admin.get(record), 404)  # and main no longer has it
    print(f"  main no longer holds incidents/{NS}/{INCIDENT}.md")

    step(f"where to see it: relctl describe incident {INCIDENT} -n {NS}")
    print(run("relctl", "describe", "incident", INCIDENT, "-n", NS, "--last", "6").rstrip())
    print(f"""
In Gitea's web UI (running on after the demo; log in as '{REVIEWER}', password in {GITEA_DIR}/reviewer.env,
or as {owner}, password in {GITEA_DIR}/env):
  the fix:     {pr['url']}
  the revert:  {revert.get('url') or f"{repo_url}/pulls/{revert['number']}"}
  all:         {repo_url}/pulls?state=all
  the plan:    kubectl get patchplan {name} -n {NS} -o yaml   (status.pullRequest, status.revert)
  stop Gitea:  bash hack/gitea.sh stop {GITEA_DIR}""")
    walk_to_closed(admin, reviewer, owner, argocd)
    if argocd:
        print(f"""Argo CD (running on after the demo, logs in {ARGOCD_DIR}):
  kubectl get application -n {ARGOCD_NS}
  kubectl get application {NS} -n {ARGOCD_NS} -o yaml   (status.sync, status.health, status.operationState)
  stop it:     kill $(cut -d' ' -f2 {ARGOCD_DIR}/pids)""")


# --- all three levels, to Closed ----------------------------------------------------------------------

BILLING = "dunning-failing"
L2_STEP = "disable-dunning"
APPROVER, APPROVERS = "demo-approver", "reliability-center-demo-approvers"


def incident_status(name: str) -> dict[str, Any]:
    return json.loads(kubectl("get", "incident", name, "-n", NS, "-o", "json")).get("status") or {}


def step_of(name: str, step: str) -> dict[str, Any]:
    return next((s for s in incident_status(name).get("steps") or [] if s["name"] == step), {})


def flags(name: str = "flags-billing") -> dict[str, str]:
    data = json.loads(kubectl("get", "configmap", name, "-n", NS, "-o", "json")).get("data") or {}
    return {k: v for k, v in sorted(data.items()) if ".tenant." in k}


def merge_plan_of(reviewer: httpx.Client, admin: httpx.Client, owner: str, incident: str, purpose: str,
                  argocd: Any) -> dict[str, Any]:
    """The plan's pull request opened, shown, merged by the reviewer, synced (by Argo CD or the demo)."""
    phases = Phases(incident, purpose)
    proposed = phases.until({"Proposed"}, 120)
    pr = proposed["status"]["pullRequest"]
    print(f"\n{purpose} pull request #{pr['number']}: {pr['url']}\ndiff:")
    show_diff(admin, owner, pr["number"])
    merged = merge(reviewer, owner, pr["number"])
    print(f"  merged by {merged['merged_by']['login']} as {merged['merge_commit_sha'][:12]}")
    if purpose == "fix" and not argocd:
        phases.until({"Merged"}, 60)
        play_argo_cd(admin, owner, pr["number"], merged["merge_commit_sha"])
    return phases.until({"Verified"} if purpose == "fix" else {"Merged", "Synced", "Verified"}, 120)


def walk_to_closed(admin: httpx.Client, reviewer: httpx.Client, owner: str, argocd: Any) -> None:
    """The billing incident through all three levels, resolved, its postmortem merged: Closed, five gates."""
    step(f"incident {BILLING} in {NS}: level 1 acts at once, level 2 ({L2_STEP}) waits for an approver")
    before = flags()
    kubectl("apply", "-n", NS, "-f", str(ROOT / "examples" / "incidents" / "billing.yaml"))
    waiting = wait_for(lambda: (s := step_of(BILLING, L2_STEP)).get("approval", {}).get("planDigest") and s, 90,
                       f"step {L2_STEP} to show its plan")
    print(run("relctl", "steps", BILLING, "-n", NS).rstrip())
    print(f"\nthe planned change put to approval (status.steps[{L2_STEP}].evidence):")
    print("  " + json.dumps(waiting.get("evidence") or {}, indent=2).replace("\n", "\n  "))
    print(f"flags-billing tenant keys now: {json.dumps(flags())}")

    step(f"{APPROVER} (group {APPROVERS}, bound to ClusterRole reliability-center-approver) approves, "
         "as the apiserver authenticates them")
    print(run("relctl", "approve", BILLING, L2_STEP, "-n", NS, "--as", APPROVER, "--as-group", APPROVERS,
              "-m", "dunning retries off until the fix ships").rstrip())
    done = wait_for(lambda: (s := step_of(BILLING, L2_STEP)).get("state") in ("Succeeded", "Failed", "Blocked") and s,
                    60, f"step {L2_STEP} to run")
    print(f"  {L2_STEP}: {done['state']} {done.get('reason', '')}: {done.get('message', '')}")
    print(f"  flags-billing tenant keys after the write: {json.dumps(flags())}")

    step(f"level 3: {BILLING}'s correction as a pull request; the reviewer merges it")
    verified = merge_plan_of(reviewer, admin, owner, BILLING, "fix", argocd)
    print(f"  {verified['metadata']['name']}: {verified['status']['phase']}")
    wait_for(lambda: incident_status(BILLING).get("phase") == "Mitigated", 90, f"{BILLING} to be Mitigated")

    step(f"relctl resolve {BILLING}: levels 1 and 2 restored from their snapshots")
    print(run("relctl", "resolve", BILLING, "-n", NS).rstrip())
    wait_for(lambda: incident_status(BILLING).get("phase") in ("Verifying", "Closed"), 60, f"{BILLING} to verify")
    wait_for(lambda: flags() == before, 60, "flags-billing to hold its keys of before the incident again")
    print(f"  flags-billing tenant keys: {json.dumps(flags())} (as before the incident)")

    step(f"the postmortem pull request; the reviewer merges it; the five gates pass")
    merge_plan_of(reviewer, admin, owner, BILLING, "postmortem", argocd)
    try:
        closed = wait_for(lambda: (s := incident_status(BILLING)).get("phase") == "Closed" and s, 120,
                          f"{BILLING} to be Closed")
    except SystemExit:
        print(run("relctl", "gates", BILLING, "-n", NS).rstrip())  # which gate holds it, and why
        raise
    print(run("relctl", "gates", BILLING, "-n", NS).rstrip())
    passed = [g["name"] for g in closed["gates"] if g["passed"]]
    print(f"  Closed at {closed['times']['closed']}: {len(passed)} of {len(closed['gates'])} gates passed")
    step(f"relctl describe incident {BILLING} -n {NS}")
    print(run("relctl", "describe", "incident", BILLING, "-n", NS, "--last", "8").rstrip())


if __name__ == "__main__":
    main()
