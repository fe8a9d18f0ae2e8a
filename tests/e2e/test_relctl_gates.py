"""``relctl gates`` and ``relctl postmortem`` against the real apiserver.

The incident lives in a solo namespace (no operator acts on it), so the status this test writes as
its setup stays as written: what the two commands print must come from that status, from the
PatchPlans labelled with the incident, and from the durable audit log the status names.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from tests.support.cluster import apply_docs, kubectl
from tests.support.incidents import create, incident, patch_plan as plan

#: The console script pip installed beside this interpreter: the command an engineer runs.
RELCTL = str(pathlib.Path(sys.executable).with_name("relctl"))


def relctl(*args: str) -> str:
    result = subprocess.run([RELCTL, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def patch_status(namespace: str, kind: str, name: str, status: dict) -> None:
    kubectl("patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))


def test_relctl_gates_and_postmortem_print_what_the_cluster_holds(solo_namespace):
    ns = solo_namespace
    create(ns, incident("pm", category="perf", module="search", summary="search is slow | p99 2.5s"))
    assert relctl("gates", "pm", "-n", ns).strip() == "gates not evaluated yet (phase not set)"

    # Two writes in the durable log; the timeline (capped at 100) only still holds the second.
    records = {"9f2c": {"time": "2026-03-01T10:02:07Z", "target": f"ConfigMap/{ns}/flags", "before": "sha256:aa",
                        "after": "sha256:bb"},
               "1ab0": {"time": "2026-03-01T10:02:03Z", "target": f"ConfigMap/{ns}/old-flags", "before": None,
                        "after": "sha256:01"}}
    common = {"traceId": "tr-pm", "tenant": "acme", "actor": "reliability-center", "action": "flags-off",
              "step": "flags", "outcome": "applied", "message": ""}
    apply_docs(ns, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rc-audit-pm"},
                     "data": {k: json.dumps({**common, **r}) for k, r in records.items()}}])
    apply_docs(ns, [plan("pm-fix", "pm"), plan("other-fix", "other")])
    patch_status(ns, "patchplan", "pm-fix", {"phase": "Proposed",
                                             "pullRequest": {"url": "http://gitea.invalid/ops/gitops/pulls/7"}})
    patch_status(ns, "incident", "pm", {
        "phase": "Verifying", "traceId": "tr-pm", "runbook": "perf", "auditLog": "rc-audit-pm",
        "runbookSpec": {"postmortem": ["Why did the index grow?"]},
        "steps": [{"name": "flags", "level": 1, "action": "feature-flags-off", "state": "Succeeded",
                   "targets": [f"ConfigMap/{ns}/flags"]}],
        "timeline": [{"time": "2026-03-01T10:02:07Z", "event": "flags-off:applied", "step": "flags",
                      "actor": "reliability-center", "target": f"ConfigMap/{ns}/flags",
                      "beforeDigest": "sha256:aa", "afterDigest": "sha256:bb"}],
        "gates": [{"name": "audit-complete", "passed": True, "reason": "EveryWriteAudited",
                   "evidence": "2 writes, 2 records"},
                  {"name": "rollback-tested", "passed": False, "reason": "DryRunMissing",
                   "evidence": "0 of 1 snapshots", "missing": ["dry-run of rc-snap-flags"]}],
        "times": {"detected": "2026-03-01T10:02:00Z", "firstAction": "2026-03-01T10:02:07Z"}})

    lines = relctl("gates", "pm", "-n", ns).splitlines()
    assert lines[0].split() == ["GATE", "PASSED", "REASON", "EVIDENCE"]
    assert lines[1].split() == ["audit-complete", "yes", "EveryWriteAudited", "2", "writes,", "2", "records"]
    rollback = next(i for i, line in enumerate(lines) if line.startswith("rollback-tested"))
    assert lines[rollback].split() == ["rollback-tested", "no", "DryRunMissing", "0", "of", "1", "snapshots"]
    assert lines[rollback + 1] == "    missing: dry-run of rc-snap-flags"
    assert lines[-1] == "not closed: 4 of 5 gates failing"

    draft = relctl("postmortem", "pm", "-n", ns)
    assert draft.startswith("# Postmortem: `pm` (traceId `tr-pm`)\n")
    assert "- Summary: search is slow \\| p99 2.5s\n" in draft
    # The write only the durable log still holds, in the timeline and under its step.
    assert (f"| 2026-03-01T10:02:03Z | `flags` | flags-off:applied | reliability-center | `ConfigMap/{ns}/old-flags` "
            "| - → `sha256:01` |  |") in draft
    assert f"  - `ConfigMap/{ns}/old-flags`: - → `sha256:01` (flags-off:applied at 2026-03-01T10:02:03Z)" in draft
    assert draft.count(f"`ConfigMap/{ns}/flags` | `sha256:aa` → `sha256:bb`") == 1
    assert "| `pm-fix` | `Proposed` | <http://gitea.invalid/ops/gitops/pulls/7> |" in draft
    assert "other-fix" not in draft
    assert "| `rollback-tested` | no | DryRunMissing | 0 of 1 snapshots; missing: dry-run of rc-snap-flags |" in draft
    assert "- [ ] Why did the index grow?\n" in draft
    assert "- Time to first action: 7s\n" in draft

    patch_status(ns, "incident", "pm", {"phase": "Closed", "times": {"closed": "2026-03-01T12:00:00Z"}})
    assert relctl("gates", "pm", "-n", ns).splitlines()[-1] == "closed at 2026-03-01T12:00:00Z"
