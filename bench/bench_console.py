"""The web console with 1,000 incidents, in Debian's chromium (Playwright), against the real local cluster.

Reported: the list's first render (navigation to the page until its table holds every row, the page having
listed them as the person through the apiserver) and the live update (an Incident created in-process until
its row is in the browser's DOM, through the watch and the server-sent events), each against a baseline
measured in the same run: the raw list of the same incidents from the apiserver, and the raw create.

    python bench/bench_console.py            # --incidents 1000 --updates 10
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import uuid

from measure import pct, use_cluster  # bench/, the script's own directory

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CACHE = pathlib.Path(os.environ.get("RC_CACHE", pathlib.Path.home() / ".cache" / "reliability-center"))
API = "reliability.center/v1alpha1"


def kubectl(*args: str, input: str | None = None) -> str:
    return subprocess.run([str(CACHE / "bin" / "kubectl"), *args], input=input, text=True, check=True,
                          capture_output=True).stdout


def incident(name: str, namespace: str, i: int) -> dict:
    return {"apiVersion": API, "kind": "Incident", "metadata": {"name": name, "namespace": namespace},
            "spec": {"category": "bench-console", "severity": ("low", "high", "critical")[i % 3],
                     "tenant": f"t{i % 50:03d}", "summary": "bench"}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=10)
    args = parser.parse_args()
    use_cluster()
    from playwright.sync_api import sync_playwright

    from reliability_center.gateway import Kube

    kube = Kube()
    ns = f"bench-console-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    console = None
    try:
        items = [incident(f"inc-{i:04d}", ns, i) for i in range(args.incidents)]
        for first in range(0, len(items), 250):
            kubectl("apply", "--server-side", "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items[first:first + 250]}))
        raw_list = []
        for _ in range(5):
            started = time.perf_counter()
            listed = kube.list("Incident", ns)
            raw_list.append(time.perf_counter() - started)
        assert len(listed) == args.incidents

        console = subprocess.Popen([str(pathlib.Path(sys.executable).with_name("relctl")), "console"],
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        url = re.search(r"open (http://\S+)", console.stderr.readline() if console.stderr else "")
        assert url, "relctl console printed no URL"
        base = url.group(1).split("/?")[0]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_context().new_page()
            page.goto(url.group(1))  # signs in (the one-time token), then the unfiltered list
            renders = []
            for _ in range(5):
                started = time.perf_counter()
                page.goto(f"{base}/?namespace={ns}&sort=name")
                page.wait_for_function(f"document.querySelectorAll('#rows tr').length === {args.incidents}")
                renders.append(time.perf_counter() - started)
            page.wait_for_selector("#live >> text=Live:")
            updates, creates = [], []
            for i in range(args.updates):
                body = incident(f"live-{i:03d}", ns, i)
                started = time.perf_counter()
                kube.create(body)
                created = time.perf_counter()
                page.wait_for_selector(f'tr[data-name="{ns}/live-{i:03d}"]', timeout=10000)
                updates.append(time.perf_counter() - created)
                creates.append(created - started)
            browser.close()
    finally:
        if console is not None:
            os.killpg(console.pid, signal.SIGTERM)
            console.wait(timeout=10)
        kubectl("delete", "namespace", ns, "--wait=false")
    figures = {
        "incidents": args.incidents,
        "first_render_s": {"p50": round(pct(renders, 0.5), 3), "max": round(max(renders), 3)},
        "live_update_s": {"p50": round(pct(updates, 0.5), 3), "max": round(max(updates), 3)},
        "baseline_raw_list_s": round(pct(raw_list, 0.5), 3),
        "baseline_raw_create_s": round(pct(creates, 0.5), 3),
    }
    figures["first_render_over_raw_list"] = round(figures["first_render_s"]["p50"] / figures["baseline_raw_list_s"], 1)
    print(json.dumps(figures, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "console.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
