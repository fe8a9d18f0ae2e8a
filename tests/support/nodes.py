"""A watch on the fake nodes for the whole test session: did any node stop being Ready?

kwok renews the nodes' leases and the controller-manager's node lifecycle
controller judges them; a node that misses its grace period is marked NotReady
(and "master disruption mode" follows when all are). A healthy node rarely
changes; the watch sees every change in etcd revision order, so a NotReady that
lasted a single event is caught too.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from kubernetes import client, config, watch


@dataclass
class NodeWatch:
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    events: int = 0
    not_ready: list[tuple[str, str, str]] = field(default_factory=list)
    """(node, resourceVersion, Ready status) for every event where a node was not Ready."""
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run(self) -> None:
        try:
            config.load_kube_config(config_file=os.environ["KUBECONFIG"])
            api = client.CoreV1Api()
            rv = api.list_node().metadata.resource_version
            while True:  # the server ends a watch after a while: resume from the last version seen
                for event in watch.Watch().stream(api.list_node, resource_version=rv, timeout_seconds=240,
                                                  _request_timeout=260):
                    node = event["object"]
                    rv = node.metadata.resource_version
                    self.events += 1
                    ready = next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "Unknown")
                    if ready != "True" or event["type"] == "DELETED":
                        self.not_ready.append((node.metadata.name, rv, f"{event['type']} Ready={ready}"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test that reads it
            self.error = exc


def start() -> NodeWatch:
    found = NodeWatch()
    found.thread = threading.Thread(target=found.run, name="node-watch", daemon=True)
    found.thread.start()
    return found
