"""The low-level Kubernetes client: the one module that speaks HTTP to the apiserver.

Only ``gateway`` may import it for writes (checked by tests/unit/test_layers.py).
It is a thin, typed layer over the official client's REST transport, so that a
write is one request with the verb, content type and field manager spelled out
here rather than spread over generated API classes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3 import HTTPHeaderDict

from reliability_center import __version__

FIELD_MANAGER = "reliability-center"


def user_agent(identity: str = "") -> str:
    """The User-Agent of every request: an operator replica's carries its identity, so the apiserver's
    audit log tells the replicas (and the tests and kubectl, all the same user locally) apart."""
    return f"reliability-center/{__version__}" + (f" (replica {identity})" if identity else "")


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "Secret", "secrets"),
        Kind("v1", "Event", "events"),
        Kind("v1", "Namespace", "namespaces", namespaced=False),
        Kind("v1", "Pod", "pods"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("apps/v1", "StatefulSet", "statefulsets"),
        Kind("apps/v1", "ReplicaSet", "replicasets"),
        Kind("batch/v1", "Job", "jobs"),
        Kind("batch/v1", "CronJob", "cronjobs"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
        Kind("coordination.k8s.io/v1", "Lease", "leases"),
        Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices"),
        Kind("core.openfeature.dev/v1beta1", "FeatureFlag", "featureflags"),
        Kind("reliability.center/v1alpha1", "Incident", "incidents"),
        Kind("reliability.center/v1alpha1", "Runbook", "runbooks", namespaced=False),
        Kind("reliability.center/v1alpha1", "PatchPlan", "patchplans"),
        Kind("reliability.center/v1alpha1", "Approval", "approvals"),
        Kind("argoproj.io/v1alpha1", "Application", "applications"),
    )
}


@dataclass(frozen=True)
class Ref:
    """Names one object: ``Kind/namespace/name``."""

    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Ref:
        meta = obj.get("metadata", {})
        return cls(obj["kind"], meta.get("namespace"), meta["name"])


class NotFound(Exception):
    pass


class Conflict(Exception):
    """A resourceVersion precondition or a JSON patch test failed: someone else changed it."""


class Invalid(Exception):
    """The apiserver refused the object (422), with its message."""


class Forbidden(Exception):
    """RBAC does not let the operator do this (403)."""


class Fenced(Exception):
    """This replica is not the leader (or no longer is): it writes nothing."""


def transient(exc: BaseException) -> bool:
    """Worth retrying: the apiserver is overloaded or briefly unreachable."""
    import urllib3.exceptions

    if isinstance(exc, ApiException):
        return exc.status in (429, 500, 502, 503, 504)
    return isinstance(exc, (ConnectionError, TimeoutError, urllib3.exceptions.HTTPError))


def describe(exc: BaseException, limit: int = 300) -> str:
    """One line for a status condition or a log: the apiserver's own message, not its headers."""
    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "").get("message") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        return f"ApiError {exc.status}: {message}"[:limit]
    return f"{type(exc).__name__}: {exc}"[:limit]


def namespace_terminating(exc: BaseException) -> bool:
    """The namespace is being deleted: nothing more can be created there, nor needs to be."""
    return isinstance(exc, ApiException) and exc.status == 403 and "being terminated" in str(exc.body or "")


#: What the apiserver answers (422, no causes) when a JSON patch does not apply: a ``test``
#: failed, or a path it names is gone. Validation errors name the object and their causes.
PATCH_NOT_APPLIED = "the server rejected our request due to an error in our request"


def _raise(exc: ApiException) -> None:
    body = exc.body or ""
    try:
        parsed = json.loads(body)
        message, causes = parsed.get("message", body), (parsed.get("details") or {}).get("causes")
    except (ValueError, AttributeError):
        message, causes = str(body), None
    if exc.status == 404:
        raise NotFound(message) from None
    if exc.status == 409:
        raise Conflict(message) from None
    if exc.status == 422 and (message == PATCH_NOT_APPLIED and not causes
                              or "test operation" in message or "testing value" in message):
        raise Conflict("a JSON patch test failed: the object changed since it was read") from None
    if exc.status == 422:
        raise Invalid(message) from None
    raise exc


POOL_SIZE = 32
"""Pooled connections to the apiserver, in a Pod as out of one: the reconciles and the intake run on many
threads (the client's default is five per CPU the process sees)."""


def raw_refusal(response: Any) -> str:
    """What the apiserver said when it refused a raw request: its Status message, else the HTTP reason."""
    body = response.read()
    try:
        return json.loads(body).get("message") or response.reason
    except ValueError:
        return response.reason


