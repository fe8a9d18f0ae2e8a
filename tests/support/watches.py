"""Follow one watch of the real cluster on a daemon thread: every event, in etcd revision order.

The tests' oracles (a Lease's terms, ReplicaSets appearing, every version of a
ConfigMap) are watches the test runs itself, beside the code under test.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, config, watch


class Follow:
    """Streams ``<api>().<method>(*args, **kwargs)`` from ``resource_version`` (default: a fresh list's).

    ``on_event`` gets each event; a watch that breaks is kept in ``error`` and passed to ``on_error``
    (without one, raised on its thread, where pytest reports it as the test's failure).
    The constructor returns once the watch's starting point is known, so no later change is missed.
    """

    def __init__(self, api: str, method: str, *args: Any, on_event: Callable[[dict[str, Any]], None],
                 on_error: Callable[[BaseException], None] | None = None, resource_version: str | None = None,
                 **kwargs: Any):
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._call = api, method, args, kwargs, resource_version
        self._on_event, self._on_error = on_event, on_error
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(30), f"the watch {api}.{method} did not start"

    def _run(self) -> None:
        api, method, args, kwargs, rv = self._call
        try:
            config.load_kube_config(config_file=os.environ["KUBECONFIG"])
            list_call = getattr(getattr(client, api)(), method)
            rv = rv or list_call(*args, **kwargs).metadata.resource_version
            self._ready.set()
            for event in watch.Watch().stream(list_call, *args, resource_version=rv, timeout_seconds=600, **kwargs):
                self._on_event(event)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            self.error = exc
            self._ready.set()
            if self._on_error is None:
                raise
            self._on_error(exc)