def watch_events(response: Any) -> Iterator[dict[str, Any]]:
    """A raw watch response's events (``_preload_content=False``), one JSON document per line."""
    pending = b""
    for chunk in response.response.stream(amt=None, decode_content=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


def load_api_client(config_file: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a Pod, else $KUBECONFIG at its current context.

    ``config_file`` and ``context`` are relctl's ``--kubeconfig`` and ``--context``: either one
    picks the kubeconfig even in a Pod, as kubectl does.
    """
    cfg = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not (config_file or context):
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(client_configuration=cfg, config_file=config_file or os.environ.get("KUBECONFIG"),
                                context=context)
    cfg.connection_pool_maxsize = POOL_SIZE
    return client.ApiClient(cfg)


def bearer_client(token: str, host: str | None = None, ca_file: str | None = None) -> client.ApiClient:
    """A client that is the bearer of ``token`` and nothing else: the console's in-cluster mode, where every
    request carries the person's own token (from the OIDC-aware proxy in front) and the Pod has none of its own.

    ``host`` defaults to the in-cluster apiserver's address; ``ca_file`` is the CA that signs its certificate.
    """
    cfg = client.Configuration()
    cfg.host = host or "https://{}:{}".format(os.environ["KUBERNETES_SERVICE_HOST"],
                                              os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
    cfg.ssl_ca_cert = ca_file
    cfg.api_key = {"authorization": f"Bearer {token}"}
    cfg.connection_pool_maxsize = POOL_SIZE
    return client.ApiClient(cfg)


def kubeconfig_namespace(config_file: str | None = None, context: str | None = None) -> str | None:
    """The namespace the kubeconfig's context names (the current one, or ``context``), as kubectl reads it."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not (config_file or context):
        path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        return open(path).read().strip() if os.path.exists(path) else None
    contexts, current = config.list_kube_config_contexts(config_file or os.environ.get("KUBECONFIG"))
    chosen = current if context is None else next((c for c in contexts if c["name"] == context), None)
    if chosen is None:
        raise config.ConfigException(f"context {context!r} does not exist in the kubeconfig")
    return (chosen.get("context") or {}).get("namespace") or None


class Kube:
    """A thread-safe handle on the apiserver."""

    def __init__(self, api_client: client.ApiClient | None = None, *, identity: str = "",
                 fence: Callable[[], None] | None = None,
                 impersonate: tuple[str, tuple[str, ...]] | None = None):
        self.api = api_client or load_api_client()
        self.impersonate = impersonate
        """relctl --as/--as-group: (user, groups) sent as Impersonate-* headers."""
        self._lock = threading.Lock()
        self.identity = identity
        """Who writes (the operator replica): audit Events name it as their reporting instance."""
        self.user_agent = user_agent(identity)
        self.fence = fence
        """Called before every write; raises Fenced when this process may not write (not the leader)."""

    # -- paths ---------------------------------------------------------------
    @staticmethod
    def path(kind: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        k = KINDS[kind]
        parts = [k.prefix]
        if k.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace)}")
        parts.append(k.plural)
        if name:
            parts.append(quote(name))
        if sub:
            parts.append(sub)
        return "/".join(parts)

    def _request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                 body: Any = None, content_type: str = "application/json", timeout: float = 30,
                 parse: bool = True) -> Any:
        if method != "GET" and self.fence is not None and not (query or {}).get("dryRun"):
            self.fence()  # a replica that is not the leader writes nothing (operator/leadership.py)
        try:
            response = self._send(method, path, query, body, {"Accept": "application/json", "Content-Type": content_type},
                                  timeout)
            data = response.read()
        except ApiException as exc:
            _raise(exc)
        if not 200 <= response.status <= 299:
            _raise(ApiException(http_resp=response))
        return json.loads(data) if data and parse else data

    def _send(self, method: str, path: str, query: dict[str, Any] | None, body: Any, headers: dict[str, str],
              timeout: float | None) -> Any:
        """Every request of this client: its credentials and its impersonation (relctl's --as), whatever it asks."""
        url = self.api.configuration.host + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        sent: Any = {"User-Agent": self.user_agent, **headers}
        self.api.update_params_for_auth(sent, None, ["BearerToken"], path, method, body)
        if self.impersonate:
            sent = HTTPHeaderDict(sent)  # one Impersonate-Group header per group, as the apiserver reads them
            sent["Impersonate-User"] = self.impersonate[0]
            for group in self.impersonate[1]:
                sent.add("Impersonate-Group", group)
        return self.api.rest_client.request(method, url, headers=sent, body=body, _request_timeout=timeout)

    def read_raw(self, path: str, query: dict[str, Any], accept: str, timeout: float | None = 30) -> Any:
        """A GET with another Accept (kubectl's ``as=Table``), the response unread, for a watch to stream.

        The status is the caller's to check; the credentials and impersonation are this client's.
        """
        return self._send("GET", path, query, None, {"Accept": accept}, timeout)

    # -- reads ---------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """The user the apiserver authenticates these credentials as (a SelfSubjectReview: no RBAC needed)."""
        review = self._request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                               body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        return (review.get("status") or {}).get("userInfo") or {}

    def readyz(self) -> None:
        """Raises when the apiserver does not answer its readiness check within two seconds."""
        self._request("GET", "/readyz", timeout=2, parse=False)

    def get(self, ref: Ref) -> dict[str, Any] | None:
        try:
            return self._request("GET", self.path(ref.kind, ref.namespace, ref.name))
        except NotFound:
            return None

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None) -> list[dict[str, Any]]:
        result = self._request("GET", self.path(kind, namespace), query={"labelSelector": selector})
        items = result.get("items", [])
        k = KINDS[kind]
        for item in items:  # list responses omit kind and apiVersion on items
            item.setdefault("kind", k.kind)
            item.setdefault("apiVersion", k.api_version)
        return items

    def get_manifest(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """The live object a manifest describes, of any kind the apiserver serves (None: absent or unknown).

        Raises Forbidden when RBAC does not let the operator read that kind.
        """
        from kubernetes.dynamic import DynamicClient
        from kubernetes.dynamic.exceptions import ForbiddenError, NotFoundError, ResourceNotFoundError

        with self._lock:
            if not hasattr(self, "_dynamic"):
                self._dynamic = DynamicClient(self.api)
        meta = doc.get("metadata") or {}
        try:
            resource = self._dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            obj = resource.get(name=meta["name"], namespace=meta.get("namespace") if resource.namespaced else None)
        except (NotFoundError, ResourceNotFoundError):
            return None
        except ForbiddenError as exc:
            raise Forbidden(f"not allowed to read {doc['kind']} {meta.get('namespace')}/{meta.get('name')}") from exc
        return obj.to_dict()

    # -- writes (only the gateway calls these) -----------------------------------
    def json_patch(self, ref: Ref, ops: list[dict[str, Any]], *, dry_run: bool = False,
                   manager: str = FIELD_MANAGER, sub: str | None = None) -> dict[str, Any]:
        """An RFC 6902 patch; its ``test`` operations make it a compare-and-swap."""
        return self._request(
            "PATCH", self.path(ref.kind, ref.namespace, ref.name, sub),
            query={"fieldManager": manager, "dryRun": "All" if dry_run else None},
            body=ops, content_type="application/json-patch+json",
        )

    def merge_patch(self, ref: Ref, patch: dict[str, Any], *, sub: str | None = None,
                    manager: str = FIELD_MANAGER) -> dict[str, Any]:
        return self._request(
            "PATCH", self.path(ref.kind, ref.namespace, ref.name, sub),
            query={"fieldManager": manager}, body=patch, content_type="application/merge-patch+json",
        )

    def create(self, obj: dict[str, Any], *, dry_run: bool = False, manager: str = FIELD_MANAGER) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._request(
            "POST", self.path(obj["kind"], meta.get("namespace")),
            query={"fieldManager": manager, "dryRun": "All" if dry_run else None}, body=obj,
        )

    def replace(self, obj: dict[str, Any], *, manager: str = FIELD_MANAGER) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._request("PUT", self.path(obj["kind"], meta.get("namespace"), meta["name"]),
                             query={"fieldManager": manager}, body=obj)

    def delete(self, ref: Ref, *, resource_version: str | None = None, dry_run: bool = False) -> None:
        """Delete; with ``resource_version``, only the object as it was read (a Conflict otherwise)."""
        # A DELETE with a body takes its options from the body alone: dryRun must be there, not in the query.
        body = {"apiVersion": "v1", "kind": "DeleteOptions",
                **({"preconditions": {"resourceVersion": resource_version}} if resource_version else {}),
                **({"dryRun": ["All"]} if dry_run else {})}
        try:
            self._request("DELETE", self.path(ref.kind, ref.namespace, ref.name),
                          query={"dryRun": "All" if dry_run else None}, body=body)
        except NotFound:
            pass
